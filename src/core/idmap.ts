// Ownership translation between the ids stored in the layers and the ids seen through the
// mount, with fuse-overlayfs 1.10's semantics as measured on this machine (Debian's build):
// with `uidmapping=C:H:L`, a file stored with id C+i shows through the mount as H+i, and a
// caller (or chown) giving mount-side id H+i stores C+i. E.g. uidmapping=0:1000:10 shows a
// file stored as 0 as 1000, a stored 1000 as 65534, and root creating through the mount stores
// 65534 (0 is outside 1000..1009). Ids outside the map are the overflow id, both ways.
// squash_to_root / squash_to_uid / squash_to_gid only change what the mount shows.
// POSIX ACLs (system.posix_acl_access/default) name users and groups too: their ACL_USER and
// ACL_GROUP entries are translated with the same ranges, so `getfacl` through the mount names
// the ids `stat` shows, and `setfacl` stores what chown would.
import { readFileSync } from 'node:fs';

export interface IdRange { stored: number; shown: number; length: number }

export interface IdMapping {
  uids: IdRange[];
  gids: IdRange[];
  /** Every file shows this owner/group (squash_to_root: 0), whatever is stored. */
  squashUid?: number;
  squashGid?: number;
}

function readOverflow(file: string): number {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n >= 0 ? n : 65534;
  } catch {
    return 65534;
  }
}

export const OVERFLOW_UID = readOverflow('/proc/sys/fs/overflowuid');
export const OVERFLOW_GID = readOverflow('/proc/sys/fs/overflowgid');

function map(ranges: IdRange[], id: number, toShown: boolean, overflow: number): number {
  for (const r of ranges) {
    const from = toShown ? r.stored : r.shown;
    if (id >= from && id - from < r.length) return (toShown ? r.shown : r.stored) + (id - from);
  }
  return overflow;
}

/** The xattrs that hold a POSIX ACL in the kernel's xattr format (linux/posix_acl_xattr.h). */
export const ACL_XATTRS: ReadonlySet<string> = new Set(['system.posix_acl_access', 'system.posix_acl_default']);
const ACL_VERSION = 2;
const ACL_HEADER = 4;
const ACL_ENTRY = 8; // le16 tag, le16 perm, le32 id
const ACL_USER = 0x02;
const ACL_GROUP = 0x08;

export class IdMap {
  constructor(private readonly m: IdMapping) {}

  /** The owner the mount shows for a stored uid. */
  uidShown(uid: number): number {
    if (this.m.squashUid !== undefined) return this.m.squashUid;
    return this.m.uids.length === 0 ? uid : map(this.m.uids, uid, true, OVERFLOW_UID);
  }

  gidShown(gid: number): number {
    if (this.m.squashGid !== undefined) return this.m.squashGid;
    return this.m.gids.length === 0 ? gid : map(this.m.gids, gid, true, OVERFLOW_GID);
  }

  /** The uid stored for a mount-side one (a caller's, or chown's); -1 (unchanged) stays. */
  uidStored(uid: number): number {
    if (uid === -1 || uid === 0xffffffff || this.m.uids.length === 0) return uid;
    return map(this.m.uids, uid, false, OVERFLOW_UID);
  }

  gidStored(gid: number): number {
    if (gid === -1 || gid === 0xffffffff || this.m.gids.length === 0) return gid;
    return map(this.m.gids, gid, false, OVERFLOW_GID);
  }

  /**
   * A POSIX ACL xattr value with its user and group entries mapped (toShown: stored to shown),
   * in a new buffer. Squash options leave ACLs alone, as they leave what is stored. A value not
   * in the kernel's format is returned as it is: the layer's filesystem is the one to judge it.
   */
  acl(value: Buffer, toShown: boolean): Buffer {
    if (value.length < ACL_HEADER || (value.length - ACL_HEADER) % ACL_ENTRY !== 0 || value.readUInt32LE(0) !== ACL_VERSION) return value;
    const out = Buffer.from(value);
    for (let at = ACL_HEADER; at < out.length; at += ACL_ENTRY) {
      const tag = out.readUInt16LE(at);
      const ranges = tag === ACL_USER ? this.m.uids : tag === ACL_GROUP ? this.m.gids : undefined;
      if (!ranges || ranges.length === 0) continue;
      out.writeUInt32LE(map(ranges, out.readUInt32LE(at + 4), toShown, tag === ACL_USER ? OVERFLOW_UID : OVERFLOW_GID), at + 4);
    }
    return out;
  }
}

/** An IdMap for a mapping that changes anything, else undefined (the fast path stays as it was). */
export function idMapOf(m: IdMapping | undefined): IdMap | undefined {
  if (!m || (m.uids.length === 0 && m.gids.length === 0 && m.squashUid === undefined && m.squashGid === undefined)) return undefined;
  return new IdMap(m);
}
