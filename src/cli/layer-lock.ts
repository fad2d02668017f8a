// One mount at a time per upper and work directory. A second mount would empty workdir/work
// under the first one's copy-ups and write the same upper behind its caches. The kernel marks
// both directories in use (in memory) and, with index=off, only warns; overlayd refuses, as the
// kernel does with index=on. The mark is an flock on each directory, held by the daemon: it
// dies with the daemon (kill -9 included) and puts no file on disk, so a kernel mount of the
// same layers afterwards finds exactly the layout it expects. A kernel overlay mounted on them
// in this namespace is found through mountinfo and refused the same way.
import fs from 'node:fs';
import path from 'node:path';
import { E } from '../core/errors';
import type { OverlayConfig } from '../core/config';
import { C, sys } from '../host/native';
import { readMounts, unoctal, type MountEntry } from './mountinfo';
import { UsageError } from './options';
import { listMounts } from './registry';

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

/** Who holds `dir`, for the message: an overlayd daemon's record names its mount. */
function holderOf(dir: string): string {
  const rec = listMounts().find((r) => [r.upperdir, r.workdir].some((d) => d !== undefined && real(d) === dir));
  return rec ? `the overlayd mount at ${rec.mountpoint} (pid ${rec.pid})` : 'another overlayd mount';
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
      const rc = sys.flock(fd, C.LOCK_EX | C.LOCK_NB);
      if (rc === -E.EWOULDBLOCK) throw new UsageError(`${what} "${dir}" is in use by ${holderOf(r)}`);
    }
  } catch (err) {
    release();
    throw err;
  }
  return { release };
}
