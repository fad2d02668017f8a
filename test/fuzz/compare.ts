// What counts as the same. Per operation: the reply (value or errno) must be identical.
// Per tree: every path with the same type, mode, owner, size, content, link target, device
// numbers, xattrs and nlink (non-directories); mtimes only where they mean something (below).
import { OLD_TIME_LIMIT } from './layers';
import type { Reply } from './worker';

export interface Seen {
  type: string; mode: number; uid: number; gid: number; size?: number; nlink?: number;
  rdev?: number[]; data?: string; target?: string; list?: string; xattrs?: Record<string, string>; mtime: number;
}
export type Snapshot = Record<string, Seen>;

export function sameReply(a: Reply, b: Reply): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * mtimes, in whole seconds: fuse-native carries milliseconds, and the two views perform each
 * operation a moment apart, so a time set by "now" may differ by a second. Every time the
 * fuzzer sets itself (layer trees, utime) lies before OLD_TIME_LIMIT: such a time must match
 * exactly, and one view showing an old time where the other shows "now" is a difference
 * (a copy-up that lost the time, or a directory touched that should not have been).
 */
export function sameMtime(a: number, b: number): boolean {
  return a === b || (a >= OLD_TIME_LIMIT && b >= OLD_TIME_LIMIT);
}

export interface CompareOptions {
  /** xattr names to leave out (the kernel's own bookkeeping on an upper layer). */
  ignoreXattr?: (name: string) => boolean;
  /**
   * Raw upper layers: the kernel links its whiteouts to one shared inode made in workdir, so
   * their owner, times and nlink say nothing; a whiteout is compared as a whiteout only.
   */
  sharedWhiteouts?: boolean;
  /** Paths to leave out entirely. */
  ignorePath?: (p: string) => boolean;
}

/** Human-readable differences between snapshot `a` (the kernel's) and `b` (overlayd's). */
export function diffSnapshots(a: Snapshot, b: Snapshot, opts: CompareOptions = {}, names: [string, string] = ['kernel', 'overlayd']): string[] {
  const out: string[] = [];
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  for (const k of keys) {
    if (opts.ignorePath?.(k)) continue;
    const x = a[k];
    const y = b[k];
    if (!x || !y) {
      out.push(`${k}: only in ${x ? names[0] : names[1]} (${JSON.stringify(x ?? y)})`);
      continue;
    }
    const whiteout = x.type === 'chr' && JSON.stringify(x.rdev) === '[0,0]';
    if (opts.sharedWhiteouts && whiteout) {
      if (y.type !== 'chr' || JSON.stringify(y.rdev) !== '[0,0]') out.push(`${k}: whiteout vs ${y.type}`);
      continue;
    }
    const fields = ['type', 'mode', 'uid', 'gid', 'size', 'rdev', 'data', 'target', 'list'] as const;
    for (const f of fields) {
      if (JSON.stringify(x[f]) !== JSON.stringify(y[f])) out.push(`${k} (${x.type}): ${f} ${fmt(f, x[f])} vs ${fmt(f, y[f])}`);
    }
    if (x.nlink !== y.nlink) out.push(`${k}: nlink ${x.nlink} vs ${y.nlink}`);
    if (!sameMtime(x.mtime, y.mtime)) out.push(`${k}: mtime ${x.mtime} vs ${y.mtime}`);
    const xa = filterXattrs(x.xattrs, opts.ignoreXattr);
    const ya = filterXattrs(y.xattrs, opts.ignoreXattr);
    if (JSON.stringify(xa) !== JSON.stringify(ya)) out.push(`${k}: xattrs ${JSON.stringify(xa)} vs ${JSON.stringify(ya)}`);
  }
  return out;
}

function fmt(field: string, v: unknown): string {
  return field === 'mode' && typeof v === 'number' ? '0' + v.toString(8) : JSON.stringify(v);
}

function filterXattrs(x: Record<string, string> | undefined, ignore?: (n: string) => boolean): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(x ?? {}).sort()) if (!ignore?.(k)) out[k] = (x as Record<string, string>)[k];
  return out;
}
