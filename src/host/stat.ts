// Stat as the host reports it, with nanosecond times and a 64-bit inode number.
import { C, sys } from './native';

export interface Timespec { sec: number; nsec: number }

export interface Stat {
  dev: number;
  ino: bigint;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdevMajor: number;
  rdevMinor: number;
  size: number;
  blksize: number;
  blocks: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
}

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;
export const S_IFSOCK = 0o140000;

export const isDir = (mode: number): boolean => (mode & S_IFMT) === S_IFDIR;
export const isReg = (mode: number): boolean => (mode & S_IFMT) === S_IFREG;
export const isLnk = (mode: number): boolean => (mode & S_IFMT) === S_IFLNK;
export const isChr = (mode: number): boolean => (mode & S_IFMT) === S_IFCHR;

const buf = new Float64Array(C.STAT_FIELDS);

function fromBuffer(o: Float64Array): Stat {
  return {
    dev: o[0],
    ino: o[1] === 0 ? BigInt(o[2]) : (BigInt(o[1]) << 32n) | BigInt(o[2]), // one BigInt where it fits 32 bits
    mode: o[3], nlink: o[4], uid: o[5], gid: o[6], rdevMajor: o[7], rdevMinor: o[8],
    size: o[9], blksize: o[10], blocks: o[11],
    atime: { sec: o[12], nsec: o[13] },
    mtime: { sec: o[14], nsec: o[15] },
    ctime: { sec: o[16], nsec: o[17] },
  };
}

/** lstat of (dirFd, name); name '' stats dirFd itself. Returns -errno on failure. */
export function lstatAt(dirFd: number, name: string): Stat | number {
  const r = sys.fstatat(dirFd, name, C.AT_SYMLINK_NOFOLLOW, buf);
  return r < 0 ? r : fromBuffer(buf);
}

/** The Linux rdev encoding (as in <sys/sysmacros.h>), for transports that carry a single number. */
export function makedev(major: number, minor: number): number {
  return ((major & 0xfff) << 8) | (minor & 0xff) | ((minor & ~0xff) << 12) | ((major & ~0xfff) * 2 ** 32);
}
