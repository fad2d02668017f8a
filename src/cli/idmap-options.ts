// uidmapping=, gidmapping=, squash_to_root, squash_to_uid=, squash_to_gid= (fuse-overlayfs's
// options; see src/core/idmap.ts for what they mean). Stricter than fuse-overlayfs, which takes
// a zero length or overlapping ranges silently: those are errors here.
import type { IdMapping, IdRange } from '../core/idmap';
import { UsageError } from './options';

export const MAX_ID_RANGES = 340; // the kernel's limit on a user namespace's uid_map
const MAX_ID = 0xffffffff;

function bad(key: string, why: string): Error {
  return new UsageError(`option ${key}: ${why}`);
}

function id(key: string, s: string, what: string): number {
  if (!/^\d+$/.test(s)) throw bad(key, `${what} "${s}" is not a number`);
  const n = Number(s);
  if (n > MAX_ID) throw bad(key, `${what} ${s} is past ${MAX_ID}`);
  return n;
}

/** Parses C:H:L[:C:H:L...]; a leading colon is tolerated (rootless keep-id passes one). */
export function parseIdRanges(key: string, v: string): IdRange[] {
  const parts = (v.startsWith(':') ? v.slice(1) : v).split(':');
  if (v === '' || parts.length % 3 !== 0) throw bad(key, `"${v}" is not container:host:length[:container:host:length...]`);
  if (parts.length / 3 > MAX_ID_RANGES) throw bad(key, `${parts.length / 3} ranges, at most ${MAX_ID_RANGES}`);
  const out: IdRange[] = [];
  for (let i = 0; i < parts.length; i += 3) {
    const stored = id(key, parts[i], 'container id');
    const shown = id(key, parts[i + 1], 'host id');
    const length = id(key, parts[i + 2], 'length');
    if (length === 0) throw bad(key, `range ${parts.slice(i, i + 3).join(':')} has length 0`);
    if (stored + length - 1 > MAX_ID || shown + length - 1 > MAX_ID) throw bad(key, `range ${parts.slice(i, i + 3).join(':')} goes past ${MAX_ID}`);
    for (const o of out) {
      if (stored < o.stored + o.length && o.stored < stored + length) throw bad(key, `range ${parts.slice(i, i + 3).join(':')} overlaps another on the container side`);
      if (shown < o.shown + o.length && o.shown < shown + length) throw bad(key, `range ${parts.slice(i, i + 3).join(':')} overlaps another on the host side`);
    }
    out.push({ stored, shown, length });
  }
  return out;
}

/** Handles one -o item if it is an id-mapping option; returns whether it was. */
export function idMapOption(m: IdMapping, key: string, val: string | undefined): boolean {
  switch (key) {
    case 'uidmapping': if (val === undefined) throw bad(key, 'needs a value'); m.uids = parseIdRanges(key, val); return true;
    case 'gidmapping': if (val === undefined) throw bad(key, 'needs a value'); m.gids = parseIdRanges(key, val); return true;
    case 'squash_to_root':
      if (val !== undefined) throw bad(key, 'takes no value');
      m.squashUid = 0; m.squashGid = 0; return true;
    case 'squash_to_uid': if (val === undefined) throw bad(key, 'needs a value'); m.squashUid = id(key, val, 'uid'); return true;
    case 'squash_to_gid': if (val === undefined) throw bad(key, 'needs a value'); m.squashGid = id(key, val, 'gid'); return true;
    default: return false;
  }
}
