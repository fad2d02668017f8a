// Removing names: "unlink/rmdir of a name that exists in a lower layer leaves a whiteout in
// upper; of a name only in upper, just removes it."
import { C, sys } from '../host/native';
import { isDir } from '../host/stat';
import type { DirNode } from './dircache';
import { E, check, fail } from './errors';
import { splitPath, type Resolved } from './lookup';
import { listMerged } from './readdir';
import type { WriteContext } from './create';

export function unlink(ctx: WriteContext, path: string): void {
  const r = ctx.resolver.get(path);
  if (isDir(r.entries[0].stat.mode)) fail(E.EISDIR, 'unlink', path);
  removeName(ctx, r, false);
}

export function rmdir(ctx: WriteContext, path: string): void {
  if (path === '/') fail(E.EBUSY, 'rmdir', path);
  const r = ctx.resolver.get(path);
  if (!isDir(r.entries[0].stat.mode)) fail(E.ENOTDIR, 'rmdir', path);
  // "rmdir of a merged directory that still shows entries gives ENOTEMPTY."
  if (listMerged(ctx.resolver.dir(path)).length > 0) fail(E.ENOTEMPTY, 'rmdir', path);
  removeName(ctx, r, true);
}

function removeName(ctx: WriteContext, r: Resolved, dir: boolean): void {
  const [parentPath, name] = splitPath(r.path);
  const parentFd = ctx.upper.upperDir(parentPath);
  const parent = ctx.resolver.dir(parentPath) as DirNode;
  const needsWhiteout = !ctx.upper.isUpper(r.entries[0]) || ctx.upper.lowerPositive(parent, name);
  if (needsWhiteout) {
    // The whiteout replaces what upper holds in one rename; an upper directory that only
    // held whiteouts of its own is swapped out and removed.
    ctx.upper.whiteout(parentFd, name);
  } else if (dir) {
    const rm = sys.unlinkat(parentFd, name, C.AT_REMOVEDIR);
    if (rm === -E.ENOTEMPTY) {
      // What is left can only be whiteouts of names already hidden: take the directory out
      // of sight in one rename, then clear it.
      const tmp = ctx.upper.tempName();
      check(sys.renameat2(parentFd, name, ctx.upper.work, tmp, 0), 'rmdir', r.path);
      ctx.upper.discard(tmp);
    } else {
      check(rm, 'rmdir', r.path);
    }
  } else {
    check(sys.unlinkat(parentFd, name, 0), 'unlink', r.path);
  }
  if (dir || needsWhiteout) ctx.resolver.cache.invalidatePath(r.path);
}

/** A name removed from the merged view while a process still has the object open. */
export interface Detached {
  /** O_PATH fd of the object, for attributes while it is nameless. */
  fd: number;
  /** Where an upper object now waits in the work directory until its last close. */
  workName?: string;
}

/**
 * unlink(2) of an open file, for transports that learn of the last close only later: the name
 * disappears exactly as with unlink (whiteout included), but an upper object is moved into the
 * work directory instead of being deleted, so the open file keeps its data. Leftovers of a crash
 * are cleared from the work directory at the next mount, and never show in upper.
 */
export function detach(ctx: WriteContext, path: string): Detached {
  const r = ctx.resolver.get(path);
  const top = r.entries[0];
  if (isDir(top.stat.mode)) fail(E.EISDIR, 'unlink', path);
  const fd = check(sys.openat(top.parentFd, top.name, C.O_PATH | C.O_NOFOLLOW, 0), 'open', path);
  try {
    if (!ctx.upper.isUpper(top)) {
      removeName(ctx, r, false);
      return { fd };
    }
    const [parentPath, name] = splitPath(path);
    const parentFd = ctx.upper.upperDir(parentPath);
    const workName = ctx.upper.tempName();
    const whiteout = ctx.upper.lowerPositive(ctx.resolver.dir(parentPath), name);
    const moved = whiteout ? sys.renameat2(parentFd, name, ctx.upper.work, workName, C.RENAME_WHITEOUT) : -E.EINVAL;
    if (moved === -E.EINVAL) {
      check(sys.renameat2(parentFd, name, ctx.upper.work, workName, 0), 'unlink', path);
      if (whiteout) ctx.upper.whiteout(parentFd, name);
    } else {
      check(moved, 'unlink', path);
      ctx.upper.stats.whiteouts++;
    }
    return { fd, workName };
  } catch (err) {
    sys.close(fd);
    throw err;
  }
}

/** The last close of a detached object: it is gone for good. */
export function dropDetached(ctx: WriteContext, d: Detached): void {
  sys.close(d.fd);
  if (d.workName !== undefined) ctx.upper.discard(d.workName);
}
