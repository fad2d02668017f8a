// Typed face of native/overlayd_native.c. Every call returns >= 0 on success and -errno on
// failure; callers in the core turn negative results into FsError through `check`. Every
// string in and out (names, paths, link targets, xattr names) is a binary string, one char per
// byte: see bytes.ts, which converts ordinary text.
import path from 'node:path';

export interface NativeConstants {
  O_PATH: number; O_NOFOLLOW: number; O_DIRECTORY: number; O_RDONLY: number; O_WRONLY: number; O_RDWR: number;
  O_CREAT: number; O_EXCL: number; O_TRUNC: number; O_APPEND: number; O_TMPFILE: number; O_NONBLOCK: number;
  AT_SYMLINK_NOFOLLOW: number; AT_REMOVEDIR: number; AT_EMPTY_PATH: number; AT_SYMLINK_FOLLOW: number;
  RENAME_NOREPLACE: number; RENAME_EXCHANGE: number; RENAME_WHITEOUT: number;
  XATTR_CREATE: number; XATTR_REPLACE: number; UTIME_NOW: number; UTIME_OMIT: number;
  SEEK_DATA: number; SEEK_HOLE: number; MNT_DETACH: number; MNT_FORCE: number; STAT_FIELDS: number;
  /** copySlice flags: try a reflink first; start writeback per chunk; fsync once all is copied. */
  COPY_CLONE: number; COPY_WRITEBACK: number; COPY_FSYNC: number;
  LOCK_EX: number; LOCK_NB: number;
}

/** A directory as getdents64 gives it: names, d_type and d_ino, index for index. */
export type Listing = [string[], Uint8Array, BigUint64Array];

export interface NativeAddon {
  openBeneath(rootFd: number, relPath: string, flags: number, mode: number): number;
  /** open_tree(fd, "", OPEN_TREE_CLONE): the mount at fd, detached, without its submounts. */
  openTreeClone(fd: number): number;
  openat(dirFd: number, name: string, flags: number, mode: number): number;
  close(fd: number): number;
  fstatat(dirFd: number, name: string, flags: number, out: Float64Array): number;
  mkdirat(dirFd: number, name: string, mode: number): number;
  mknodat(dirFd: number, name: string, mode: number, major: number, minor: number): number;
  symlinkat(target: string, dirFd: number, name: string): number;
  linkat(oldDirFd: number, oldName: string, newDirFd: number, newName: string, flags: number): number;
  unlinkat(dirFd: number, name: string, flags: number): number;
  renameat2(oldDirFd: number, oldName: string, newDirFd: number, newName: string, flags: number): number;
  readlinkat(dirFd: number, name: string): string | number;
  fchmodat(dirFd: number, name: string, mode: number): number;
  fchownat(dirFd: number, name: string, uid: number, gid: number): number;
  utimensat(dirFd: number, name: string, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): number;
  /** Names, d_type and d_ino of a directory's entries (without . and ..), or -errno. */
  readdir(dirFd: number): Listing | number;
  getxattr(dirFd: number, name: string, xname: string): Buffer | number;
  listxattr(dirFd: number, name: string): string[] | number;
  setxattr(dirFd: number, name: string, xname: string, value: Buffer, flags: number): number;
  removexattr(dirFd: number, name: string, xname: string): number;
  fstatfs(fd: number, out: Float64Array): number;
  copyFileRange(fdIn: number, offIn: number, fdOut: number, offOut: number, len: number): number;
  /**
   * Copies the data of `inFd` from `pos` into `outFd` at the same offsets, at most `budget` bytes
   * (holes stay holes; see native/copyup.c); at the end, sets the size and fsyncs as `flags` say.
   * Returns where the next slice starts (`size` when done) or -errno; `copied[0]` = bytes moved.
   */
  copySlice(inFd: number, outFd: number, pos: number, size: number, budget: number, flags: number, copied: Float64Array): number;
  /** The same in a worker thread; `cb` runs on the JS thread. The fds must stay open until then. */
  copySliceAsync(inFd: number, outFd: number, pos: number, size: number, budget: number, flags: number, cb: (next: number, copied: number) => void): number;
  /** rm -rf of (dirFd, name) in a worker thread, never following symlinks; dirFd may be closed at once. */
  removeTreeAsync(dirFd: number, name: string, cb: (result: number) => void): number;
  lseek(fd: number, offset: number, whence: number): number;
  fallocate(fd: number, mode: number, offset: number, len: number): number;
  umount2(target: string, flags: number): number;
  fsync(fd: number, datasync: number): number;
  ftruncate(fd: number, size: number): number;
  nameToHandle(dirFd: number, name: string): Buffer | number;
  /** open_by_handle_at: `mountFd` names the filesystem; `fh` the handle's bytes (no header). */
  openByHandle(mountFd: number, type: number, fh: Buffer, flags: number): number;
  fsUuid(fd: number): Buffer | number;
  flock(fd: number, op: number): number;
  /** RLIMIT_NOFILE's soft limit, raised to the hard limit first when `raise` is 1. */
  nofileLimit(raise: number): number;
  constants: NativeConstants;
}

function load(): NativeAddon {
  const built = path.join(__dirname, '..', '..', 'native', 'build', 'Release', 'overlayd_native.node');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(built) as NativeAddon;
}

export const sys: NativeAddon = load();
export const C: NativeConstants = sys.constants;

/** native/overlayd_fuse.c: /dev/fuse access for the kernel transport (src/fuse-kernel). */
export interface FuseDeviceConstants {
  MS_RDONLY: number; MS_NOSUID: number; MS_NODEV: number; MS_NOEXEC: number; MS_NOATIME: number;
  MS_SYNCHRONOUS: number; MS_DIRSYNC: number; EAGAIN: number; EBADF: number; ENODEV: number; EPERM: number;
  FUSE_KERNEL_VERSION: number; HEADER_MINOR_VERSION: number;
}

/** An active uv_poll on the device; only pollStop looks inside. */
export type FusePollHandle = { readonly __fusePoll: unique symbol };
export type FuseRingHandle = { readonly __fuseRing: unique symbol };

export interface FuseDeviceAddon {
  /** /dev/fuse opened O_RDWR|O_NONBLOCK|O_CLOEXEC. */
  openDevice(): number;
  /** mount(2). Unlike overlayd_native's, these strings are host text (UTF-8), as the command line gave them. */
  mount(source: string, target: string, fstype: string, flags: number, data: string): number;
  /**
   * One whole request into buf, or -EAGAIN when none waits; with spinNs, asks again for up to
   * that long first, where recent requests came that soon (see overlayd_fuse.c).
   */
  read(fd: number, buf: Uint8Array, len: number, spinNs?: number): number;
  write(fd: number, buf: Uint8Array, len: number): number;
  /** pread into buf[off..] from the page cache only (RWF_NOWAIT): -EAGAIN or short where it would wait for the disk. */
  preadNowait(fd: number, buf: Uint8Array, off: number, len: number, pos: number): number;
  /** FUSE_DEV_IOC_BACKING_OPEN: a backing id for FOPEN_PASSTHROUGH. */
  backingOpen(devFd: number, fd: number): number;
  backingClose(devFd: number, backingId: number): number;
  /** Calls back on the JS thread with events: 1 readable, 2 error or hang-up. A number is -errno. */
  poll(fd: number, cb: (events: number) => void): FusePollHandle | number;
  pollStop(handle: FusePollHandle): number;
  /** A connected AF_UNIX stream pair, close-on-exec, or -errno. */
  socketpair(): [number, number] | number;
  /**
   * The fd a peer sent over `sock` with SCM_RIGHTS (fusermount3's _FUSE_COMMFD), close-on-exec;
   * never waits: -EAGAIN when none is queued, -ECONNRESET when the peer closed without one.
   */
  recvFd(sock: number): number;
  /** FUSE over io_uring (native/fuse_uring.c): a ring of queues x depth entries on devFd, or -errno. */
  uringCreate(devFd: number, queues: number, depth: number, payloadBytes: number): FuseRingHandle | number;
  /** The ring's fd, to watch: readable while completions wait. */
  uringFd(h: FuseRingHandle): number;
  /** Registers every entry (after INIT is answered): how many the kernel took, or -errno. */
  uringRegister(h: FuseRingHandle): number;
  /** As read: one request in /dev/fuse's layout, -EAGAIN, or -errno for an entry given back. */
  uringRead(h: FuseRingHandle, buf: Uint8Array, len: number, spinNs?: number): number;
  /** A reply, committed on the entry holding its request (sent by the next uringRead or uringFlush), else written to /dev/fuse: 0 or -errno. */
  uringWrite(h: FuseRingHandle, buf: Uint8Array, len: number): number;
  /** Sends the replies committed since the last uringRead: 0 or -errno. */
  uringFlush(h: FuseRingHandle): number;
  uringClose(h: FuseRingHandle): number;
  constants: FuseDeviceConstants;
}

let fuseDev: FuseDeviceAddon | undefined;

/** Loaded on first use, so the fuse-native transport runs without it. */
export function fuseDevice(): FuseDeviceAddon {
  if (!fuseDev) {
    const built = path.join(__dirname, '..', '..', 'native', 'build', 'Release', 'overlayd_fuse.node');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    fuseDev = require(built) as FuseDeviceAddon;
  }
  return fuseDev;
}
