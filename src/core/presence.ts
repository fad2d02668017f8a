// "Is this name there in this layer directory, and what is it?": the one probe every union rule
// asks (lookup, listing, removal, creating over a whiteout), answered with the kernel's error
// policy (fs/overlayfs/namei.c, ovl_lookup_single and ovl_lower_positive): ENOENT and
// ENAMETOOLONG mean "not there"; any other error is an error, which each caller handles as its
// kernel counterpart does:
//   lookup (ovl_lookup_single)        fails with it;
//   removal (ovl_lower_positive)      counts the name as present, so a whiteout is left rather
//                                     than let the name come back once the error clears;
//   listing (ovl_check_whiteouts)     lists the entry: only a whiteout is hidden;
//   create/rename over a whiteout     only a whiteout is replaced.
// A whiteout is the kernel's 0/0 character device, or an OCI `.wh.NAME` beside the name.
import { lstatAt, type Stat } from '../host/stat';
import { E } from './errors';
import type { Layer } from './layers';
import { WH_PREFIX, isWhiteoutStat } from './whiteout';

export type Presence =
  | { readonly kind: 'absent' }
  | { readonly kind: 'whiteout' }
  | { readonly kind: 'present'; readonly stat: Stat }
  | { readonly kind: 'error'; readonly errno: number };

export const ABSENT: Presence = Object.freeze({ kind: 'absent' });
export const WHITEOUT: Presence = Object.freeze({ kind: 'whiteout' });

/** What the probe stats with (lstatAt; unit tests inject failures root cannot provoke). */
export type LstatFn = (dirFd: number, name: string) => Stat | number;

/** The names a layer directory is known to hold, where a caller has them (DirNode.namesOf). */
export interface NameSet {
  has(name: string): boolean;
}

/** A `.wh.NAME` cannot exist for a NAME this long: NAME_MAX counts its prefix too. */
const WH_NAME_MAX = 255 - WH_PREFIX.length;

/** Whether a failed lookup means "not there" (both kernel rules agree on these two). */
export function absentErrno(errno: number): boolean {
  return errno === E.ENOENT || errno === E.ENAMETOOLONG;
}

/**
 * `name` in the layer directory `dirFd`. With `names` (the directory's full listing, for a
 * layer that cannot change) a name not listed costs no syscall.
 */
export function probe(dirFd: number, name: string, names?: NameSet, lstat: LstatFn = lstatAt): Presence {
  if (names && !names.has(name)) return names.has(WH_PREFIX + name) ? WHITEOUT : ABSENT;
  const st = lstat(dirFd, name);
  if (typeof st !== 'number') return isWhiteoutStat(st) ? WHITEOUT : { kind: 'present', stat: st };
  if (!absentErrno(-st)) return { kind: 'error', errno: -st };
  return whiteoutFile(dirFd, name, names, lstat);
}

/**
 * An OCI `.wh.NAME` marker for `name` in `dirFd`: WHITEOUT, ABSENT or an error. Beside a
 * directory it makes that directory start afresh (lookup.ts), where it hides the name otherwise.
 */
export function whiteoutFile(dirFd: number, name: string, names?: NameSet, lstat: LstatFn = lstatAt): Presence {
  if (names) return names.has(WH_PREFIX + name) ? WHITEOUT : ABSENT;
  if (name.length > WH_NAME_MAX) return ABSENT;
  const st = lstat(dirFd, WH_PREFIX + name);
  if (typeof st !== 'number') return WHITEOUT;
  return absentErrno(-st) ? ABSENT : { kind: 'error', errno: -st };
}

/**
 * Whether anything in the layers below upper still shows `name` in a merged directory whose
 * stack is `dirs` (the kernel's ovl_lower_positive): if so, removing it needs a whiteout. The
 * first lower layer that answers decides; an error answers "present".
 */
export function lowerPositive(dirs: readonly { layer: Layer; fd: number }[], upper: Layer | undefined, name: string, lstat: LstatFn = lstatAt): boolean {
  for (const d of dirs) {
    if (d.layer === upper) continue;
    const p = probe(d.fd, name, undefined, lstat);
    if (p.kind !== 'absent') return p.kind !== 'whiteout';
  }
  return false;
}
