// Creating names: create, mkdir, mknod, symlink, link. New objects go to upper; a name whose
// upper entry is a whiteout is created in the work directory and renamed over the whiteout
// ("create over whiteout"), and a directory created so is opaque, so nothing below shows through.
import { C, sys } from '../host/native';
import { S_IFCHR, S_IFMT, isDir, lstatAt } from '../host/stat';
import { defaultAclOf, inheritAcl, writeInherited } from './acl';
import type { Caller } from './config';
import { E, check, fail } from './errors';
import { checkName, splitPath, type Resolver } from './lookup';
import type { UpperWriter } from './upper';
import { removeTree } from './workdir';
import { WH_PREFIX } from './whiteout';

export interface WriteContext {
  resolver: Resolver;
  upper: UpperWriter;
}

/** What a creator builds, given a directory fd, a free name in it and the permission bits to give. */
type Maker = (dirFd: number, name: string, perm: number) => void;

/**
 * Places a new object at `path`: EEXIST if the merged view already shows one; else made in
 * upper directly, or over an upper whiteout through the work directory. `mode` is as the
 * caller asked, its umask not yet applied (where the transport passes one); none for links
 * and symlinks, whose permission bits mean nothing.
 */
function place(ctx: WriteContext, path: string, caller: Caller, make: Maker, dir: boolean, mode?: number, newObject = true): number {
  const [parentPath, name] = splitPath(path);
  checkName(name);
  if (name.startsWith(WH_PREFIX)) fail(E.EINVAL, 'create', path); // reserved for whiteout markers
  if (ctx.resolver.resolve(path)) fail(E.EEXIST, 'create', path);
  const parentFd = ctx.upper.upperDir(parentPath);
  const parentSt = check(lstatAt(parentFd, ''), 'stat', parentPath);
  // setgid directories hand their group down, as on any Linux filesystem (to new objects: a
  // hard link names an existing one, whose group stays).
  const gid = newObject && parentSt.mode & 0o2000 ? parentSt.gid : undefined;
  // A default ACL on the parent takes the umask's place (posix_acl_create).
  const acl = mode === undefined ? undefined : defaultAclOf(parentFd);
  const perm = mode === undefined ? 0 : masked(mode, caller) & 0o7777;
  if (!ctx.upper.hasWhiteout(parentFd, name)) {
    // The upper filesystem applies the parent's default ACL itself.
    make(parentFd, name, acl && mode !== undefined ? mode & 0o7777 : perm);
    ownSafely(ctx, parentFd, name, caller, gid);
    return parentFd;
  }
  const tmp = ctx.upper.tempName();
  const work = ctx.upper.work;
  try {
    if (acl && mode !== undefined) {
      const inherited = inheritAcl(acl, mode);
      make(work, tmp, inherited.mode & 0o7777);
      writeInherited(work, tmp, inherited, acl, dir);
    } else {
      make(work, tmp, perm);
    }
    ownSafely(ctx, work, tmp, caller, gid);
    // Made in the work directory, a new directory did not inherit the parent's setgid bit;
    // the kernel sets the mode explicitly after creating over a whiteout, and so do we.
    if (dir && gid !== undefined) {
      const st = check(lstatAt(work, tmp), 'stat', path);
      if (!(st.mode & 0o2000)) check(sys.fchmodat(work, tmp, (st.mode & 0o7777) | 0o2000), 'chmod', path);
    }
    if (dir) ctx.upper.setOpaque(work, tmp);
    const st = lstatAt(parentFd, name);
    if (typeof st !== 'number') {
      // The device-form whiteout: replace it in one rename.
      check(sys.renameat2(work, tmp, parentFd, name, dir ? C.RENAME_EXCHANGE : 0), 'rename', path);
      if (dir) removeTree(work, tmp);
    } else {
      check(sys.renameat2(work, tmp, parentFd, name, C.RENAME_NOREPLACE), 'rename', path);
    }
    ctx.upper.clearWhiteoutFile(parentFd, name);
  } catch (err) {
    removeTree(work, tmp);
    throw err;
  }
  return parentFd;
}

function ownSafely(ctx: WriteContext, dirFd: number, name: string, caller: Caller, gid?: number): void {
  ctx.upper.ownByCaller(dirFd, name, caller, gid);
}

/** Applies the caller's umask where the transport passed it unmasked. */
function masked(mode: number, caller: Caller): number {
  return caller.umask === undefined ? mode : mode & ~caller.umask;
}

/** Creates and opens a regular file; returns the host fd. */
export function createFile(ctx: WriteContext, path: string, mode: number, flags: number, caller: Caller): number {
  let fd = -1;
  const keep = flags & (C.O_APPEND | C.O_NONBLOCK);
  const acc = (flags & 3) === C.O_RDONLY ? C.O_RDWR : flags & 3;
  // Made in the work directory and renamed, the fd still names the file now at `path`.
  place(ctx, path, caller, (dirFd, name, perm) => {
    fd = check(sys.openat(dirFd, name, C.O_CREAT | C.O_EXCL | acc | keep | C.O_NOFOLLOW, perm), 'create', path);
  }, false, mode);
  return fd;
}

export function mkdir(ctx: WriteContext, path: string, mode: number, caller: Caller): void {
  const parentFd = place(ctx, path, caller, (dirFd, name, perm) => {
    check(sys.mkdirat(dirFd, name, perm), 'mkdir', path);
  }, true, mode);
  // With redirect_dir=on the kernel marks a new directory in a merged one opaque (ovl_create_upper
  // when offline changes to lower layers are not allowed); only an optimization, so it may fail.
  const [parentPath, name] = splitPath(path);
  if (ctx.resolver.redirects.mode === 'on' && ctx.resolver.dir(parentPath).merged) {
    try {
      ctx.upper.setOpaque(parentFd, name);
    } catch {
      // the kernel ignores a failure here too
    }
  }
}

export function mknod(ctx: WriteContext, path: string, mode: number, major: number, minor: number, caller: Caller): void {
  const type = mode & S_IFMT;
  // A 0/0 character device is a whiteout on disk: made through the mount it would hide the
  // name instead of creating it. The kernel refuses it (ovl_mknod) once the name is free.
  if (type === S_IFCHR && major === 0 && minor === 0) {
    if (ctx.resolver.resolve(path)) fail(E.EEXIST, 'mknod', path);
    fail(E.EPERM, 'mknod', path);
  }
  place(ctx, path, caller, (dirFd, name, perm) => {
    check(sys.mknodat(dirFd, name, type | perm, major, minor), 'mknod', path);
  }, false, mode);
}

export function symlink(ctx: WriteContext, target: string, path: string, caller: Caller): void {
  place(ctx, path, caller, (dirFd, name) => {
    check(sys.symlinkat(target, dirFd, name), 'symlink', path);
  }, false);
}

/** "link to a lower file copies it up and links in upper." */
export function link(ctx: WriteContext, existing: string, path: string, caller: Caller): void {
  const src = ctx.resolver.get(existing);
  if (isDir(src.entries[0].stat.mode)) fail(E.EPERM, 'link', existing);
  const up = ctx.upper.copyUp(src);
  // A link keeps the owner of the file it names: it is not a new object.
  const owner: Caller = { uid: up.stat.uid, gid: up.stat.gid, pid: caller.pid };
  place(ctx, path, owner, (dirFd, name) => {
    check(sys.linkat(up.parentFd, up.name, dirFd, name, 0), 'link', path);
  }, false, undefined, false);
  ctx.resolver.cache.invalidateOne(existing);
}
