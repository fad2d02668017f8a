// What counts as the same. Per operation: the reply (value or errno) must be identical.
// Per tree: every path with the same type, mode, owner, size, content, link target, device
// numbers, xattrs and nlink (non-directories); mtimes only where they mean something (below).
import { OLD_TIME_LIMIT } from './layers';
import type { Reply } from './worker';

export interface Seen {
  type: string; mode: number; uid: number; gid: number; size?: number; nlink?: number;
  rdev?: number[]; data?: string; target?: string; list?: string; xattrs?: Record<string, string>;
  /** mtime: whole seconds, and the nanoseconds apart (worker.py). */
  mtime: number; mtimeNs?: number;
  /** st_dev:st_ino of a non-directory in a walk; only which paths share one is compared. */
  ino?: string;
}
export type Snapshot = Record<string, Seen>;

/**
 * Two replies are the same when equal once their mtimes (stat replies carry one) are put in
 * the form sameMtime compares: "now" for a time set by now, the whole seconds, or with `ns`
 * the nanoseconds too.
 */
export function sameReply(a: Reply, b: Reply, ns = false): boolean {
  return JSON.stringify(comparableReply(a, ns)) === JSON.stringify(comparableReply(b, ns));
}

export function comparableReply(x: Reply, ns: boolean): Reply {
  if (!('r' in x) || x.r === null || typeof x.r !== 'object' || !('mtime' in x.r)) return x;
  const { mtime, mtimeNs, ...rest } = x.r as { mtime: number; mtimeNs?: number };
  return { r: { ...rest, mtime: mtime >= OLD_TIME_LIMIT ? 'now' : ns ? `${mtime}.${String(mtimeNs ?? 0).padStart(9, '0')}` : mtime } };
}

/**
 * mtimes. The two views perform each operation a moment apart, so two times set by "now"
 * differ, and are equal here. Every time the fuzzer sets itself (layer trees, utime) lies
 * before OLD_TIME_LIMIT: such a time must match exactly — to the nanosecond with `ns` (the
 * kernel transport), in whole seconds without (fuse-native carries milliseconds) — and one
 * view showing an old time where the other shows "now" is a difference (a copy-up that lost
 * the time, or a directory touched that should not have been).
 */
export function sameMtime(a: number, b: number, aNs = 0, bNs = 0, ns = false): boolean {
  if (a >= OLD_TIME_LIMIT && b >= OLD_TIME_LIMIT) return true;
  return a === b && (!ns || aNs === bNs);
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
  /** Compare mtimes to the nanosecond (see sameMtime). */
  ns?: boolean;
  /**
   * Compare which paths share an inode (hard links): a copy-up of one link of a lower hard
   * link makes it another file, with its own st_ino (tar and cp -a rely on it). Not on
   * fuse-native, whose inode numbers are its own.
   */
  links?: boolean;
}

/** For each non-directory, the other paths with its st_ino. */
function linkGroups(s: Snapshot): Map<string, string> {
  const byIno = new Map<string, string[]>();
  for (const [p, x] of Object.entries(s)) {
    if (x.ino === undefined) continue;
    const group = byIno.get(x.ino);
    if (group) group.push(p);
    else byIno.set(x.ino, [p]);
  }
  const out = new Map<string, string>();
  for (const group of byIno.values()) for (const p of group) out.set(p, group.filter((q) => q !== p).sort().join(' '));
  return out;
}

/** Human-readable differences between snapshot `a` (the kernel's) and `b` (overlayd's). */
export function diffSnapshots(a: Snapshot, b: Snapshot, opts: CompareOptions = {}, names: [string, string] = ['kernel', 'overlayd']): string[] {
  const out: string[] = [];
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  const links = opts.links ? [linkGroups(a), linkGroups(b)] : undefined;
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
    if (links && links[0].get(k) !== links[1].get(k)) out.push(`${k}: same inode as [${links[0].get(k) ?? ''}] vs [${links[1].get(k) ?? ''}]`);
    if (!sameMtime(x.mtime, y.mtime, x.mtimeNs, y.mtimeNs, opts.ns)) out.push(`${k}: mtime ${fmtTime(x, opts.ns)} vs ${fmtTime(y, opts.ns)}`);
    const xa = filterXattrs(x.xattrs, opts.ignoreXattr);
    const ya = filterXattrs(y.xattrs, opts.ignoreXattr);
    if (JSON.stringify(xa) !== JSON.stringify(ya)) out.push(`${k}: xattrs ${JSON.stringify(xa)} vs ${JSON.stringify(ya)}`);
  }
  return out;
}

/**
 * Owners in two raw upper layers: every path both hold (whiteouts aside, see sharedWhiteouts)
 * must belong to the same uid and gid. The kernel and overlayd need not lay out an upper
 * layer alike (a directory one copies up and the other not, see diffSnapshots), but what both
 * wrote, they must have written as the same user: the caller for a new object, the original
 * owner for a copy-up.
 */
export function ownerDiffs(a: Snapshot, b: Snapshot): string[] {
  const out: string[] = [];
  for (const k of Object.keys(a).sort()) {
    const x = a[k];
    const y = b[k];
    if (!y) continue;
    const whiteout = (s: Seen): boolean => s.type === 'chr' && JSON.stringify(s.rdev) === '[0,0]';
    if (whiteout(x) || whiteout(y)) continue;
    if (x.uid !== y.uid || x.gid !== y.gid) out.push(`${k} (${x.type}): owner ${x.uid}:${x.gid} vs ${y.uid}:${y.gid}`);
  }
  return out;
}

function fmtTime(s: Seen, ns?: boolean): string {
  return ns ? `${s.mtime}.${String(s.mtimeNs ?? 0).padStart(9, '0')}` : String(s.mtime);
}

function fmt(field: string, v: unknown): string {
  return field === 'mode' && typeof v === 'number' ? '0' + v.toString(8) : JSON.stringify(v);
}

function filterXattrs(x: Record<string, string> | undefined, ignore?: (n: string) => boolean): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(x ?? {}).sort()) if (!ignore?.(k)) out[k] = (x as Record<string, string>)[k];
  return out;
}
