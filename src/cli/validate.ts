// Checks the kernel makes before it mounts an overlay, so a bad mount fails with one clear
// line and no change on disk: layers exist and are directories, upper and work share a
// filesystem, no layer sits inside another, and the mountpoint is free.
import fs from 'node:fs';
import type { OverlayConfig } from '../core/config';
import { UsageError } from './options';

function statDir(p: string, what: string): fs.Stats {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UsageError(`${what} "${p}" does not exist`);
    throw new UsageError(`${what} "${p}": ${code ?? String(err)}`);
  }
  if (!st.isDirectory()) throw new UsageError(`${what} "${p}" is not a directory`);
  return st;
}

function real(p: string): string {
  return fs.realpathSync(p);
}

function inside(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent.endsWith('/') ? parent : parent + '/');
}

/** Mount points in this namespace, decoded from /proc/self/mountinfo. */
export function mountPoints(): Set<string> {
  const out = new Set<string>();
  let text = '';
  try { text = fs.readFileSync('/proc/self/mountinfo', 'utf8'); } catch { return out; }
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length > 4) out.add(f[4].replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return out;
}

export function validateLayout(cfg: OverlayConfig, mountpoint: string): string {
  const layers: { what: string; path: string }[] = [];
  for (const d of cfg.lowerdirs) { statDir(d, 'lowerdir'); layers.push({ what: 'lowerdir', path: real(d) }); }
  if (cfg.upperdir !== undefined && cfg.workdir !== undefined) {
    const up = statDir(cfg.upperdir, 'upperdir');
    const wk = statDir(cfg.workdir, 'workdir');
    if (up.dev !== wk.dev) throw new UsageError(`workdir "${cfg.workdir}" is on another filesystem than upperdir "${cfg.upperdir}"`);
    layers.push({ what: 'upperdir', path: real(cfg.upperdir) }, { what: 'workdir', path: real(cfg.workdir) });
  }
  statDir(mountpoint, 'mountpoint');
  const mreal = real(mountpoint);
  if (mountPoints().has(mreal)) throw new UsageError(`mountpoint "${mountpoint}" is already mounted`);
  for (let i = 0; i < layers.length; i++) {
    for (let j = 0; j < layers.length; j++) {
      if (i === j) continue;
      const a = layers[i], b = layers[j];
      if (inside(a.path, b.path)) throw new UsageError(`${a.what} "${a.path}" overlaps ${b.what} "${b.path}"`);
    }
    // Lookups would cross into our own mount and wait on themselves.
    if (inside(mreal, layers[i].path)) {
      throw new UsageError(`mountpoint "${mountpoint}" is inside ${layers[i].what} "${layers[i].path}"`);
    }
  }
  return mreal;
}

