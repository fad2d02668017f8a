// Checks the kernel makes before it mounts an overlay, so a bad mount fails with one clear line
// and no change on disk: layers exist and are directories, upper and work sit on the same
// mount in separate subtrees, no lower layer overlaps another or lies inside upper or work
// (the kernel's ELOOP), the upper mount is writable, and the mountpoint is a free directory.
// One check is overlayd's own: the mountpoint may not lie inside a layer, where the daemon's
// lookups in that layer would cross into its own mount and wait on themselves.
import fs from 'node:fs';
import path from 'node:path';
import type { OverlayConfig } from '../core/config';
import { UsageError } from './options';
import { mountAt, mountOf, readMounts, OVERLAYD_FSTYPE, type MountEntry } from './mountinfo';

function statDir(p: string, what: string): fs.Stats {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`${what} "${p}" does not exist`);
    if (code === 'ENOTCONN' || code === 'ECONNABORTED') throw new UsageError(`${what} "${p}" is on a dead FUSE mount (its daemon is gone)`);
    if (code === 'ENOTDIR') throw new UsageError(`${what} "${p}" is not a directory`);
    throw new UsageError(`${what} "${p}": ${code ?? String(err)}`);
  }
  if (!st.isDirectory()) throw new UsageError(`${what} "${p}" is not a directory`);
  return st;
}

function inside(child: string, parent: string): boolean {
  return child === parent || parent === '/' || child.startsWith(parent + '/');
}

/** Mount points in this namespace, decoded from /proc/self/mountinfo. */
export function mountPoints(): Set<string> {
  return new Set(readMounts().map((m) => m.mountpoint));
}

/** The mountpoint without following its last component: a dead FUSE mount cannot be stat'ed. */
export function resolveMountpoint(p: string): string {
  const abs = path.resolve(p);
  if (abs === '/') return abs;
  try {
    return path.join(fs.realpathSync(path.dirname(abs)), path.basename(abs));
  } catch {
    return abs;
  }
}

function checkMountpoint(mountpoint: string, mounts: MountEntry[]): string {
  const there = mountAt(resolveMountpoint(mountpoint), mounts);
  if (there?.fstype === OVERLAYD_FSTYPE) {
    let dead = false;
    try { fs.statSync(mountpoint); } catch (err) { dead = ['ENOTCONN', 'ECONNABORTED'].includes((err as NodeJS.ErrnoException).code ?? ''); }
    if (dead) throw new UsageError(`mountpoint "${mountpoint}" is a dead overlayd mount (its daemon is gone); clear it with: overlayd umount ${mountpoint}`);
    throw new UsageError(`mountpoint "${mountpoint}" is already an overlayd mount`);
  }
  statDir(mountpoint, 'mountpoint');
  const mreal = fs.realpathSync(mountpoint);
  const m = mountAt(mreal, mounts);
  if (m) throw new UsageError(`mountpoint "${mountpoint}" is already mounted (${m.fstype} from ${m.source})`);
  return mreal;
}

export function validateLayout(cfg: OverlayConfig, mountpoint: string): string {
  const mounts = readMounts();
  const lowers: string[] = [];
  for (const d of cfg.lowerdirs) { statDir(d, 'lowerdir'); lowers.push(fs.realpathSync(d)); }
  let upper: string | undefined;
  let work: string | undefined;
  if (cfg.upperdir !== undefined && cfg.workdir !== undefined) {
    statDir(cfg.upperdir, 'upperdir');
    statDir(cfg.workdir, 'workdir');
    upper = fs.realpathSync(cfg.upperdir);
    work = fs.realpathSync(cfg.workdir);
    const um = mountOf(upper, mounts);
    const wm = mountOf(work, mounts);
    if (fs.statSync(upper).dev !== fs.statSync(work).dev || (um && wm && um.id !== wm.id)) {
      throw new UsageError(`workdir "${cfg.workdir}" and upperdir "${cfg.upperdir}" must be on the same mount`);
    }
    if (um && um.mountOptions.split(',').includes('ro')) throw new UsageError(`upperdir "${cfg.upperdir}" is on a read-only mount`);
    if (inside(upper, work) || inside(work, upper)) {
      throw new UsageError(`workdir "${cfg.workdir}" and upperdir "${cfg.upperdir}" must be separate subtrees`);
    }
  }
  // The kernel's ELOOP: a lower layer may not overlap another, nor lie inside upper or work.
  for (let i = 0; i < lowers.length; i++) {
    for (let j = 0; j < lowers.length; j++) {
      if (i !== j && inside(lowers[i], lowers[j])) {
        const how = lowers[i] === lowers[j] ? 'is given twice' : `lies inside lowerdir "${cfg.lowerdirs[j]}"`;
        throw new UsageError(`lowerdir "${cfg.lowerdirs[i]}" ${how} (overlapping layers)`);
      }
    }
    if (upper !== undefined && inside(lowers[i], upper)) throw new UsageError(`lowerdir "${cfg.lowerdirs[i]}" lies inside upperdir "${cfg.upperdir}" (overlapping layers)`);
    if (work !== undefined && inside(lowers[i], work)) throw new UsageError(`lowerdir "${cfg.lowerdirs[i]}" lies inside workdir "${cfg.workdir}" (overlapping layers)`);
  }
  const mreal = checkMountpoint(mountpoint, mounts);
  const layers: [string, string][] = [...lowers.map((l): [string, string] => ['lowerdir', l])];
  if (upper !== undefined && work !== undefined) layers.push(['upperdir', upper], ['workdir', work]);
  for (const [what, p] of layers) {
    // Lookups in that layer would cross into our own mount and wait on themselves.
    if (inside(mreal, p)) throw new UsageError(`mountpoint "${mountpoint}" lies inside ${what} "${p}" (overlayd cannot serve a mount inside its own layers)`);
  }
  return mreal;
}
