// The on-disk markers of a union, in the kernel's format (and OCI's `.wh.` files, read too).
import { sys } from '../host/native';
import { isChr, lstatAt, type Stat } from '../host/stat';
import { E, fail } from './errors';
import { OPAQUE_XATTRS } from './xattrs';

export const WH_PREFIX = '.wh.';
export const WH_OPAQUE = '.wh..wh..opq';

/** "A whiteout is created as a character device with 0/0 device number." */
export function isWhiteoutStat(st: Stat): boolean {
  return isChr(st.mode) && st.rdevMajor === 0 && st.rdevMinor === 0;
}

/**
 * "A directory is made opaque by setting the xattr trusted.overlay.opaque to y"
 * (user.overlay.opaque with userxattr); an OCI layer marks it with `.wh..wh..opq`.
 * Both xattr namespaces are honoured on read, so layers from either kind of mount work.
 */
export function isOpaqueDir(parentFd: number, name: string): boolean {
  return readDirMarks(parentFd, name, undefined).opaque;
}

/** What the overlay's xattrs on a directory tell a lookup. */
export interface DirMarks {
  opaque: boolean;
  /** The raw redirect xattr (see redirect.ts), when asked for and present on a non-opaque directory. */
  redirect: Buffer | undefined;
}

/**
 * The opaque mark and, if `redirectXattr` is given, the redirect of directory `name` in
 * `parentFd`. One listxattr answers the common case (none there) for half the cost of asking
 * for each; only names it lists are read. Where listing fails, each is asked as before. The
 * redirect is read in the mount's own namespace only, as the kernel does: one in the other
 * (user.*, which anyone may set) would let a layer's owner point into directories they cannot read.
 */
export function readDirMarks(parentFd: number, name: string, redirectXattr: string | undefined): DirMarks {
  const listed = sys.listxattr(parentFd, name);
  let opaque = false;
  for (const x of OPAQUE_XATTRS) {
    if (typeof listed !== 'number' && !listed.includes(x)) continue;
    const v = sys.getxattr(parentFd, name, x);
    if (typeof v !== 'number' && v.length === 1 && v[0] === 0x79 /* y */) { opaque = true; break; }
  }
  let redirect: Buffer | undefined;
  if (!opaque && redirectXattr !== undefined && (typeof listed === 'number' || listed.includes(redirectXattr))) {
    const v = sys.getxattr(parentFd, name, redirectXattr);
    if (typeof v !== 'number') redirect = v;
    else if (v !== -E.ENODATA && v !== -E.ENOTSUP) fail(-v, 'lookup', name);
  }
  return { opaque, redirect };
}

/** OCI's opaque marker inside directory `name` (just seen to be a directory) of `parentFd`. */
export function hasOpaqueMarker(parentFd: number, name: string): boolean {
  return typeof lstatAt(parentFd, name + '/' + WH_OPAQUE) !== 'number';
}
