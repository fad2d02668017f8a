// POSIX ACLs when an object is made (the kernel's posix_acl_create): a parent directory's
// default ACL, not the caller's umask, decides the new object's permission bits, and hands
// itself down as the new object's access ACL (and, to a directory, as its default ACL).
// Made straight in the upper parent, the upper filesystem does this itself. Made in the work
// directory (over a whiteout), the object has no such parent, so the overlay computes and
// writes the ACLs, as ovl_create_over_whiteout does with ovl_set_upper_acl.
import { sys } from '../host/native';
import { E, fail } from './errors';

export const ACL_ACCESS = 'system.posix_acl_access';
export const ACL_DEFAULT = 'system.posix_acl_default';

// linux/posix_acl_xattr.h: a le32 version, then entries of le16 tag, le16 perm, le32 id.
const VERSION = 2;
const HEADER = 4;
const ENTRY = 8;
const USER_OBJ = 0x01;
const USER = 0x02;
const GROUP_OBJ = 0x04;
const GROUP = 0x08;
const MASK = 0x10;
const OTHER = 0x20;

/**
 * The default ACL of a directory (an fd), or undefined where it has none: no xattr, an empty
 * one (as the kernel reads it), or a filesystem without ACLs.
 */
export function defaultAclOf(dirFd: number): Buffer | undefined {
  const v = sys.getxattr(dirFd, '', ACL_DEFAULT);
  if (typeof v === 'number') {
    if (v === -E.ENODATA || v === -E.EOPNOTSUPP) return undefined;
    fail(-v, 'getxattr', ACL_DEFAULT);
  }
  return v.length > HEADER ? v : undefined;
}

export interface Inherited {
  /** The new object's mode: the requested one with its permission bits narrowed by the ACL. */
  mode: number;
  /** Its access ACL, where the default ACL says more than the mode bits can. */
  access?: Buffer;
}

/**
 * posix_acl_create_masq: the permission bits of `mode` narrowed by the default ACL `acl`, and
 * the access ACL it becomes (its owner, group-or-mask and other entries narrowed by `mode`).
 * EIO for a malformed ACL, as the kernel answers.
 */
export function inheritAcl(acl: Buffer, mode: number): Inherited {
  if (acl.length < HEADER || (acl.length - HEADER) % ENTRY !== 0 || acl.readUInt32LE(0) !== VERSION) fail(E.EIO, 'acl');
  const out = Buffer.from(acl);
  let m = mode & 0o777;
  let groupObj = -1;
  let maskAt = -1;
  let extended = false;
  const perm = (at: number): number => out.readUInt16LE(at + 2);
  const setPerm = (at: number, p: number): void => { out.writeUInt16LE(p, at + 2); };
  for (let at = HEADER; at < out.length; at += ENTRY) {
    switch (out.readUInt16LE(at)) {
      case USER_OBJ:
        setPerm(at, perm(at) & ((m >> 6) & 7));
        m &= (perm(at) << 6) | ~0o700;
        break;
      case USER: case GROUP: extended = true; break;
      case GROUP_OBJ: groupObj = at; break;
      case OTHER:
        setPerm(at, perm(at) & (m & 7));
        m &= perm(at) | ~0o7;
        break;
      case MASK: maskAt = at; extended = true; break;
      default: fail(E.EIO, 'acl');
    }
  }
  const group = maskAt >= 0 ? maskAt : groupObj;
  if (group < 0) fail(E.EIO, 'acl');
  setPerm(group, perm(group) & ((m >> 3) & 7));
  m &= (perm(group) << 3) | ~0o70;
  return { mode: (mode & ~0o777) | m, access: extended ? out : undefined };
}

/** Writes what `inheritAcl` gave to an object made in the work directory (and, to a directory, the default ACL itself). */
export function writeInherited(dirFd: number, name: string, inherited: Inherited, defaultAcl: Buffer, dir: boolean): void {
  const set = (xname: string, value: Buffer): void => {
    const r = sys.setxattr(dirFd, name, xname, value, 0);
    if (r < 0) fail(-r, 'setxattr', xname);
  };
  if (inherited.access) set(ACL_ACCESS, inherited.access);
  if (dir) set(ACL_DEFAULT, defaultAcl);
}
