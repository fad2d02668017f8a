// The FUSE kernel protocol (include/uapi/linux/fuse.h), as much of it as overlayd speaks:
// opcodes, flags, and the field primitives; the structs are in abi.ts. Little-endian, as the
// kernel on every architecture Node runs Linux on.

export const KERNEL_VERSION = 7;
/** The minor we implement: passthrough's fuse_open_out.backing_id and init flags2 (7.40+). */
export const KERNEL_MINOR = 40;
/** The newest minor whose request and reply layouts this file was checked against (Linux 6.18). */
export const KERNEL_MINOR_KNOWN = 45;

export const enum Op {
  LOOKUP = 1, FORGET = 2, GETATTR = 3, SETATTR = 4, READLINK = 5, SYMLINK = 6, MKNOD = 8, MKDIR = 9,
  UNLINK = 10, RMDIR = 11, RENAME = 12, LINK = 13, OPEN = 14, READ = 15, WRITE = 16, STATFS = 17,
  RELEASE = 18, FSYNC = 20, SETXATTR = 21, GETXATTR = 22, LISTXATTR = 23, REMOVEXATTR = 24, FLUSH = 25,
  INIT = 26, OPENDIR = 27, READDIR = 28, RELEASEDIR = 29, FSYNCDIR = 30, GETLK = 31, SETLK = 32, SETLKW = 33,
  ACCESS = 34, CREATE = 35, INTERRUPT = 36, BMAP = 37, DESTROY = 38, IOCTL = 39, POLL = 40, NOTIFY_REPLY = 41,
  BATCH_FORGET = 42, FALLOCATE = 43, READDIRPLUS = 44, RENAME2 = 45, LSEEK = 46, COPY_FILE_RANGE = 47,
  SETUPMAPPING = 48, REMOVEMAPPING = 49, SYNCFS = 50, TMPFILE = 51, STATX = 52,
}

export const OP_NAMES: Record<number, string> = {
  1: 'lookup', 2: 'forget', 3: 'getattr', 4: 'setattr', 5: 'readlink', 6: 'symlink', 8: 'mknod', 9: 'mkdir',
  10: 'unlink', 11: 'rmdir', 12: 'rename', 13: 'link', 14: 'open', 15: 'read', 16: 'write', 17: 'statfs',
  18: 'release', 20: 'fsync', 21: 'setxattr', 22: 'getxattr', 23: 'listxattr', 24: 'removexattr', 25: 'flush',
  26: 'init', 27: 'opendir', 28: 'readdir', 29: 'releasedir', 30: 'fsyncdir', 31: 'getlk', 32: 'setlk', 33: 'setlkw',
  34: 'access', 35: 'create', 36: 'interrupt', 37: 'bmap', 38: 'destroy', 39: 'ioctl', 40: 'poll', 41: 'notify_reply',
  42: 'batch_forget', 43: 'fallocate', 44: 'readdirplus', 45: 'rename2', 46: 'lseek', 47: 'copy_file_range',
  48: 'setupmapping', 49: 'removemapping', 50: 'syncfs', 51: 'tmpfile', 52: 'statx',
};

/** fuse_init_in.flags / fuse_init_out.flags (low 32 bits) */
export const INIT = {
  ASYNC_READ: 1 << 0, POSIX_LOCKS: 1 << 1, ATOMIC_O_TRUNC: 1 << 3, EXPORT_SUPPORT: 1 << 4, BIG_WRITES: 1 << 5,
  DONT_MASK: 1 << 6, FLOCK_LOCKS: 1 << 10, AUTO_INVAL_DATA: 1 << 12, DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14, ASYNC_DIO: 1 << 15, WRITEBACK_CACHE: 1 << 16, PARALLEL_DIROPS: 1 << 18,
  HANDLE_KILLPRIV: 1 << 19, POSIX_ACL: 1 << 20, ABORT_ERROR: 1 << 21, MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23, INIT_EXT: 1 << 30,
} as const;

/** fuse_init_in.flags2 / fuse_init_out.flags2: bit (n - 32) of the 64-bit flags */
export const INIT2 = {
  /** FUSE_PASSTHROUGH, 1ULL << 37 */
  PASSTHROUGH: 1 << 5,
  /** FUSE_OVER_IO_URING, 1ULL << 41 (7.42): requests may come through io_uring once it is registered */
  OVER_IO_URING: 1 << 9,
} as const;

/** fuse_open_out.open_flags */
export const FOPEN = {
  DIRECT_IO: 1 << 0, KEEP_CACHE: 1 << 1, NONSEEKABLE: 1 << 2, CACHE_DIR: 1 << 3, STREAM: 1 << 4,
  NOFLUSH: 1 << 5, PARALLEL_DIRECT_WRITES: 1 << 6, PASSTHROUGH: 1 << 7,
} as const;

/** fuse_setattr_in.valid */
export const FATTR = {
  MODE: 1 << 0, UID: 1 << 1, GID: 1 << 2, SIZE: 1 << 3, ATIME: 1 << 4, MTIME: 1 << 5, FH: 1 << 6,
  ATIME_NOW: 1 << 7, MTIME_NOW: 1 << 8, LOCKOWNER: 1 << 9, CTIME: 1 << 10, KILL_SUIDGID: 1 << 11,
} as const;

export const NOTIFY = { INVAL_INODE: 2, INVAL_ENTRY: 3, DELETE: 6 } as const;

const TWO32 = 4294967296;

/** A u64 field as a number (exact below 2^53, which offsets, sizes and our node ids stay under). */
export function u64(b: Buffer, off: number): number {
  return b.readUInt32LE(off + 4) * TWO32 + b.readUInt32LE(off);
}

/** An s64 field (times may precede 1970). */
export function s64(b: Buffer, off: number): number {
  return b.readInt32LE(off + 4) * TWO32 + b.readUInt32LE(off);
}

export function putU64(b: Buffer, off: number, v: number): void {
  const hi = Math.floor(v / TWO32);
  b.writeUInt32LE(v - hi * TWO32, off);
  b.writeInt32LE(hi, off + 4);
}

/** A NUL-terminated name at `off` (see nameAt), and where the next field starts. */
export function cstring(b: Buffer, off: number, end: number): [string, number] {
  const z = cstringEnd(b, off, end);
  return [nameAt(b, off, z), z + 1];
}

/** Where the NUL-terminated field at `off` ends: its NUL, or `end` without one. */
export function cstringEnd(b: Buffer, off: number, end: number): number {
  const z = b.indexOf(0, off);
  return z < 0 || z > end ? end : z;
}

/** The name in b[off, z) as a binary string (names are bytes: host/bytes.ts). */
export function nameAt(b: Buffer, off: number, z: number): string {
  return b.toString('latin1', off, z);
}
