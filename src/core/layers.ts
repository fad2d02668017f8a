// The layer stack: the upper directory (if any) on top, then the lower directories from the
// top down. Each layer is held open by an O_PATH fd so every lookup is fd-relative.
//
// Mounts inside a layer are not part of it: the kernel's overlay looks names up below a mount
// point, not through it. So each layer is held through a detached, non-recursive clone of its
// mount (open_tree(OPEN_TREE_CLONE)), in which no submount exists: walks from it see the
// directories mounts cover, exactly as the kernel does. Upper and work share one clone (a
// rename from work into upper must stay within one mount). Where cloning is not permitted (no
// CAP_SYS_ADMIN over the mount), a layer is `attached` and walking into a directory that is a
// mount point fails with EXDEV instead (see lookup.ts).
import path from 'node:path';
import fs from 'node:fs';
import { toBinary } from '../host/bytes';
import { C, sys } from '../host/native';
import { lstatAt, isDir, type Stat } from '../host/stat';
import { check, fail, E } from './errors';
import type { OverlayConfig } from './config';

const AT_FDCWD = -100;

export class Layer {
  constructor(
    readonly root: string,
    readonly fd: number,
    readonly dev: number,
    /** 0 is the topmost layer of the stack. */
    readonly index: number,
    readonly writable: boolean,
    /** Held through the host's mount tree, not a clone: submounts are refused, not hidden. */
    readonly attached = false,
  ) {}
}

function sameObject(a: number, b: number): boolean {
  const x = lstatAt(a, '');
  const y = lstatAt(b, '');
  return typeof x !== 'number' && typeof y !== 'number' && x.dev === y.dev && x.ino === y.ino;
}

/**
 * Directories of one mount, already open by path (`fds`), reopened inside a detached clone of
 * that mount rooted at their deepest common ancestor; undefined where cloning is not permitted,
 * or where a mount covers part of the way down (the clone would name other directories).
 */
function detach(dirs: string[], fds: number[]): number[] | undefined {
  const real = dirs.map((d) => fs.realpathSync(d));
  let base = real[0];
  const under = (r: string): boolean => r === base || r.startsWith(base === '/' ? '/' : base + '/');
  while (!real.every(under)) base = path.dirname(base);
  const baseFd = sys.openat(AT_FDCWD, toBinary(base), C.O_PATH | C.O_DIRECTORY, 0);
  if (baseFd < 0) return undefined;
  const clone = sys.openTreeClone(baseFd);
  sys.close(baseFd);
  if (clone < 0) return undefined;
  const out: number[] = [];
  let same = true;
  try {
    for (let i = 0; i < real.length && same; i++) {
      const fd = sys.openBeneath(clone, toBinary(path.relative(base, real[i])), C.O_PATH | C.O_DIRECTORY, 0);
      if (fd < 0) { same = false; break; }
      out.push(fd);
      same = sameObject(fd, fds[i]);
    }
  } finally {
    sys.close(clone);
  }
  if (same) return out;
  for (const fd of out) sys.close(fd);
  return undefined;
}

export class LayerStack {
  /** Layers top to bottom: upper first when there is one. */
  readonly layers: Layer[];
  readonly upper: Layer | undefined;
  readonly work: Layer | undefined;

  private constructor(layers: Layer[], upper: Layer | undefined, work: Layer | undefined) {
    this.layers = layers;
    this.upper = upper;
    this.work = work;
  }

  static open(config: OverlayConfig): LayerStack {
    const opened: Layer[] = [];
    // Layer paths are the command line's text; below the roots every name is bytes.
    const openRoot = (dir: string, index: number, writable: boolean): Layer => {
      const fd = check(sys.openat(AT_FDCWD, toBinary(dir), C.O_PATH | C.O_DIRECTORY, 0), 'open', dir);
      const st = lstatAt(fd, '');
      if (typeof st === 'number') { sys.close(fd); fail(-st, 'stat', dir); }
      if (!isDir(st.mode)) { sys.close(fd); fail(E.ENOTDIR, 'open', dir); }
      const layer = new Layer(dir, fd, st.dev, index, writable);
      opened.push(layer);
      return layer;
    };
    try {
      let upper = config.upperdir !== undefined ? openRoot(config.upperdir, 0, !config.readonly) : undefined;
      let work = config.workdir !== undefined && upper ? openRoot(config.workdir, -1, true) : undefined;
      const base = upper ? 1 : 0;
      const lowers = config.lowerdirs.map((d, i) => openRoot(d, base + i, false));
      // Each group: the layers that must share one clone.
      const detached = (group: Layer[]): Layer[] => {
        const fds = detach(group.map((l) => l.root), group.map((l) => l.fd));
        const out = group.map((l, i) => new Layer(l.root, fds ? fds[i] : l.fd, l.dev, l.index, l.writable, !fds));
        if (fds) for (const l of group) sys.close(l.fd);
        group.forEach((l, i) => { opened[opened.indexOf(l)] = out[i]; });
        return out;
      };
      if (upper && work) [upper, work] = detached([upper, work]);
      else if (upper) [upper] = detached([upper]);
      const lows = lowers.map((l) => detached([l])[0]);
      return new LayerStack(upper ? [upper, ...lows] : lows, upper, work);
    } catch (err) {
      for (const l of opened) sys.close(l.fd);
      throw err;
    }
  }

  /** Statfs answers for the upper layer, or the top lower layer when read-only. */
  get statfsLayer(): Layer {
    return this.upper ?? this.layers[0];
  }

  /** True when every layer lives on one filesystem, so real inode numbers cannot collide. */
  get singleDevice(): boolean {
    const dev = this.layers[0].dev;
    return this.layers.every((l) => l.dev === dev);
  }

  rootStat(): Stat {
    return check(lstatAt(this.layers[0].fd, ''), 'stat', this.layers[0].root);
  }

  close(): void {
    for (const l of this.layers) sys.close(l.fd);
    if (this.work) sys.close(this.work.fd);
  }
}
