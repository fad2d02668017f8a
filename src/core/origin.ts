// The kernel's copy-up origin: "trusted.overlay.origin" on an upper object holds a file handle
// of the lower object it was copied from (struct ovl_fb). With it, st_ino stays the lower
// object's across copy-up, in overlayd as in the kernel, and a kernel mounting our upper layer
// finds the same origins it would have written itself.
import { sys } from '../host/native';
import type { Layer } from './layers';
import { TRUSTED_PREFIX, USER_PREFIX } from './whiteout';

const OVL_FH_VERSION = 0;
const OVL_FH_MAGIC = 0xfb;
const HEADER = 21; // version, magic, len, flags, type, uuid[16]
const FILEID_INO32_GEN = 1;
const FILEID_INO32_GEN_PARENT = 2;
const FILEID_INO64_GEN = 0x81;
const FILEID_INO64_GEN_PARENT = 0x82;
const ZERO_UUID = Buffer.alloc(16);

export function originXattr(userxattr: boolean): string {
  return (userxattr ? USER_PREFIX : TRUSTED_PREFIX) + 'origin';
}

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

/** The origin xattr value for (dirFd, name) in `layer`, or undefined where handles are not supported. */
export function encodeOrigin(layer: Layer, dirFd: number, name: string): Buffer | undefined {
  const h = sys.nameToHandle(dirFd, name);
  if (typeof h === 'number') return undefined;
  const fid = h.subarray(4);
  const fb = Buffer.alloc(HEADER + fid.length);
  fb[0] = OVL_FH_VERSION;
  fb[1] = OVL_FH_MAGIC;
  fb[2] = fb.length;
  fb[3] = 0; // little-endian fid, as on x86 and arm64
  fb[4] = h.readUInt32LE(0) & 0xff;
  layerUuid(layer).copy(fb, 5);
  fid.copy(fb, HEADER);
  return fb;
}

/** The lower inode number an origin names, for the handle types whose fid starts with it. */
export function decodeOriginIno(fb: Buffer): { uuid: Buffer; ino: bigint } | undefined {
  if (fb.length < HEADER + 4 || fb[0] !== OVL_FH_VERSION || fb[1] !== OVL_FH_MAGIC || fb[2] !== fb.length || fb[3] & 1) return undefined;
  const uuid = fb.subarray(5, HEADER);
  switch (fb[4]) {
    case FILEID_INO32_GEN:
    case FILEID_INO32_GEN_PARENT:
      return { uuid, ino: BigInt(fb.readUInt32LE(HEADER)) };
    case FILEID_INO64_GEN:
    case FILEID_INO64_GEN_PARENT:
      return fb.length >= HEADER + 8 ? { uuid, ino: fb.readBigUInt64LE(HEADER) } : undefined;
    default:
      return undefined;
  }
}
