// The layer stack: the upper directory (if any) on top, then the lower directories from the
// top down. Each layer is held open by an O_PATH fd so every lookup is fd-relative.
import { C, sys } from '../host/native';
import { lstatAt, isDir, type Stat } from '../host/stat';
import { check, fail, E } from './errors';
import type { OverlayConfig } from './config';

export class Layer {
  constructor(
    readonly root: string,
    readonly fd: number,
    readonly dev: number,
    /** 0 is the topmost layer of the stack. */
    readonly index: number,
    readonly writable: boolean,
  ) {}
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
    const openRoot = (dir: string, index: number, writable: boolean): Layer => {
      const fd = check(sys.openat(-100 /* AT_FDCWD */, dir, C.O_PATH | C.O_DIRECTORY, 0), 'open', dir);
      const st = lstatAt(fd, '');
      if (typeof st === 'number') { sys.close(fd); fail(-st, 'stat', dir); }
      if (!isDir(st.mode)) { sys.close(fd); fail(E.ENOTDIR, 'open', dir); }
      const layer = new Layer(dir, fd, st.dev, index, writable);
      opened.push(layer);
      return layer;
    };
    try {
      const upper = config.upperdir !== undefined ? openRoot(config.upperdir, 0, !config.readonly) : undefined;
      const work = config.workdir !== undefined && upper ? openRoot(config.workdir, -1, true) : undefined;
      const base = upper ? 1 : 0;
      const lowers = config.lowerdirs.map((d, i) => openRoot(d, base + i, false));
      return new LayerStack(upper ? [upper, ...lowers] : lowers, upper, work);
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
