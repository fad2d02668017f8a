// Changing an existing object: "any change to an entry that lives only in a lower layer
// first copies it up into upper", then applies to the upper copy.
import { C, sys } from '../host/native';
import { isDir, isLnk, type Timespec } from '../host/stat';
import type { WriteContext } from './create';
import { E, check, fail } from './errors';
import type { Entry } from './lookup';

/** The object at `path`, in upper: copied up first when it lives below. */
function upperEntry(ctx: WriteContext, path: string, withData = true): Entry {
  return ctx.upper.copyUp(ctx.resolver.get(path), withData);
}

export function chmod(ctx: WriteContext, path: string, mode: number): void {
  const e = upperEntry(ctx, path);
  if (isLnk(e.stat.mode)) fail(E.EOPNOTSUPP, 'chmod', path);
  check(sys.fchmodat(e.parentFd, e.name, mode & 0o7777), 'chmod', path);
}

export function chown(ctx: WriteContext, path: string, uid: number, gid: number): void {
  const e = upperEntry(ctx, path);
  check(sys.fchownat(e.parentFd, e.name, uid, gid), 'chown', path);
}

/** Times with nanoseconds; nsec may be UTIME_NOW or UTIME_OMIT, as utimensat(2) takes them. */
export function utimens(ctx: WriteContext, path: string, atime: Timespec, mtime: Timespec): void {
  const e = upperEntry(ctx, path);
  check(sys.utimensat(e.parentFd, e.name, atime.sec, atime.nsec, mtime.sec, mtime.nsec), 'utimens', path);
}

export function truncate(ctx: WriteContext, path: string, size: number): void {
  const r = ctx.resolver.get(path);
  if (isDir(r.entries[0].stat.mode)) fail(E.EISDIR, 'truncate', path);
  const e = ctx.upper.copyUp(r, size > 0);
  const fd = check(sys.openat(e.parentFd, e.name, C.O_WRONLY | C.O_NOFOLLOW, 0), 'truncate', path);
  try {
    check(sys.ftruncate(fd, size), 'truncate', path);
  } finally {
    sys.close(fd);
  }
}

/** `name` as stored on disk: the caller maps overlay.* names first (see OverlayXattrs). */
export function setxattr(ctx: WriteContext, path: string, name: string, value: Buffer, flags: number): void {
  const e = upperEntry(ctx, path);
  check(sys.setxattr(e.parentFd, e.name, name, value, flags), 'setxattr', path);
}

export function removexattr(ctx: WriteContext, path: string, name: string): void {
  const r = ctx.resolver.get(path);
  // Removing what is not there changes nothing, so it copies nothing up.
  const top = r.entries[0];
  const has = sys.getxattr(top.parentFd, top.name, name);
  if (typeof has === 'number') fail(-has, 'removexattr', path);
  const e = ctx.upper.copyUp(r);
  check(sys.removexattr(e.parentFd, e.name, name), 'removexattr', path);
}

/**
 * Opens for writing: copy-up first (without data under O_TRUNC, which discards it anyway),
 * then the upper file with the caller's flags.
 */
export function openWrite(ctx: WriteContext, path: string, flags: number): number {
  const r = ctx.resolver.get(path);
  if (isDir(r.entries[0].stat.mode)) fail(E.EISDIR, 'open', path);
  const e = ctx.upper.copyUp(r, (flags & C.O_TRUNC) === 0);
  const pass = flags & (3 | C.O_APPEND | C.O_TRUNC | C.O_NONBLOCK);
  return check(sys.openat(e.parentFd, e.name, pass | C.O_NOFOLLOW, 0), 'open', path);
}
