// The on-disk markers of a union, in the kernel's format (and OCI's `.wh.` files, read too).
import { sys } from '../host/native';
import { isChr, lstatAt, type Stat } from '../host/stat';

export const WH_PREFIX = '.wh.';
export const WH_OPAQUE = '.wh..wh..opq';
export const TRUSTED_PREFIX = 'trusted.overlay.';
export const USER_PREFIX = 'user.overlay.';

/** "A whiteout is created as a character device with 0/0 device number." */
export function isWhiteoutStat(st: Stat): boolean {
  return isChr(st.mode) && st.rdevMajor === 0 && st.rdevMinor === 0;
}

/** Whether `name` in directory `dirFd` is hidden by an OCI `.wh.name` marker. */
export function hasWhiteoutFile(dirFd: number, name: string): boolean {
  return name.length <= 251 && typeof lstatAt(dirFd, WH_PREFIX + name) !== 'number';
}

/**
 * "A directory is made opaque by setting the xattr trusted.overlay.opaque to y"
 * (user.overlay.opaque with userxattr); an OCI layer marks it with `.wh..wh..opq`.
 * Both xattr namespaces are honoured on read, so layers from either kind of mount work.
 */
export function isOpaqueDir(parentFd: number, name: string): boolean {
  // One listxattr answers the common case (neither xattr there) for half the cost of asking
  // for both; only names it lists are read. Where listing fails, both are asked as before.
  const listed = sys.listxattr(parentFd, name);
  for (const x of OPAQUE_XATTRS) {
    if (typeof listed !== 'number' && !listed.includes(x)) continue;
    const v = sys.getxattr(parentFd, name, x);
    if (typeof v !== 'number' && v.length === 1 && v[0] === 0x79 /* y */) return true;
  }
  return false;
}

const OPAQUE_XATTRS = [TRUSTED_PREFIX + 'opaque', USER_PREFIX + 'opaque'];

/** OCI's opaque marker inside directory `name` (just seen to be a directory) of `parentFd`. */
export function hasOpaqueMarker(parentFd: number, name: string): boolean {
  return typeof lstatAt(parentFd, name + '/' + WH_OPAQUE) !== 'number';
}

/** The overlay's own xattrs: never shown through the mount, never set through it. */
export function isPrivateXattr(name: string): boolean {
  return name.startsWith(TRUSTED_PREFIX) || name.startsWith(USER_PREFIX);
}

/** The opaque xattr name for this mount: trusted.overlay.opaque, or user.overlay.opaque with userxattr. */
export function opaqueXattr(userxattr: boolean): string {
  return (userxattr ? USER_PREFIX : TRUSTED_PREFIX) + 'opaque';
}
