// The FUSE wire format overlayd speaks, as typed values: one decoder per request body and one
// encoder per reply body, all reading their offsets from the one table below, laid out as the
// structs of include/uapi/linux/fuse.h (named as there). Requests come in one buffer: the
// 40-byte fuse_in_header, then the op's struct, then names or data. Little-endian throughout.
//
// Decoders return small fresh objects (the handler may keep them past an await); the request
// header is decoded in place into one Request the session reuses (see session.ts).
import type { Attr } from '../core/overlay';
import { cstring, cstringEnd, nameAt as nameBetween, putU64, s64, u64 } from './protocol';

/** Struct sizes and field offsets (bytes), as in fuse.h. Body offsets count from the body's start. */
export const ABI = {
  in_header: { size: 40, len: 0, opcode: 4, unique: 8, nodeid: 16, uid: 24, gid: 28, pid: 32, total_extlen: 36 },
  out_header: { size: 16, len: 0, error: 4, unique: 8 },
  forget_in: { size: 8, nlookup: 0 },
  batch_forget_in: { size: 8, count: 0 },
  forget_one: { size: 16, nodeid: 0, nlookup: 8 },
  getattr_in: { size: 16, getattr_flags: 0, fh: 8 },
  setattr_in: {
    size: 88, valid: 0, fh: 8, size_: 16, lock_owner: 24, atime: 32, mtime: 40, ctime: 48,
    atimensec: 56, mtimensec: 60, ctimensec: 64, mode: 68, uid: 76, gid: 80,
  },
  mknod_in: { size: 16, mode: 0, rdev: 4, umask: 8 },
  mkdir_in: { size: 8, mode: 0, umask: 4 },
  rename_in: { size: 8, newdir: 0 },
  rename2_in: { size: 16, newdir: 0, flags: 8 },
  link_in: { size: 8, oldnodeid: 0 },
  open_in: { size: 8, flags: 0, open_flags: 4 },
  create_in: { size: 16, flags: 0, mode: 4, umask: 8, open_flags: 12 },
  read_in: { size: 40, fh: 0, offset: 8, size_: 16, read_flags: 20, lock_owner: 24, flags: 32 },
  write_in: { size: 40, fh: 0, offset: 8, size_: 16, write_flags: 20, lock_owner: 24, flags: 32 },
  release_in: { size: 24, fh: 0, flags: 8, release_flags: 12, lock_owner: 16 },
  fsync_in: { size: 16, fh: 0, fsync_flags: 8 },
  /** FUSE_COMPAT_SETXATTR_IN_SIZE: without FUSE_SETXATTR_EXT (never asked for) the struct is 8 bytes. */
  setxattr_in: { size: 8, size_: 0, flags: 4 },
  getxattr_in: { size: 8, size_: 0 },
  access_in: { size: 8, mask: 0 },
  init_in: { size: 64, major: 0, minor: 4, max_readahead: 8, flags: 12, flags2: 16 },
  interrupt_in: { size: 8, unique: 0 },
  fallocate_in: { size: 32, fh: 0, offset: 8, length: 16, mode: 24 },
  lseek_in: { size: 24, fh: 0, offset: 8, whence: 16 },
  copy_file_range_in: { size: 56, fh_in: 0, off_in: 8, nodeid_out: 16, fh_out: 24, off_out: 32, len: 40, flags: 48 },
  attr: {
    size: 88, ino: 0, size_: 8, blocks: 16, atime: 24, mtime: 32, ctime: 40, atimensec: 48, mtimensec: 52,
    ctimensec: 56, mode: 60, nlink: 64, uid: 68, gid: 72, rdev: 76, blksize: 80, flags: 84,
  },
  entry_out: { size: 128, nodeid: 0, generation: 8, entry_valid: 16, attr_valid: 24, entry_valid_nsec: 32, attr_valid_nsec: 36, attr: 40 },
  attr_out: { size: 104, attr_valid: 0, attr_valid_nsec: 8, attr: 16 },
  open_out: { size: 16, fh: 0, open_flags: 8, backing_id: 12 },
  write_out: { size: 8, size_: 0 },
  getxattr_out: { size: 8, size_: 0 },
  lseek_out: { size: 8, offset: 0 },
  statfs_out: { size: 80, blocks: 0, bfree: 8, bavail: 16, files: 24, ffree: 32, bsize: 40, namelen: 44, frsize: 48 },
  init_out: {
    size: 64, major: 0, minor: 4, max_readahead: 8, flags: 12, max_background: 16, congestion_threshold: 18,
    max_write: 20, time_gran: 24, max_pages: 28, map_alignment: 30, flags2: 32, max_stack_depth: 36,
  },
  /** The reply to an INIT of another major: only fuse_init_out's major and minor. */
  init_out_major: { size: 8 },
  dirent: { size: 24, ino: 0, off: 8, namelen: 16, type: 20 },
  notify_inval_inode_out: { size: 24, ino: 0, off: 8, len: 16 },
  notify_inval_entry_out: { size: 16, parent: 0, namelen: 8, flags: 12 },
} as const;

export const IN_HEADER: number = ABI.in_header.size;
export const OUT_HEADER: number = ABI.out_header.size;
export const ENTRY_OUT: number = ABI.entry_out.size;
export const ATTR_OUT: number = ABI.attr_out.size;
export const OPEN_OUT: number = ABI.open_out.size;
export const INIT_OUT: number = ABI.init_out.size;
export const STATFS_OUT: number = ABI.statfs_out.size;
export const DIRENT_BASE: number = ABI.dirent.size;

// ---- the request header ----

/**
 * fuse_in_header of the request being handled, and where its body lies in `buf`. The session
 * decodes each request into the same object: valid until the handler returns or first awaits.
 */
export class Request {
  opcode = 0;
  unique = 0;
  nodeid = 0;
  uid = 0;
  gid = 0;
  pid = 0;
  /** The body: buf[IN_HEADER, end), extensions (total_extlen) left out. */
  end = 0;
  constructor(public buf: Buffer) {}
}

/** Decodes the header of the `n` bytes read into req.buf; false if too short to be a request. */
export function decodeHeader(req: Request, n: number): boolean {
  const b = req.buf;
  const h = ABI.in_header;
  if (n < h.size) return false;
  const len = Math.min(b.readUInt32LE(h.len), n);
  req.opcode = b.readUInt32LE(h.opcode);
  req.unique = u64(b, h.unique);
  req.nodeid = u64(b, h.nodeid);
  req.uid = b.readUInt32LE(h.uid);
  req.gid = b.readUInt32LE(h.gid);
  req.pid = b.readUInt32LE(h.pid);
  req.end = Math.max(h.size, len - b.readUInt16LE(h.total_extlen) * 8);
  return true;
}

/** Encodes a fuse_in_header (for fakes and tests: the kernel writes these). */
export function encodeHeader(b: Buffer, len: number, opcode: number, unique: number, nodeid: number, uid = 0, gid = 0, pid = 0): void {
  const h = ABI.in_header;
  b.writeUInt32LE(len, h.len);
  b.writeUInt32LE(opcode, h.opcode);
  putU64(b, h.unique, unique);
  putU64(b, h.nodeid, nodeid);
  b.writeUInt32LE(uid, h.uid);
  b.writeUInt32LE(gid, h.gid);
  b.writeUInt32LE(pid, h.pid);
  b.writeUInt32LE(0, h.total_extlen);
}

// ---- request bodies ----

const u32 = (req: Request, off: number): number => req.buf.readUInt32LE(IN_HEADER + off);
const u64in = (req: Request, off: number): number => u64(req.buf, IN_HEADER + off);

/** The NUL-terminated name at body offset `off`, and the buffer offset after it. */
function nameAt(req: Request, off: number): [string, number] {
  return cstring(req.buf, IN_HEADER + off, req.end);
}

/** LOOKUP, UNLINK, RMDIR, REMOVEXATTR: just a name (no [name, next] pair: LOOKUP is hot). */
export function decodeName(req: Request): string {
  return nameBetween(req.buf, IN_HEADER, cstringEnd(req.buf, IN_HEADER, req.end));
}

export function decodeForget(req: Request): number {
  return u64in(req, ABI.forget_in.nlookup);
}

/** BATCH_FORGET: calls `each` per (nodeid, nlookup) the body holds. */
export function eachForget(req: Request, each: (nodeid: number, nlookup: number) => void): void {
  const count = u32(req, ABI.batch_forget_in.count);
  const one = ABI.forget_one;
  let off = IN_HEADER + ABI.batch_forget_in.size;
  for (let i = 0; i < count && off + one.size <= req.end; i++, off += one.size) {
    each(u64(req.buf, off + one.nodeid), u64(req.buf, off + one.nlookup));
  }
}

/** FUSE_GETATTR_FH in getattr_flags */
export const GETATTR_FH = 1 << 0;

/** GETATTR: the file handle, where the kernel names one (fstat). */
export function decodeGetattr(req: Request): number | undefined {
  const s = ABI.getattr_in;
  return u32(req, s.getattr_flags) & GETATTR_FH ? u64in(req, s.fh) : undefined;
}

export interface SetattrIn {
  valid: number; fh: number; size: number; mode: number; uid: number; gid: number;
  atime: number; atimensec: number; mtime: number; mtimensec: number;
}

export function decodeSetattr(req: Request): SetattrIn {
  const s = ABI.setattr_in;
  const b = req.buf;
  return {
    valid: u32(req, s.valid), fh: u64in(req, s.fh), size: u64in(req, s.size_), mode: u32(req, s.mode),
    uid: u32(req, s.uid), gid: u32(req, s.gid),
    atime: s64(b, IN_HEADER + s.atime), atimensec: u32(req, s.atimensec),
    mtime: s64(b, IN_HEADER + s.mtime), mtimensec: u32(req, s.mtimensec),
  };
}

export interface SymlinkIn { name: string; target: string }

export function decodeSymlink(req: Request): SymlinkIn {
  const [name, next] = nameAt(req, 0);
  return { name, target: cstring(req.buf, next, req.end)[0] };
}

export interface MknodIn { mode: number; rdev: number; umask: number; name: string }

export function decodeMknod(req: Request): MknodIn {
  const s = ABI.mknod_in;
  return { mode: u32(req, s.mode), rdev: u32(req, s.rdev), umask: u32(req, s.umask), name: nameAt(req, s.size)[0] };
}

export interface MkdirIn { mode: number; umask: number; name: string }

export function decodeMkdir(req: Request): MkdirIn {
  const s = ABI.mkdir_in;
  return { mode: u32(req, s.mode), umask: u32(req, s.umask), name: nameAt(req, s.size)[0] };
}

export interface RenameIn { newdir: number; flags: number; oldName: string; newName: string }

/** RENAME (`two` false: no flags) and RENAME2. */
export function decodeRename(req: Request, two: boolean): RenameIn {
  const s = two ? ABI.rename2_in : ABI.rename_in;
  const [oldName, next] = nameAt(req, s.size);
  return { newdir: u64in(req, s.newdir), flags: two ? u32(req, ABI.rename2_in.flags) : 0, oldName, newName: cstring(req.buf, next, req.end)[0] };
}

export interface LinkIn { oldnodeid: number; name: string }

export function decodeLink(req: Request): LinkIn {
  const s = ABI.link_in;
  return { oldnodeid: u64in(req, s.oldnodeid), name: nameAt(req, s.size)[0] };
}

/** OPEN, OPENDIR: the open(2) flags. */
export function decodeOpen(req: Request): number {
  return u32(req, ABI.open_in.flags);
}

export interface CreateIn { flags: number; mode: number; umask: number; name: string }

export function decodeCreate(req: Request): CreateIn {
  const s = ABI.create_in;
  return { flags: u32(req, s.flags), mode: u32(req, s.mode), umask: u32(req, s.umask), name: nameAt(req, s.size)[0] };
}

/** READ, READDIR, READDIRPLUS. */
export interface ReadIn { fh: number; offset: number; size: number }

export function decodeRead(req: Request): ReadIn {
  const s = ABI.read_in;
  return { fh: u64in(req, s.fh), offset: u64in(req, s.offset), size: u32(req, s.size_) };
}

/** WRITE: `data` is a view into the request buffer, valid until the next request is read. */
export interface WriteIn { fh: number; offset: number; data: Buffer }

export function decodeWrite(req: Request): WriteIn {
  const s = ABI.write_in;
  const start = IN_HEADER + s.size;
  const size = Math.min(u32(req, s.size_), Math.max(0, req.end - start));
  return { fh: u64in(req, s.fh), offset: u64in(req, s.offset), data: req.buf.subarray(start, start + size) };
}

/** RELEASE, RELEASEDIR: the handle. */
export function decodeRelease(req: Request): number {
  return u64in(req, ABI.release_in.fh);
}

export interface FsyncIn { fh: number; datasync: boolean }

export function decodeFsync(req: Request): FsyncIn {
  const s = ABI.fsync_in;
  return { fh: u64in(req, s.fh), datasync: (u32(req, s.fsync_flags) & 1) !== 0 };
}

/** SETXATTR: `value` is a view into the request buffer. */
export interface SetxattrIn { flags: number; name: string; value: Buffer }

export function decodeSetxattr(req: Request): SetxattrIn {
  const s = ABI.setxattr_in;
  const size = u32(req, s.size_);
  const [name, next] = nameAt(req, s.size);
  return { flags: u32(req, s.flags), name, value: req.buf.subarray(next, Math.min(next + size, req.end)) };
}

/** GETXATTR (with a name) and LISTXATTR (name ''): the caller's buffer size, 0 to ask for it. */
export interface GetxattrIn { size: number; name: string }

export function decodeGetxattr(req: Request, named: boolean): GetxattrIn {
  const s = ABI.getxattr_in;
  return { size: u32(req, s.size_), name: named ? nameAt(req, s.size)[0] : '' };
}

export function decodeAccess(req: Request): number {
  return u32(req, ABI.access_in.mask);
}

export interface InitIn { major: number; minor: number; maxReadahead: number; flags: number; flags2: number }

/** fuse_init_in; flags2 only where the kernel says it sent it (FUSE_INIT_EXT). */
export function decodeInit(req: Request, initExt: number): InitIn {
  const s = ABI.init_in;
  const flags = u32(req, s.flags);
  return {
    major: u32(req, s.major), minor: u32(req, s.minor), maxReadahead: u32(req, s.max_readahead), flags,
    flags2: flags & initExt && req.end >= IN_HEADER + s.flags2 + 4 ? u32(req, s.flags2) : 0,
  };
}

/** INTERRUPT: the unique of the request to interrupt. */
export function decodeInterrupt(req: Request): number {
  return u64in(req, ABI.interrupt_in.unique);
}

export interface FallocateIn { fh: number; offset: number; length: number; mode: number }

export function decodeFallocate(req: Request): FallocateIn {
  const s = ABI.fallocate_in;
  return { fh: u64in(req, s.fh), offset: u64in(req, s.offset), length: u64in(req, s.length), mode: u32(req, s.mode) };
}

export interface LseekIn { fh: number; offset: number; whence: number }

export function decodeLseek(req: Request): LseekIn {
  const s = ABI.lseek_in;
  return { fh: u64in(req, s.fh), offset: u64in(req, s.offset), whence: u32(req, s.whence) };
}

export interface CopyFileRangeIn { fhIn: number; offIn: number; nodeOut: number; fhOut: number; offOut: number; len: number }

export function decodeCopyFileRange(req: Request): CopyFileRangeIn {
  const s = ABI.copy_file_range_in;
  return { fhIn: u64in(req, s.fh_in), offIn: u64in(req, s.off_in), nodeOut: u64in(req, s.nodeid_out), fhOut: u64in(req, s.fh_out), offOut: u64in(req, s.off_out), len: u64in(req, s.len) };
}

// ---- reply bodies ----

/** fuse_out_header at 0: `payload` body bytes follow it. */
export function encodeOutHeader(b: Buffer, payload: number, errno: number, unique: number): void {
  const h = ABI.out_header;
  b.writeUInt32LE(h.size + payload, h.len);
  b.writeInt32LE(-errno, h.error);
  putU64(b, h.unique, unique);
}

/** A notification's fuse_out_header: unique 0, the FUSE_NOTIFY_* code where a reply has its error. */
export function encodeNotifyHeader(b: Buffer, payload: number, code: number): void {
  const h = ABI.out_header;
  b.writeUInt32LE(h.size + payload, h.len);
  b.writeInt32LE(code, h.error);
  putU64(b, h.unique, 0);
}

/** The kernel's new_encode_dev: the 32-bit rdev of struct fuse_attr. */
export function encodeDev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

export function decodeDev(dev: number): [number, number] {
  return [(dev & 0xfff00) >>> 8, (dev & 0xff) | ((dev >>> 12) & 0xfff00)];
}

/** struct fuse_attr at `off`. */
export function encodeAttr(b: Buffer, off: number, a: Attr): void {
  const s = ABI.attr;
  b.writeBigUInt64LE(a.ino, off + s.ino);
  putU64(b, off + s.size_, a.size);
  putU64(b, off + s.blocks, a.blocks);
  putU64(b, off + s.atime, a.atime.sec);
  putU64(b, off + s.mtime, a.mtime.sec);
  putU64(b, off + s.ctime, a.ctime.sec);
  b.writeUInt32LE(a.atime.nsec, off + s.atimensec);
  b.writeUInt32LE(a.mtime.nsec, off + s.mtimensec);
  b.writeUInt32LE(a.ctime.nsec, off + s.ctimensec);
  b.writeUInt32LE(a.mode >>> 0, off + s.mode);
  b.writeUInt32LE(a.nlink >>> 0, off + s.nlink);
  b.writeUInt32LE(a.uid >>> 0, off + s.uid);
  b.writeUInt32LE(a.gid >>> 0, off + s.gid);
  b.writeUInt32LE(encodeDev(a.rdevMajor, a.rdevMinor), off + s.rdev);
  b.writeUInt32LE(a.blksize >>> 0, off + s.blksize);
  b.writeUInt32LE(0, off + s.flags);
}

/** A timeout in seconds as the (u64 sec, u32 nsec) pair replies carry. */
export interface Validity { sec: number; nsec: number }

export function validity(seconds: number): Validity {
  const sec = Math.floor(seconds);
  return { sec, nsec: Math.min(999999999, Math.round((seconds - sec) * 1e9)) };
}

export const NO_VALIDITY: Validity = { sec: 0, nsec: 0 };

/** struct fuse_entry_out at `off`; nodeid 0 with an entry timeout is a cached negative entry. */
export function encodeEntry(b: Buffer, off: number, nodeid: number, a: Attr | undefined, entry: Validity, attr: Validity): number {
  const s = ABI.entry_out;
  putU64(b, off + s.nodeid, nodeid);
  putU64(b, off + s.generation, 0); // node ids are never reused within a mount
  putU64(b, off + s.entry_valid, entry.sec);
  putU64(b, off + s.attr_valid, attr.sec);
  b.writeUInt32LE(entry.nsec, off + s.entry_valid_nsec);
  b.writeUInt32LE(attr.nsec, off + s.attr_valid_nsec);
  if (a) encodeAttr(b, off + s.attr, a);
  else b.fill(0, off + s.attr, off + s.size);
  return s.size;
}

export function encodeAttrOut(b: Buffer, off: number, a: Attr, valid: Validity): number {
  const s = ABI.attr_out;
  putU64(b, off + s.attr_valid, valid.sec);
  b.writeUInt32LE(valid.nsec, off + s.attr_valid_nsec);
  b.writeUInt32LE(0, off + s.attr_valid_nsec + 4);
  encodeAttr(b, off + s.attr, a);
  return s.size;
}

export function encodeOpenOut(b: Buffer, off: number, fh: number, openFlags: number, backingId: number): number {
  const s = ABI.open_out;
  putU64(b, off + s.fh, fh);
  b.writeUInt32LE(openFlags >>> 0, off + s.open_flags);
  b.writeInt32LE(backingId, off + s.backing_id);
  return s.size;
}

/** fuse_write_out, fuse_getxattr_out: a u32 count and padding. */
export function encodeCount(b: Buffer, off: number, n: number): number {
  b.writeUInt32LE(n >>> 0, off);
  b.writeUInt32LE(0, off + 4);
  return ABI.write_out.size;
}

export function encodeLseekOut(b: Buffer, off: number, offset: number): number {
  putU64(b, off + ABI.lseek_out.offset, offset);
  return ABI.lseek_out.size;
}

export interface StatfsOut { blocks: number; bfree: number; bavail: number; files: number; ffree: number; bsize: number; namemax: number; frsize: number }

export function encodeStatfsOut(b: Buffer, off: number, v: StatfsOut): number {
  const s = ABI.statfs_out;
  b.fill(0, off, off + s.size);
  putU64(b, off + s.blocks, v.blocks);
  putU64(b, off + s.bfree, v.bfree);
  putU64(b, off + s.bavail, v.bavail);
  putU64(b, off + s.files, v.files);
  putU64(b, off + s.ffree, v.ffree);
  b.writeUInt32LE(v.bsize, off + s.bsize);
  b.writeUInt32LE(v.namemax, off + s.namelen);
  b.writeUInt32LE(v.frsize, off + s.frsize);
  return s.size;
}

export interface InitOut {
  major: number; minor: number; maxReadahead: number; flags: number; flags2: number;
  maxBackground: number; congestionThreshold: number; maxWrite: number; timeGran: number; maxPages: number; maxStackDepth: number;
}

export function encodeInitOut(b: Buffer, off: number, v: InitOut): number {
  const s = ABI.init_out;
  b.fill(0, off, off + s.size);
  b.writeUInt32LE(v.major, off + s.major);
  b.writeUInt32LE(v.minor, off + s.minor);
  b.writeUInt32LE(v.maxReadahead, off + s.max_readahead);
  b.writeUInt32LE(v.flags >>> 0, off + s.flags);
  b.writeUInt16LE(v.maxBackground, off + s.max_background);
  b.writeUInt16LE(v.congestionThreshold, off + s.congestion_threshold);
  b.writeUInt32LE(v.maxWrite, off + s.max_write);
  b.writeUInt32LE(v.timeGran, off + s.time_gran);
  b.writeUInt16LE(v.maxPages, off + s.max_pages);
  b.writeUInt32LE(v.flags2 >>> 0, off + s.flags2);
  b.writeUInt32LE(v.maxStackDepth, off + s.max_stack_depth);
  return s.size;
}

/** To an INIT of another major: ours, so the kernel can retry with it. */
export function encodeInitMajor(b: Buffer, off: number, major: number, minor: number): number {
  b.writeUInt32LE(major, off + ABI.init_out.major);
  b.writeUInt32LE(minor, off + ABI.init_out.minor);
  return ABI.init_out_major.size;
}

/** The padded length of a fuse_dirent with a name of `nameLen` bytes. */
export function direntSize(nameLen: number): number {
  return (DIRENT_BASE + nameLen + 7) & ~7;
}

/** struct fuse_dirent at `off` (zero padding included); returns its padded length. */
export function encodeDirent(b: Buffer, off: number, ino: bigint, next: number, type: number, name: string, nameLen: number): number {
  const s = ABI.dirent;
  b.writeBigUInt64LE(ino, off + s.ino);
  putU64(b, off + s.off, next);
  b.writeUInt32LE(nameLen, off + s.namelen);
  b.writeUInt32LE(type, off + s.type);
  b.write(name, off + s.size, 'latin1');
  const padded = direntSize(nameLen);
  b.fill(0, off + s.size + nameLen, off + padded);
  return padded;
}

/** FUSE_NOTIFY_INVAL_INODE's body; off -1 and len 0: the attributes only, the page cache kept. */
export function encodeInvalInode(b: Buffer, off: number, nodeid: number, from: bigint, len: bigint): number {
  const s = ABI.notify_inval_inode_out;
  putU64(b, off + s.ino, nodeid);
  b.writeBigInt64LE(from, off + s.off);
  b.writeBigInt64LE(len, off + s.len);
  return s.size;
}

/** FUSE_NOTIFY_INVAL_ENTRY's body: the struct, the name and its NUL. */
export function encodeInvalEntry(b: Buffer, off: number, parent: number, name: Buffer): number {
  const s = ABI.notify_inval_entry_out;
  putU64(b, off + s.parent, parent);
  b.writeUInt32LE(name.length, off + s.namelen);
  b.writeUInt32LE(0, off + s.flags);
  name.copy(b, off + s.size);
  b[off + s.size + name.length] = 0;
  return s.size + name.length + 1;
}
