// Debug log lines of the kernel transport: each request's names and main arguments, decoded
// from the request as the kernel lays it out, names as host/bytes.ts shows them (\xNN for bytes
// of a name that is no UTF-8).
import t from 'tap';
import { describe as describeReq } from '../../src/fuse-kernel/describe';
import { IN_HEADER, Request, decodeHeader, encodeHeader } from '../../src/fuse-kernel/abi';
import { Op } from '../../src/fuse-kernel/protocol';

/** A request: header (zeros) and body. */
const req = (body: Buffer): Buffer => Buffer.concat([Buffer.alloc(IN_HEADER), body]);
/** What the session hands describe(): request `b` with its header decoded as `opcode`. */
function describe(opcode: number, b: Buffer, len = b.length): ReturnType<typeof describeReq> {
  encodeHeader(b, len, opcode, 1, 1);
  const r = new Request(b);
  decodeHeader(r, len);
  return describeReq(r);
}
const u32 = (...v: number[]): Buffer => Buffer.from(new Uint32Array(v).buffer);
const u64 = (v: number): Buffer => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
const z = (s: string | Buffer): Buffer => Buffer.concat([Buffer.from(s), Buffer.alloc(1)]);

t.test('each request its names and arguments', async (t) => {
  const r2 = req(Buffer.concat([u64(7), u32(1, 0), z('old'), z(Buffer.from([0x6e, 0xff]))]));
  t.same(describe(Op.RENAME2, r2, r2.length), { entry: 'old', newdir: 7, newentry: 'n\\xff', flags: 1 });
  const u = req(Buffer.concat([u64(9), z('caf\u00e9'), z(Buffer.from([0x63, 0x61, 0x66, 0xe9]))]));
  t.same(describe(Op.RENAME, u, u.length), { entry: 'caf\u00e9', newdir: 9, newentry: 'caf\\xe9' }, 'UTF-8 as text; latin1 é is no UTF-8');
  const r = req(Buffer.concat([u64(9), z('a'), z('b')]));
  t.same(describe(Op.RENAME, r, r.length), { entry: 'a', newdir: 9, newentry: 'b' });
  const l = req(z('x'));
  t.same(describe(Op.LOOKUP, l, l.length), { entry: 'x' });
  const mk = req(Buffer.concat([u32(0o755, 0o22), z('d')]));
  t.same(describe(Op.MKDIR, mk, mk.length), { entry: 'd', mode: '0755', umask: '022' });
  const cr = req(Buffer.concat([u32(0o1101, 0o644, 0o22, 0), z('f')]));
  t.same(describe(Op.CREATE, cr, cr.length), { entry: 'f', flags: '01101', mode: '0644', umask: '022' });
  const rd = req(Buffer.concat([u64(3), u64(4096), u32(131072, 0), Buffer.alloc(16)]));
  t.same(describe(Op.READ, rd, rd.length), { fh: 3, offset: 4096, size: 131072 });
  const wr = req(Buffer.concat([u64(3), u64(4096), u32(5, 0), Buffer.alloc(16), Buffer.from('hello')]));
  t.same(describe(Op.WRITE, wr, wr.length), { fh: 3, offset: 4096, size: 5 });
  const bf = req(Buffer.concat([u32(2, 0), u64(4), u64(1), u64(5), u64(2)]));
  t.same(describe(Op.BATCH_FORGET, bf, bf.length), { count: 2 });
  const cf = req(Buffer.concat([u64(1), u64(2), u64(3), u64(4), u64(5), u64(6), u64(0)]));
  t.same(describe(Op.COPY_FILE_RANGE, cf, cf.length), { fh: 1, offset: 2, outnode: 3, outfh: 4, outoffset: 5, length: 6 });
  const sx = req(Buffer.concat([u32(3, 1), z('user.k'), Buffer.from('abc')]));
  t.same(describe(Op.SETXATTR, sx, sx.length), { xattr: 'user.k', size: 3, flags: 1 });
  const fs = req(Buffer.concat([u64(8), u32(1, 0)]));
  t.same(describe(Op.FSYNC, fs, fs.length), { fh: 8, datasync: 1 });
  const ln = req(Buffer.concat([u64(5), z('hard')]));
  t.same(describe(Op.LINK, ln, ln.length), { oldnode: 5, entry: 'hard' });
  const sy = req(Buffer.concat([z('s'), z('../t')]));
  t.same(describe(Op.SYMLINK, sy, sy.length), { entry: 's', target: '../t' });
  const op = req(u32(0o2, 0));
  t.same(describe(Op.OPEN, op, op.length), { flags: '02' });
  const sa = Buffer.alloc(IN_HEADER + 88);
  sa.writeUInt32LE(1 | 8, IN_HEADER);
  sa.writeUInt32LE(5, IN_HEADER + 16);
  sa.writeUInt32LE(0o100600, IN_HEADER + 68);
  t.same(describe(Op.SETATTR, sa, sa.length), { valid: '0x9', size: 5, mode: '0100600' });
  const nm = req(Buffer.from('unterminated'));
  t.same(describe(Op.UNLINK, nm, nm.length), { entry: 'unterminated' }, 'a name ends at the request\'s end');
  t.same(describe(Op.STATFS, req(Buffer.alloc(0)), IN_HEADER), {}, 'an op without arguments');
});
