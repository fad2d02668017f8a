// The kernel's copy-up origin: "trusted.overlay.origin" on an upper object holds a file handle
// of the lower object it was copied from (struct ovl_fb). With it, st_ino stays the lower
// object's across copy-up, in overlayd as in the kernel, and a kernel mounting our upper layer
// finds the same origins it would have written itself.
//
// A handle's bytes mean what the filesystem that made it says (tmpfs puts the generation
// first, ext4 the inode number), so an origin is decoded by that filesystem: found by comparing
// handles under the same name below, else by open_by_handle_at in each lower layer the uuid
// allows, as ovl_check_origin does. Only where that is refused (no CAP_DAC_READ_SEARCH) are
// handles read, and only those of filesystems whose layout is known.
import { randomUUID } from 'node:crypto';
import { C, sys } from '../host/native';
import { lstatAt } from '../host/stat';
import { E, check, fail } from './errors';
import type { LayerDir } from './dircache';
import type { Layer } from './layers';
import { OverlayXattrs } from './xattrs';

const OVL_FH_VERSION = 0;
const OVL_FH_MAGIC = 0xfb;
const HEADER = 21; // version, magic, len, flags, type, uuid[16]
const FILEID_INO32_GEN = 1;
const FILEID_INO32_GEN_PARENT = 2;
const FILEID_INO64_GEN = 0x81;
const FILEID_INO64_GEN_PARENT = 0x82;
const ZERO_UUID = Buffer.alloc(16);
const EXT_MAGIC = 0xef53; // ext2, ext3, ext4: fid = ino32, gen
const XFS_MAGIC = 0x58465342; // fid = ino32|ino64, gen

/** The kernel's uuid= option: what uuid origins carry, and whether the overlay keeps one of its own. */
export const UUID_MODES = ['null', 'off', 'on', 'auto'] as const;
export type UuidMode = (typeof UUID_MODES)[number];

const uuids = new WeakMap<Layer, Buffer>();

/** The layer filesystem's uuid as the kernel knows it (zeros where it cannot be asked). */
export function layerUuid(layer: Layer): Buffer {
  let u = uuids.get(layer);
  if (!u) {
    const r = sys.fsUuid(layer.fd);
    u = typeof r === 'number' ? ZERO_UUID : r;
    uuids.set(layer, u);
  }
  return u;
}

/**
 * The origin xattr value for (dirFd, name) in `layer`, or undefined where handles are not
 * supported. uuid=off stores a null uuid (ovl_encode_real_fh: the layers' uuids are ignored).
 */
export function encodeOrigin(layer: Layer, dirFd: number, name: string, uuid: UuidMode): Buffer | undefined {
  const h = sys.nameToHandle(dirFd, name);
  if (typeof h === 'number') return undefined;
  const fid = h.subarray(4);
  const fb = Buffer.alloc(HEADER + fid.length);
  fb[0] = OVL_FH_VERSION;
  fb[1] = OVL_FH_MAGIC;
  fb[2] = fb.length;
  fb[3] = 0; // little-endian fid, as on x86 and arm64
  fb[4] = h.readUInt32LE(0) & 0xff;
  (uuid === 'off' ? ZERO_UUID : layerUuid(layer)).copy(fb, 5);
  fid.copy(fb, HEADER);
  return fb;
}

/** What an origin names: its layer and the lower object's inode number and link count. */
export interface Origin {
  layer: Layer;
  ino: bigint;
  /** Unknown where the handle could only be read, not decoded. */
  nlink: number | undefined;
  mode: number | undefined;
}

/** Where an origin may still lie: the same name in the lower directories of the copy's parent. */
export interface SameName {
  dirs: readonly LayerDir[];
  name: string;
}

/** Whether open_by_handle_at is allowed to this process (decided by the first try). */
let decodeDenied = false;

const fsTypes = new WeakMap<Layer, number>();
function fsType(layer: Layer): number {
  let t = fsTypes.get(layer);
  if (t === undefined) {
    const o = new Float64Array(10);
    t = sys.fstatfs(layer.fd, o) < 0 ? 0 : o[8];
    fsTypes.set(layer, t);
  }
  return t;
}

/**
 * The lower object an origin xattr names, or undefined (not an origin, not found in any lower
 * layer, or not decodable here). The stored uuid must be the layer's (null with uuid=off), as
 * ovl_decode_real_fh checks; each such layer is tried in turn, top down.
 */
export function decodeOrigin(fb: Buffer, lowers: readonly Layer[], uuid: UuidMode, near?: SameName): Origin | undefined {
  if (fb.length <= HEADER || fb[0] !== OVL_FH_VERSION || fb[1] !== OVL_FH_MAGIC || fb[2] !== fb.length || fb[3] & 1) return undefined;
  const stored = fb.subarray(5, HEADER);
  const type = fb[4];
  const fid = fb.subarray(HEADER);
  const uuidOk = (layer: Layer): boolean => (uuid === 'off' ? stored.equals(ZERO_UUID) : stored.equals(layerUuid(layer)));
  // Most copies still have their origin under the same name below: a handle made there and
  // compared costs two syscalls instead of open_by_handle_at's four, and is as exact.
  if (near && near.name !== '') {
    for (const d of near.dirs) {
      if (!lowers.includes(d.layer) || !uuidOk(d.layer)) continue;
      const h = sys.nameToHandle(d.fd, near.name);
      if (typeof h === 'number' || (h.readUInt32LE(0) & 0xff) !== type || !h.subarray(4).equals(fid)) continue;
      const st = lstatAt(d.fd, near.name);
      if (typeof st !== 'number') return { layer: d.layer, ino: st.ino, nlink: st.nlink, mode: st.mode };
    }
  }
  for (const layer of lowers) {
    if (!uuidOk(layer)) continue;
    if (!decodeDenied) {
      const fd = sys.openByHandle(layer.fd, type, fid, C.O_PATH);
      if (fd >= 0) {
        const st = lstatAt(fd, '');
        sys.close(fd);
        const s = check(st, 'stat origin', layer.root);
        if (s.dev === layer.dev) return { layer, ino: s.ino, nlink: s.nlink, mode: s.mode };
        continue;
      }
      // Not this layer's object (or not a handle its filesystem makes): the next layer may know
      // it. Running out of fds or memory is no answer about the origin: the caller hears of it.
      if (fd === -E.ESTALE || fd === -E.ENOENT || fd === -E.EINVAL || fd === -E.EOPNOTSUPP) continue;
      if (fd !== -E.EPERM) fail(-fd, 'open_by_handle_at', layer.root);
      decodeDenied = true;
    }
    const ino = knownLayoutIno(fsType(layer), type, fid);
    if (ino !== undefined) return { layer, ino, nlink: undefined, mode: undefined };
  }
  return undefined;
}

/** The inode number in a handle of a filesystem whose fid starts with it; undefined for any other. */
function knownLayoutIno(magic: number, type: number, fid: Buffer): bigint | undefined {
  if (magic !== EXT_MAGIC && magic !== XFS_MAGIC) return undefined;
  switch (type) {
    case FILEID_INO32_GEN:
    case FILEID_INO32_GEN_PARENT:
      return fid.length >= 4 ? BigInt(fid.readUInt32LE(0)) : undefined;
    case FILEID_INO64_GEN:
    case FILEID_INO64_GEN_PARENT:
      return magic === XFS_MAGIC && fid.length >= 8 ? fid.readBigUInt64LE(0) : undefined;
    default:
      return undefined;
  }
}

const UUID_SIZE = 16;

/**
 * The overlay's own uuid, as ovl_init_uuid_xattr keeps it in the upper root's "overlay.uuid":
 * uuid=on loads it or makes one; uuid=auto does the same for an upper layer no copy-up has
 * marked "impure" yet (an older overlay stays without). Failing to read or store it falls back
 * to uuid=null, with a warning, as the kernel does. Over FUSE no fsid shows it; it is kept so
 * that the layers stay what the kernel makes of them.
 */
export function initOverlayUuid(upperFd: number, userxattr: boolean, mode: UuidMode, warn: (msg: string, detail: Record<string, unknown>) => void): void {
  if (mode !== 'on' && mode !== 'auto') return;
  const x = OverlayXattrs.of(userxattr);
  const have = sys.getxattr(upperFd, '', x.uuid);
  if (typeof have !== 'number' && have.length === UUID_SIZE) return;
  let err = typeof have === 'number' ? have : -E.EINVAL;
  if (err === -E.ENODATA) {
    if (mode === 'auto' && sys.getxattr(upperFd, '', x.impure) !== -E.ENODATA) return;
    const id = Buffer.from(randomUUID().replace(/-/g, ''), 'hex');
    err = sys.setxattr(upperFd, '', x.uuid, id, 0);
    if (err === 0) return;
  }
  warn('cannot keep the overlay uuid; falling back to uuid=null', { errno: -err });
}
