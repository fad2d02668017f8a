// The FUSE wire format (src/fuse-kernel/abi.ts) against byte fixtures written field by field
// from include/uapi/linux/fuse.h, independently of the module's offset table: every request the
// transport decodes and every reply it encodes.
import t from 'tap';
import {
  ABI, Request, decodeCopyFileRange, decodeCreate, decodeFallocate, decodeForget, decodeFsync, decodeGetattr,
  decodeGetxattr, decodeHeader, decodeInit, decodeLink, decodeLseek, decodeMkdir, decodeMknod, decodeName, decodeRead,
  decodeRelease, decodeRename, decodeSetattr, decodeSetxattr, decodeSymlink, decodeWrite, eachForget, encodeAttrOut,
  encodeDev, decodeDev, encodeDirent, encodeEntry, encodeInitOut, encodeInvalEntry, encodeInvalInode, encodeNotifyHeader,
  encodeOpenOut, encodeOutHeader, encodeStatfsOut, validity,
} from '../../src/fuse-kernel/abi';
import type { Attr } from '../../src/core/overlay';

// Field writers: a fixture is a list of fields in struct order, as fuse.h declares them.
const u16 = (v: number): Buffer => { const b = Buffer.alloc(2); b.writeUInt16LE(v); return b; };
const u32 = (v: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32LE(v >>> 0); return b; };
const i32 = (v: number): Buffer => { const b = Buffer.alloc(4); b.writeInt32LE(v); return b; };
const u64 = (v: number | bigint): Buffer => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
const i64 = (v: number | bigint): Buffer => { const b = Buffer.alloc(8); b.writeBigInt64LE(BigInt(v)); return b; };
const str = (s: string): Buffer => Buffer.from(s + '\0');
const zeros = (n: number): Buffer => Buffer.alloc(n);

/** A request: fuse_in_header, then the body. */
function request(opcode: number, nodeid: number, ...body: Buffer[]): Request {
  const payload = Buffer.concat(body);
  const header = Buffer.concat([u32(40 + payload.length), u32(opcode), u64(77), u64(nodeid), u32(1000), u32(100), u32(4242), u16(0), u16(0)]);
  const buf = Buffer.alloc(4096);
  Buffer.concat([header, payload]).copy(buf);
  const req = new Request(buf);
  if (!decodeHeader(req, header.length + payload.length)) throw new Error('short');
  return req;
}

t.test('fuse_in_header', async (t) => {
  const req = request(3, 9);
  t.same({ opcode: req.opcode, unique: req.unique, nodeid: req.nodeid, uid: req.uid, gid: req.gid, pid: req.pid, end: req.end },
    { opcode: 3, unique: 77, nodeid: 9, uid: 1000, gid: 100, pid: 4242, end: 40 });
  t.notOk(decodeHeader(new Request(Buffer.alloc(64)), 39), 'shorter than a header: no request');
  // total_extlen counts 8-byte units of extensions after the body, which no decoder reads.
  const b = Buffer.alloc(128);
  Buffer.concat([u32(40 + 8 + 16), u32(1), u64(1), u64(1), u32(0), u32(0), u32(0), u16(2), u16(0), str('name'), zeros(3), zeros(16)]).copy(b);
  const ext = new Request(b);
  decodeHeader(ext, 64);
  t.equal(ext.end, 48, 'the body ends before the extensions');
  t.equal(decodeName(ext), 'name');
  const huge = Buffer.alloc(64);
  Buffer.concat([u32(1 << 20), u32(1), u64(1), u64(1), zeros(16)]).copy(huge);
  const r = new Request(huge);
  decodeHeader(r, 48);
  t.equal(r.end, 48, 'a length beyond what was read is cut to it');
});

t.test('request bodies', async (t) => {
  t.equal(decodeName(request(1, 1, str('hello'))), 'hello', 'LOOKUP');
  t.equal(decodeForget(request(2, 5, u64(3))), 3, 'FORGET: nlookup');
  const forgets: [number, number][] = [];
  eachForget(request(42, 0, u32(2), u32(0), u64(10), u64(1), u64(11), u64(2)), (id, n) => forgets.push([id, n]));
  t.same(forgets, [[10, 1], [11, 2]], 'BATCH_FORGET: (nodeid, nlookup) pairs');
  const cut: number[] = [];
  eachForget(request(42, 0, u32(5), u32(0), u64(10), u64(1)), (id) => cut.push(id));
  t.same(cut, [10], 'BATCH_FORGET: a count beyond the body stops at its end');
  t.equal(decodeGetattr(request(3, 1, u32(0), u32(0), u64(99))), undefined, 'GETATTR without FUSE_GETATTR_FH');
  t.equal(decodeGetattr(request(3, 1, u32(1), u32(0), u64(99))), 99, 'GETATTR with a handle');
  const sa = decodeSetattr(request(4, 1,
    u32(0x3f), u32(0), u64(7), u64(4096), u64(0), i64(-5), u64(1700000000), u64(0),
    u32(123), u32(456), u32(0), u32(0o104755), u32(0), u32(1001), u32(1002), u32(0)));
  t.same(sa, { valid: 0x3f, fh: 7, size: 4096, mode: 0o104755, uid: 1001, gid: 1002, atime: -5, atimensec: 123, mtime: 1700000000, mtimensec: 456 }, 'SETATTR: every field, times before 1970 too');
  t.same(decodeSymlink(request(6, 1, str('link'), str('../target'))), { name: 'link', target: '../target' }, 'SYMLINK: name, then target');
  t.same(decodeMknod(request(8, 1, u32(0o20644), u32(encodeDev(1, 3)), u32(0o22), u32(0), str('null'))), { mode: 0o20644, rdev: encodeDev(1, 3), umask: 0o22, name: 'null' }, 'MKNOD');
  t.same(decodeMkdir(request(9, 1, u32(0o755), u32(0o22), str('d'))), { mode: 0o755, umask: 0o22, name: 'd' }, 'MKDIR');
  t.same(decodeRename(request(12, 1, u64(8), str('a'), str('b')), false), { newdir: 8, flags: 0, oldName: 'a', newName: 'b' }, 'RENAME');
  t.same(decodeRename(request(45, 1, u64(8), u32(2), u32(0), str('a'), str('b')), true), { newdir: 8, flags: 2, oldName: 'a', newName: 'b' }, 'RENAME2: flags');
  t.same(decodeLink(request(13, 1, u64(6), str('hard'))), { oldnodeid: 6, name: 'hard' }, 'LINK');
  t.same(decodeCreate(request(35, 1, u32(0o1101), u32(0o100644), u32(0o22), u32(0), str('new'))), { flags: 0o1101, mode: 0o100644, umask: 0o22, name: 'new' }, 'CREATE');
  t.same(decodeRead(request(15, 1, u64(3), u64(2 ** 40), u32(131072), u32(0), u64(0), u32(0), u32(0))), { fh: 3, offset: 2 ** 40, size: 131072 }, 'READ: a 64-bit offset');
  const w = decodeWrite(request(16, 1, u64(3), u64(10), u32(5), u32(0), u64(0), u32(0), u32(0), Buffer.from('hello')));
  t.same({ fh: w.fh, offset: w.offset, data: w.data.toString() }, { fh: 3, offset: 10, data: 'hello' }, 'WRITE: the data after the struct');
  t.equal(decodeWrite(request(16, 1, u64(3), u64(10), u32(500), u32(0), u64(0), u32(0), u32(0), Buffer.from('hi'))).data.length, 2, 'WRITE: a size beyond the request is cut to it');
  t.equal(decodeRelease(request(18, 1, u64(12), u32(0), u32(0), u64(0))), 12, 'RELEASE');
  t.same(decodeFsync(request(20, 1, u64(4), u32(1), u32(0))), { fh: 4, datasync: true }, 'FSYNC: datasync');
  const sx = decodeSetxattr(request(21, 1, u32(3), u32(1), str('user.a'), Buffer.from('xyz')));
  t.same({ flags: sx.flags, name: sx.name, value: sx.value.toString() }, { flags: 1, name: 'user.a', value: 'xyz' }, 'SETXATTR: the 8-byte compat struct');
  t.same(decodeGetxattr(request(22, 1, u32(64), u32(0), str('user.a')), true), { size: 64, name: 'user.a' }, 'GETXATTR');
  t.same(decodeGetxattr(request(23, 1, u32(0), u32(0)), false), { size: 0, name: '' }, 'LISTXATTR');
  t.same(decodeInit(request(26, 0, u32(7), u32(45), u32(131072), u32((1 << 30) | 1), u32(1 << 5), zeros(44)), 1 << 30),
    { major: 7, minor: 45, maxReadahead: 131072, flags: (1 << 30) | 1, flags2: 1 << 5 }, 'INIT: flags2 with FUSE_INIT_EXT');
  t.equal(decodeInit(request(26, 0, u32(7), u32(45), u32(0), u32(1), u32(1 << 5), zeros(44)), 1 << 30).flags2, 0, 'INIT: flags2 ignored without it');
  t.same(decodeFallocate(request(43, 1, u64(2), u64(100), u64(200), u32(1), u32(0))), { fh: 2, offset: 100, length: 200, mode: 1 }, 'FALLOCATE');
  t.same(decodeLseek(request(46, 1, u64(2), u64(100), u32(3), u32(0))), { fh: 2, offset: 100, whence: 3 }, 'LSEEK');
  t.same(decodeCopyFileRange(request(47, 1, u64(1), u64(2), u64(3), u64(4), u64(5), u64(6), u64(0))), { fhIn: 1, offIn: 2, nodeOut: 3, fhOut: 4, offOut: 5, len: 6 }, 'COPY_FILE_RANGE');
});

const attr: Attr = {
  ino: 0x1_0000_0002n, size: 5, blocks: 8, atime: { sec: 1, nsec: 2 }, mtime: { sec: 3, nsec: 4 }, ctime: { sec: 5, nsec: 6 },
  mode: 0o100644, nlink: 1, uid: 1000, gid: 100, rdevMajor: 0, rdevMinor: 0, blksize: 4096,
} as Attr;
const attrBytes = Buffer.concat([u64(0x1_0000_0002n), u64(5), u64(8), u64(1), u64(3), u64(5), u32(2), u32(4), u32(6), u32(0o100644), u32(1), u32(1000), u32(100), u32(0), u32(4096), u32(0)]);

t.test('reply bodies', async (t) => {
  const b = Buffer.alloc(512, 0xee);
  t.equal(attrBytes.length, ABI.attr.size, 'the fixture is a whole fuse_attr');
  let n = encodeAttrOut(b, 0, attr, validity(1.5));
  t.same(b.subarray(0, n), Buffer.concat([u64(1), u32(500000000), u32(0), attrBytes]), 'fuse_attr_out');
  n = encodeEntry(b, 0, 9, attr, validity(86400), validity(2));
  t.same(b.subarray(0, n), Buffer.concat([u64(9), u64(0), u64(86400), u64(2), u32(0), u32(0), attrBytes]), 'fuse_entry_out');
  b.fill(0xee);
  n = encodeEntry(b, 0, 0, undefined, validity(5), validity(5));
  t.same(b.subarray(0, n), Buffer.concat([u64(0), u64(0), u64(5), u64(5), u32(0), u32(0), zeros(88)]), 'a negative entry: node 0, no attributes');
  n = encodeOpenOut(b, 0, 17, 0x80, 3);
  t.same(b.subarray(0, n), Buffer.concat([u64(17), u32(0x80), i32(3)]), 'fuse_open_out: FOPEN_PASSTHROUGH and a backing id');
  b.fill(0xee);
  n = encodeDirent(b, 0, 42n, 3, 8, 'abc', 3);
  t.same(b.subarray(0, n), Buffer.concat([u64(42), u64(3), u32(3), u32(8), Buffer.from('abc'), zeros(5)]), 'fuse_dirent padded to 8 with zeros');
  n = encodeStatfsOut(b, 0, { blocks: 1, bfree: 2, bavail: 3, files: 4, ffree: 5, bsize: 4096, namemax: 255, frsize: 512 });
  t.same(b.subarray(0, n), Buffer.concat([u64(1), u64(2), u64(3), u64(4), u64(5), u32(4096), u32(255), u32(512), u32(0), zeros(24)]), 'fuse_statfs_out');
  n = encodeInitOut(b, 0, { major: 7, minor: 40, maxReadahead: 131072, flags: 0x4000_0001, flags2: 1 << 5, maxBackground: 64, congestionThreshold: 48, maxWrite: 1 << 20, timeGran: 1, maxPages: 256, maxStackDepth: 2 });
  t.same(b.subarray(0, n), Buffer.concat([u32(7), u32(40), u32(131072), u32(0x4000_0001), u16(64), u16(48), u32(1 << 20), u32(1), u16(256), u16(0), u32(1 << 5), u32(2), zeros(24)]), 'fuse_init_out');
  n = encodeInvalInode(b, 0, 5, -1n, 0n);
  t.same(b.subarray(0, n), Buffer.concat([u64(5), i64(-1), i64(0)]), 'fuse_notify_inval_inode_out');
  n = encodeInvalEntry(b, 0, 1, Buffer.from('gone'));
  t.same(b.subarray(0, n), Buffer.concat([u64(1), u32(4), u32(0), str('gone')]), 'fuse_notify_inval_entry_out and the name');
  encodeOutHeader(b, 8, 2, 77);
  t.same(b.subarray(0, 16), Buffer.concat([u32(24), i32(-2), u64(77)]), 'fuse_out_header: len, -errno, unique');
  encodeNotifyHeader(b, 24, 2);
  t.same(b.subarray(0, 16), Buffer.concat([u32(40), i32(2), u64(0)]), 'a notification: the code in error, unique 0');
});

t.test('device numbers as the kernel encodes them', async (t) => {
  t.equal(encodeDev(8, 1), 0x801);
  t.equal(encodeDev(259, 0x12345), 0x12310345, 'minor above 8 bits goes to the top');
  t.same(decodeDev(encodeDev(259, 0x12345)), [259, 0x12345]);
});
