// One mount at a time per upper and work directory. A second mount would empty workdir/work
// under the first one's copy-ups and write the same upper behind its caches. The kernel marks
// both directories in use (in memory) and, with index=off, only warns; overlayd refuses, as the
// kernel does with index=on. The mark is an flock on each directory, held by the daemon: it
// dies with the daemon (kill -9 included) and puts no file on disk, so a kernel mount of the
// same layers afterwards finds exactly the layout it expects. A kernel overlay mounted on them
// in this namespace is found through mountinfo and refused the same way.
// Engines unmount a container's overlay and mount the same layers again at once: the daemon of
// the first mount is then on its way out, its lock not yet dropped. A holder whose mount is gone
// (or cannot be seen from here) is waited for, briefly; only a live mount refuses at once.
import fs from 'node:fs';
import path from 'node:path';
import { E } from '../core/errors';
import type { OverlayConfig } from '../core/config';
import { C, sys } from '../host/native';
import { mountAt, OVERLAYD_FSTYPE, readMounts, unoctal, type MountEntry } from './mountinfo';
import { UsageError } from './options';
import { listMounts, ownMountNamespace, type MountRecord } from './registry';

/** How long a lock whose holder is leaving is waited for. */
const LEAVING_WAIT_MS = 10_000;
const POLL_MS = 20;

export interface LayerLock {
  /** Lets go of the directories (the daemon's exit does the same). */
  release(): void;
}

function real(p: string): string {
  try { return fs.realpathSync(p); } catch { return path.resolve(p); }
}

/** The kernel overlay mount, if any, that uses `dir` as its upperdir or workdir. */
function kernelOverlayOn(dir: string, mounts: MountEntry[]): MountEntry | undefined {
  return mounts.find((m) => m.fstype === 'overlay' && m.superOptions.split(',').some((o) => {
    const eq = o.indexOf('=');
    const key = o.slice(0, eq);
    return (key === 'upperdir' || key === 'workdir') && real(unoctal(o.slice(eq + 1))) === dir;
  }));
}

/** The record of the daemon that holds `dir`, if it still has one. */
function holderOf(dir: string): MountRecord | undefined {
  return listMounts().find((r) => [r.upperdir, r.workdir].some((d) => d !== undefined && real(d) === dir));
}

function describe(rec: MountRecord | undefined): string {
  return rec ? `the overlayd mount at ${rec.mountpoint} (pid ${rec.pid})` : 'another overlayd mount';
}

/** A holder still serving its mount here: no reason to wait for it. */
function serving(rec: MountRecord | undefined): boolean {
  return rec !== undefined && rec.mntns === ownMountNamespace() && mountAt(rec.mountpoint)?.fstype === OVERLAYD_FSTYPE;
}

/** flock(LOCK_EX) on fd: at once, or within LEAVING_WAIT_MS while the holder is not serving. */
function takeLock(fd: number, what: string, dir: string, r: string): void {
  const deadline = Date.now() + LEAVING_WAIT_MS;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    const rc = sys.flock(fd, C.LOCK_EX | C.LOCK_NB);
    if (rc !== -E.EWOULDBLOCK) return;
    const rec = holderOf(r);
    if (serving(rec) || Date.now() >= deadline) throw new UsageError(`${what} "${dir}" is in use by ${describe(rec)}`);
    Atomics.wait(pause, 0, 0, POLL_MS); // a mount command has nothing else to do meanwhile
  }
}

/**
 * Takes upperdir and workdir for this process, or throws a UsageError naming the mount that
 * has them. A filesystem without flock (ENOLCK, EOPNOTSUPP) is mounted unguarded.
 */
export function lockUpperAndWork(cfg: OverlayConfig, mounts = readMounts()): LayerLock {
  const fds: number[] = [];
  const release = (): void => {
    for (const fd of fds.splice(0)) {
      try { fs.closeSync(fd); } catch { /* closed */ }
    }
  };
  if (cfg.upperdir === undefined || cfg.workdir === undefined) return { release };
  try {
    for (const [what, dir] of [['upperdir', cfg.upperdir], ['workdir', cfg.workdir]] as const) {
      const r = real(dir);
      const k = kernelOverlayOn(r, mounts);
      if (k) throw new UsageError(`${what} "${dir}" is in use by the kernel overlay mounted at ${k.mountpoint}`);
      const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      fds.push(fd);
      takeLock(fd, what, dir, r);
    }
  } catch (err) {
    release();
    throw err;
  }
  return { release };
}
