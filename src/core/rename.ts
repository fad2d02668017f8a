// rename(2) over the union, as the kernel's ovl_rename does it:
// - a non-directory is copied up, renamed in upper, and a whiteout is left at the old name
//   when the old name still shows something below;
// - a directory that has lower content moves with redirect_dir=on: its upper copy is renamed
//   and records where its lower content lies (see redirect.ts); otherwise it cannot be moved:
//   EXDEV, so mv(1) copies instead;
// - an upper-only directory moved into a merged directory is made opaque, so nothing below merges in;
// - RENAME_EXCHANGE swaps two copied-up objects under the same rules (see exchange).
import { C, sys } from '../host/native';
import { isDir, lstatAt } from '../host/stat';
import type { WriteContext } from './create';
import { E, check, fail } from './errors';
import { checkName, splitPath, type Resolved } from './lookup';
import { listMerged } from './readdir';
import { REDIRECT_MAX, redirectBytes, upperRedirect } from './redirect';
import { WH_PREFIX, isOpaqueDir } from './whiteout';

export function rename(ctx: WriteContext, from: string, to: string, flags: number): void {
  if (flags & ~(C.RENAME_NOREPLACE | C.RENAME_EXCHANGE)) fail(E.EINVAL, 'rename', from);
  if (flags & C.RENAME_EXCHANGE) {
    if (flags & C.RENAME_NOREPLACE) fail(E.EINVAL, 'rename', from);
    exchange(ctx, from, to);
    return;
  }
  const [toParent, toName] = splitPath(to);
  checkName(toName);
  if (toName.startsWith(WH_PREFIX)) fail(E.EINVAL, 'rename', to);
  const src = ctx.resolver.get(from);
  if (from === to) return;
  const srcIsDir = isDir(src.entries[0].stat.mode);
  const dst = ctx.resolver.resolve(to);
  // The VFS's checks come first, in its order (do_renameat2, then vfs_rename) ...
  if (dst && flags & C.RENAME_NOREPLACE) fail(E.EEXIST, 'rename', to);
  if (to.startsWith(from + '/')) fail(E.EINVAL, 'rename', from);
  if (dst) {
    if (from.startsWith(to + '/')) fail(E.ENOTEMPTY, 'rename', to);
    if (sameObject(ctx, src, dst)) return; // hard links to one inode: rename(2) does nothing
    const dstIsDir = isDir(dst.entries[0].stat.mode);
    if (srcIsDir && !dstIsDir) fail(E.ENOTDIR, 'rename', to);
    if (!srcIsDir && dstIsDir) fail(E.EISDIR, 'rename', to);
  }
  // ... then overlayfs's own: without redirects ovl_rename refuses to move a directory with
  // lower content (EXDEV) before it looks at whether the target directory is empty.
  const srcMerged = srcIsDir && !isPureUpper(ctx, src);
  if (srcMerged && !canRedirect(ctx)) fail(E.EXDEV, 'rename', from);

  // Then in ovl_rename's order, so that a rename refused for a non-empty target leaves in upper
  // what the kernel's leaves: a merged target is checked before anything is copied up; one that
  // lives only in upper is left to the upper filesystem's rename, after the source was copied up
  // and given its redirect or opaque mark (it replaces an empty one, or says ENOTEMPTY).
  const dstIsDir = dst !== undefined && isDir(dst.entries[0].stat.mode);
  const dstPure = dst !== undefined && isPureUpper(ctx, dst);
  const dstEmpty = (): boolean => listMerged(ctx.resolver.dir(to)).length === 0;
  if (dstIsDir && !dstPure && !dstEmpty()) fail(E.ENOTEMPTY, 'rename', to);
  const [fromParent, fromName] = splitPath(from);
  ctx.upper.copyUp(src);
  const dstParentFd = ctx.upper.upperDir(toParent);
  const srcParentFd = ctx.upper.upperDir(fromParent);
  const oldNeedsWhiteout = ctx.upper.lowerPositive(ctx.resolver.dir(fromParent), fromName);
  if (srcMerged) {
    setRedirect(ctx, from, fromParent === toParent);
  } else if (srcIsDir && ctx.resolver.dir(toParent).merged && !isOpaqueDir(srcParentFd, fromName)) {
    ctx.upper.setOpaque(srcParentFd, fromName);
  }

  let exchangeWithWhiteout = false;
  if (dstIsDir && !dstPure && dst && ctx.upper.isUpper(dst.entries[0])) {
    // An empty merged directory: its upper part holds only whiteouts. Take it out of the way.
    const tmp = ctx.upper.tempName();
    check(sys.renameat2(dstParentFd, toName, ctx.upper.work, tmp, 0), 'rename', to);
    ctx.upper.discard(tmp);
  } else if (!dst && ctx.upper.hasWhiteout(dstParentFd, toName)) {
    ctx.upper.clearWhiteoutFile(dstParentFd, toName);
    // A directory cannot replace the device-form whiteout; swap them instead, as the kernel does.
    exchangeWithWhiteout = srcIsDir && typeof lstatAt(dstParentFd, toName) !== 'number';
  }

  if (exchangeWithWhiteout) {
    check(sys.renameat2(srcParentFd, fromName, dstParentFd, toName, C.RENAME_EXCHANGE), 'rename', from);
    // The whiteout now sits at the old name: exactly what is needed there, or nothing.
    if (!oldNeedsWhiteout) check(sys.unlinkat(srcParentFd, fromName, 0), 'rename', from);
  } else {
    const r = oldNeedsWhiteout ? sys.renameat2(srcParentFd, fromName, dstParentFd, toName, C.RENAME_WHITEOUT) : -E.EINVAL;
    if (r === -E.EINVAL) {
      // No RENAME_WHITEOUT needed, or none on this filesystem: rename, then whiteout.
      check(sys.renameat2(srcParentFd, fromName, dstParentFd, toName, 0), 'rename', from);
      if (oldNeedsWhiteout) ctx.upper.whiteout(srcParentFd, fromName);
    } else {
      check(r, 'rename', from);
      ctx.upper.stats.whiteouts++;
    }
  }
  ctx.resolver.cache.invalidatePath(from);
  ctx.resolver.cache.invalidatePath(to);
}

/**
 * RENAME_EXCHANGE, as ovl_rename does it: both names stay taken, so no whiteout is involved;
 * both objects are copied up and swapped in upper. A directory with lower content gets a
 * redirect (redirect_dir=on) or cannot move (EXDEV); an upper-only directory that lands in a
 * merged directory is made opaque first, so nothing below merges into it at its new name.
 */
function exchange(ctx: WriteContext, from: string, to: string): void {
  const src = ctx.resolver.get(from);
  const dst = ctx.resolver.get(to);
  if (from === to) return;
  // The VFS's checks: neither may contain the other (EINVAL both ways for an exchange).
  if (to.startsWith(from + '/') || from.startsWith(to + '/')) fail(E.EINVAL, 'rename', from);
  if (sameObject(ctx, src, dst)) return;
  const srcIsDir = isDir(src.entries[0].stat.mode);
  const dstIsDir = isDir(dst.entries[0].stat.mode);
  const srcMerged = srcIsDir && !isPureUpper(ctx, src);
  const dstMerged = dstIsDir && !isPureUpper(ctx, dst);
  if ((srcMerged || dstMerged) && !canRedirect(ctx)) fail(E.EXDEV, 'rename', from);

  const [fromParent, fromName] = splitPath(from);
  const [toParent, toName] = splitPath(to);
  ctx.upper.copyUp(src);
  ctx.upper.copyUp(ctx.resolver.get(to)); // resolved afresh: src's copy-up may have replaced shared parents
  const srcParentFd = ctx.upper.upperDir(fromParent);
  const dstParentFd = ctx.upper.upperDir(toParent);
  const samedir = fromParent === toParent;
  if (srcMerged) setRedirect(ctx, from, samedir);
  else if (srcIsDir && ctx.resolver.dir(toParent).merged && !isOpaqueDir(srcParentFd, fromName)) ctx.upper.setOpaque(srcParentFd, fromName);
  if (dstMerged) setRedirect(ctx, to, samedir);
  else if (dstIsDir && ctx.resolver.dir(fromParent).merged && !isOpaqueDir(dstParentFd, toName)) ctx.upper.setOpaque(dstParentFd, toName);
  check(sys.renameat2(srcParentFd, fromName, dstParentFd, toName, C.RENAME_EXCHANGE), 'rename', from);
  ctx.resolver.cache.invalidatePath(from);
  ctx.resolver.cache.invalidatePath(to);
}

function canRedirect(ctx: WriteContext): boolean {
  return ctx.resolver.redirects.mode === 'on';
}

/**
 * Records, on the upper copy of the directory at `path` (about to move), where its lower content
 * lies, as ovl_set_redirect does: a redirect it has already stays when it still holds (it moves
 * within its parent, or it is absolute); else its old name if it stays in its parent, or its
 * old path as the layers below know it (each ancestor's own redirect standing for its name).
 * A path longer than the kernel's redirect_max, or an upper that refuses the xattr, gives
 * EXDEV: mv(1) then copies, as with the kernel.
 */
function setRedirect(ctx: WriteContext, path: string, samedir: boolean): void {
  const xattr = ctx.resolver.redirects.xattr;
  const [parentPath, name] = splitPath(path);
  const own = upperRedirect(ctx.upper.upperDir(parentPath), name, xattr);
  if (own !== undefined && (samedir || own[0] === '/')) return;
  let value = name;
  if (!samedir) {
    const parts: string[] = [];
    let p = path;
    let r = own;
    for (;;) {
      const [pp, n] = splitPath(p);
      if (r !== undefined && r[0] === '/') { parts.unshift(r.slice(1)); break; }
      parts.unshift(r ?? n);
      if (pp === '/') break;
      p = pp;
      const [gp, gn] = splitPath(p);
      r = upperRedirect(ctx.upper.upperDir(gp), gn, xattr);
    }
    value = '/' + parts.join('/');
  }
  const bytes = redirectBytes(value);
  if (!samedir && bytes.length > REDIRECT_MAX) fail(E.EXDEV, 'rename (redirect too long)', path);
  const r = sys.setxattr(ctx.upper.upperDir(parentPath), name, xattr, bytes, 0);
  if (r < 0) fail(E.EXDEV, 'rename (cannot set redirect)', path);
}

/** A directory that lives only in upper: no lower directory merges into it. */
function isPureUpper(ctx: WriteContext, r: Resolved): boolean {
  return r.entries.length === 1 && ctx.upper.isUpper(r.entries[0]);
}

/**
 * Whether two names are one inode of the overlay, which rename(2) leaves alone: hard links in
 * upper. Two names of one lower inode (a lower hard link) are two inodes of the kernel's
 * overlay (without index, copy-up breaks the link, so ovl_hash_bylower does not hash them by
 * the lower inode): renaming one over the other copies it up, replaces the other and leaves a
 * whiteout, as between any two files.
 */
function sameObject(ctx: WriteContext, a: Resolved, b: Resolved): boolean {
  if (!ctx.upper.isUpper(a.entries[0]) || !ctx.upper.isUpper(b.entries[0])) return false;
  const x = a.entries[0].stat;
  const y = b.entries[0].stat;
  return x.dev === y.dev && x.ino === y.ino;
}
