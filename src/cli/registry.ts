// Which overlayd daemons run on this machine: one small JSON file per daemon under /run/overlayd,
// written when it mounts, refreshed with its counters (every few seconds, and at once on
// SIGUSR1, which `overlayd status` sends), removed when it exits. A file whose daemon died is
// dropped by the next reader.
import fs from 'node:fs';
import path from 'node:path';

export const RUN_DIR = process.env.OVERLAYD_RUN_DIR ?? '/run/overlayd';

export interface Counters {
  /** FUSE operations served. */
  ops: number;
  openFiles: number;
  copyUps: number;
  bytesCopiedUp: number;
  whiteouts: number;
  rssBytes: number;
}

export interface MountRecord {
  pid: number;
  mountpoint: string;
  /** mount(8)'s SOURCE: the fsname in mountinfo. */
  source: string;
  lowerdirs: string[];
  upperdir?: string;
  workdir?: string;
  /** The -o strings as given. */
  options: string[];
  /** ms since the epoch. */
  started: number;
  /** ms since the epoch of the last refresh; bumps on every write. */
  updated: number;
  /** The daemon's mount namespace (readlink /proc/PID/ns/mnt). */
  mntns: string;
  logFile?: string;
  logLevel: string;
  counters?: Counters;
}

const fileOf = (pid: number): string => path.join(RUN_DIR, `${pid}.json`);

export function ownMountNamespace(pid: number | 'self' = 'self'): string {
  try { return fs.readlinkSync(`/proc/${pid}/ns/mnt`); } catch { return ''; }
}

export function registerMount(rec: MountRecord): void {
  try {
    fs.mkdirSync(RUN_DIR, { recursive: true, mode: 0o755 });
    const tmp = fileOf(rec.pid) + '.tmp';
    fs.writeFileSync(tmp, JSON.stringify(rec));
    fs.renameSync(tmp, fileOf(rec.pid));
  } catch {
    // Status is a convenience; a read-only /run must not stop a mount.
  }
}

export function unregisterMount(pid: number): void {
  try { fs.unlinkSync(fileOf(pid)); } catch { /* already gone */ }
}

/** Whether `pid` is still an overlayd daemon (not a recycled pid of something else). */
export function daemonAlive(pid: number): boolean {
  try {
    const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X' && cmd.includes('overlayd');
  } catch {
    return false;
  }
}

export function readRecord(pid: number): MountRecord | undefined {
  try { return JSON.parse(fs.readFileSync(fileOf(pid), 'utf8')) as MountRecord; } catch { return undefined; }
}

/**
 * Records of live daemons; with `sameNamespace`, only those serving in this mount namespace
 * (the others' mounts are not visible here). Stale files of dead daemons are removed.
 */
export function listMounts(opts: { sameNamespace?: boolean } = {}): MountRecord[] {
  let names: string[] = [];
  try { names = fs.readdirSync(RUN_DIR); } catch { return []; }
  const ns = ownMountNamespace();
  const out: MountRecord[] = [];
  for (const n of names) {
    if (!/^\d+\.json$/.test(n)) continue;
    const rec = readRecord(Number(n.slice(0, -5)));
    if (!rec) continue;
    if (!daemonAlive(rec.pid)) { unregisterMount(rec.pid); continue; }
    if (opts.sameNamespace && rec.mntns !== ns) continue;
    out.push(rec);
  }
  return out.sort((a, b) => a.started - b.started);
}

/** Asks each daemon for fresh counters (SIGUSR1) and waits briefly for them to be written. */
export function refreshRecords(recs: MountRecord[], waitMs = 1000): MountRecord[] {
  const pending = new Map<number, number>();
  for (const r of recs) {
    try { process.kill(r.pid, 'SIGUSR1'); pending.set(r.pid, r.updated); } catch { /* gone */ }
  }
  const deadline = Date.now() + waitMs;
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  const out = new Map(recs.map((r) => [r.pid, r]));
  while (pending.size > 0 && Date.now() < deadline) {
    for (const [pid, before] of [...pending]) {
      const now = readRecord(pid);
      if (now && now.updated !== before) { out.set(pid, now); pending.delete(pid); }
    }
    if (pending.size > 0) Atomics.wait(sleeper, 0, 0, 10);
  }
  return recs.map((r) => out.get(r.pid) as MountRecord);
}
