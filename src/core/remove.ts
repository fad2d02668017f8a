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
