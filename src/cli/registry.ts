// Which overlayd mounts are served on this machine: one small JSON file per mount under
// /run/overlayd, PID-SEQ.json (a resident server serves many, a daemon of its own one), written
// when it mounts, refreshed with its counters (every few seconds, and at once on SIGUSR1, which
// `overlayd status` sends), removed when its session ends. A file whose daemon died is
// dropped by the next reader. A user's daemons (mounted through fusermount3) cannot write
// /run/overlayd: theirs go to $XDG_RUNTIME_DIR/overlayd, else /tmp/overlayd-UID (0700, checked
// to be the user's own), and root's `status` reads those too.
import fs from 'node:fs';
import path from 'node:path';
import { mkdirs } from '../host/mkdirs';
import type { TransportCounters } from '../transport';

const SYSTEM_RUN_DIR = '/run/overlayd';

/** A directory that is `uid`'s own, not a symlink, and closed to others; created if missing. */
function ownPrivateDir(dir: string, uid: number, create: boolean): boolean {
  try {
    if (create) fs.mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return false;
  }
  try {
    const st = fs.lstatSync(dir);
    return st.isDirectory() && st.uid === uid && (st.mode & 0o022) === 0;
  } catch {
    return false;
  }
}

/** Whether we may write in `dir`, or create it. */
function writable(dir: string): boolean {
  try { fs.accessSync(fs.existsSync(dir) ? dir : path.dirname(dir), fs.constants.W_OK); return true; } catch { return false; }
}

/** The rule native/client.c's run_dir() follows too: both must find the same server socket. */
function runDir(): string {
  if (process.env.OVERLAYD_RUN_DIR) return process.env.OVERLAYD_RUN_DIR;
  const uid = process.getuid?.() ?? 0;
  // Root of a user namespace (rootless podman's) cannot write the host's /run: as a user.
  if (uid === 0 && writable(SYSTEM_RUN_DIR)) return SYSTEM_RUN_DIR;
  const xdg = process.env.XDG_RUNTIME_DIR;
  if (xdg && path.isAbsolute(xdg) && ownPrivateDir(xdg, uid, false)) return path.join(xdg, 'overlayd');
  return `/tmp/overlayd-${uid}`;
}

/** Where this process's daemons keep their records. */
export const RUN_DIR = runDir();

/** Makes RUN_DIR (and its parents) with `mode`; throws one line saying which and why where it cannot. */
export function makeRunDir(mode: number): void {
  try {
    mkdirs(RUN_DIR, mode);
  } catch (err) {
    const from = process.env.OVERLAYD_RUN_DIR ? ' (OVERLAYD_RUN_DIR)' : '';
    throw new Error(`cannot make the run directory ${RUN_DIR}${from}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/**
 * Where records may be read from: ours, and (with no OVERLAYD_RUN_DIR) root's and every user's
 * that we can read; a user's record counts only for a daemon of that user (see listMounts).
 */
function readDirs(): string[] {
  const dirs = [RUN_DIR];
  if (process.env.OVERLAYD_RUN_DIR) return dirs;
  dirs.push(SYSTEM_RUN_DIR);
  try { for (const n of fs.readdirSync('/tmp')) if (/^overlayd-\d+$/.test(n)) dirs.push(path.join('/tmp', n)); } catch { /* none */ }
  try { for (const n of fs.readdirSync('/run/user')) if (/^\d+$/.test(n)) dirs.push(path.join('/run/user', n, 'overlayd')); } catch { /* none */ }
  return [...new Set(dirs)];
}

/** The real uid of process `pid`, or -1. */
function uidOf(pid: number): number {
  try {
    const m = /^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : -1;
  } catch {
    return -1;
  }
}

/** The directory each listed record was read from. */
const recordDirs = new Map<number, string>();

export interface Counters extends TransportCounters {
  /** FUSE operations served. */
  ops: number;
  openFiles: number;
  /** In a server: the open files this mount may hold, its share of the server's fds (fdshare.ts). */
  openFilesShare?: number;
  copyUps: number;
  bytesCopiedUp: number;
  whiteouts: number;
  rssBytes: number;
  /** The daemon's open fds, and of those the layer directories its directory cache holds. */
  fds?: number;
  dirCacheEntries?: number;
  dirCacheFds?: number;
  /** V8's heap in use, and memory outside it held by JS objects (Buffers). */
  heapUsedBytes?: number;
  externalBytes?: number;
}

export interface MountRecord {
  pid: number;
  /** Which of the process's mounts: a server numbers them from 1, in the order it mounted them. */
  seq: number;
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
  /** How it speaks FUSE: kernel or fuse-native, and for kernel how it mounted (mount(2) or fusermount3). */
  transport?: string;
  counters?: Counters;
}

const RECORD_NAME = /^(\d+)-(\d+)\.json$/;
const fileOf = (pid: number, seq: number): string => path.join(recordDirs.get(pid) ?? RUN_DIR, `${pid}-${seq}.json`);

export function ownMountNamespace(pid: number | 'self' = 'self'): string {
  try { return fs.readlinkSync(`/proc/${pid}/ns/mnt`); } catch { return ''; }
}

export function registerMount(rec: MountRecord): void {
  try {
    const uid = process.getuid?.() ?? 0;
    if (uid === 0 || process.env.OVERLAYD_RUN_DIR) makeRunDir(0o755);
    else if (!ownPrivateDir(RUN_DIR, uid, true)) return; // someone else's: keep no record rather than trust it
    const tmp = fileOf(rec.pid, rec.seq) + '.tmp';
    // Readable by all (a user's status lists root's mounts), writable by us alone: the daemon's
    // umask is 0, and a leftover temp file keeps the mode it was made with.
    const fd = fs.openSync(tmp, 'w', 0o644);
    try {
      fs.fchmodSync(fd, 0o644);
      fs.writeSync(fd, JSON.stringify(rec));
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, fileOf(rec.pid, rec.seq));
  } catch {
    // Status is a convenience; a read-only /run must not stop a mount.
  }
}

export function unregisterMount(pid: number, seq: number): void {
  try { fs.unlinkSync(fileOf(pid, seq)); } catch { /* already gone */ }
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

export function readRecord(pid: number, seq: number): MountRecord | undefined {
  try { return JSON.parse(fs.readFileSync(fileOf(pid, seq), 'utf8')) as MountRecord; } catch { return undefined; }
}

/** Whether the session of mount `seq` of process `pid` is over (its record removed, or the process gone). */
export function sessionEnded(pid: number, seq: number): boolean {
  return !daemonAlive(pid) || !fs.existsSync(fileOf(pid, seq));
}

/**
 * Records of live daemons; with `sameNamespace`, only those serving in this mount namespace
 * (the others' mounts are not visible here). Stale files of dead daemons are removed.
 */
export function listMounts(opts: { sameNamespace?: boolean } = {}): MountRecord[] {
  const ns = ownMountNamespace();
  const out: MountRecord[] = [];
  // A process's records all live in the first directory they are found in.
  const dirOf = new Map<number, string>();
  for (const dir of readDirs()) {
    let names: string[] = [];
    let owner = -1;
    try { names = fs.readdirSync(dir); owner = fs.statSync(dir).uid; } catch { continue; }
    for (const n of names) {
      const m = RECORD_NAME.exec(n);
      if (!m) continue;
      const pid = Number(m[1]), seq = Number(m[2]);
      if ((dirOf.get(pid) ?? dir) !== dir) continue;
      recordDirs.set(pid, dir);
      const rec = readRecord(pid, seq);
      if (!rec || rec.pid !== pid || rec.seq !== seq) continue;
      if (!daemonAlive(pid)) { if (dir === RUN_DIR || (process.getuid?.() ?? 0) === 0) unregisterMount(pid, seq); continue; }
      // A user's directory speaks only for that user's daemons.
      if (owner !== 0 && uidOf(pid) !== owner) continue;
      dirOf.set(pid, dir);
      if (opts.sameNamespace && rec.mntns !== ns) continue;
      out.push(rec);
    }
  }
  return out.sort((a, b) => a.started - b.started);
}

/**
 * The record of the live daemon serving `mountpoint` in this mount namespace, wherever it keeps
 * it: a daemon started with another OVERLAYD_RUN_DIR is found through its environment. Only a
 * record its own daemon's user (or root) wrote counts.
 */
export function findDaemonRecord(mountpoint: string): MountRecord | undefined {
  const ns = ownMountNamespace();
  let pids: string[] = [];
  try { pids = fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n)); } catch { return undefined; }
  for (const n of pids) {
    const pid = Number(n);
    if (pid === process.pid || ownMountNamespace(pid) !== ns || !daemonAlive(pid)) continue;
    let env: string[];
    try { env = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0'); } catch { continue; }
    const dir = env.find((e) => e.startsWith('OVERLAYD_RUN_DIR='))?.slice('OVERLAYD_RUN_DIR='.length);
    if (!dir) continue;
    let names: string[] = [];
    try { names = fs.readdirSync(dir).filter((n) => n.startsWith(`${pid}-`) && RECORD_NAME.test(n)); } catch { continue; }
    for (const n of names) {
      const file = path.join(dir, n);
      try {
        const owner = fs.statSync(file).uid;
        if (owner !== 0 && owner !== uidOf(pid)) continue;
        const rec = JSON.parse(fs.readFileSync(file, 'utf8')) as MountRecord;
        if (rec.pid === pid && rec.mountpoint === mountpoint && rec.mntns === ns) {
          recordDirs.set(pid, dir);
          return rec;
        }
      } catch { /* no record there */ }
    }
  }
  return undefined;
}

/** A record as `refreshRecords` left it: `fresh` where its process wrote it anew when asked. */
export interface Refreshed {
  rec: MountRecord;
  fresh: boolean;
}

/**
 * Asks each serving process for fresh counters (SIGUSR1, once each) and waits briefly for them
 * to be written. A process that does not (busy, stopped, out of fds, another user's) leaves its
 * record as it was: not fresh.
 */
export function refreshRecords(recs: MountRecord[], waitMs = 1000): Refreshed[] {
  const keyOf = (r: MountRecord): string => `${r.pid}-${r.seq}`;
  const pending = new Map<string, MountRecord>();
  const signalled = new Set<number>();
  for (const r of recs) {
    try {
      if (!signalled.has(r.pid)) process.kill(r.pid, 'SIGUSR1');
      signalled.add(r.pid);
      pending.set(keyOf(r), r);
    } catch { /* gone */ }
  }
  const deadline = Date.now() + waitMs;
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  const out = new Map<string, Refreshed>(recs.map((r) => [keyOf(r), { rec: r, fresh: false }]));
  while (pending.size > 0 && Date.now() < deadline) {
    for (const [key, before] of [...pending]) {
      const now = readRecord(before.pid, before.seq);
      if (now && now.updated !== before.updated) { out.set(key, { rec: now, fresh: true }); pending.delete(key); }
    }
    if (pending.size > 0) Atomics.wait(sleeper, 0, 0, 10);
  }
  return recs.map((r) => out.get(keyOf(r)) as Refreshed);
}
