// Inode numbers the merged view reports: stable for a path, never shared by two files.
// On one filesystem the real inode numbers already are (the kernel's "same fs" case); across
// filesystems the layer's filesystem index goes into the high bits, like the kernel's xino.
import { sys } from '../host/native';
import { S_IFMT, isDir, type Stat } from '../host/stat';
import type { LayerDir } from './dircache';
import type { Layer, LayerStack } from './layers';
import { decodeOrigin, type Origin, type UuidMode } from './origin';
import { OverlayXattrs } from './xattrs';

const XINO_SHIFT = 56n;
const LOW_MASK = (1n << XINO_SHIFT) - 1n;

const ORIGIN_CACHE = 16384;

export class InodeNumbers {
  private readonly fsIndex = new Map<number, bigint>();
  private readonly single: boolean;
  private readonly lowers: Layer[];
  private readonly originName: string;
  /** Upper object (dev:ino:ctime, so a recycled inode number misses) → reported number. */
  private readonly originCache = new Map<string, bigint>();

  constructor(stack: LayerStack, userxattr: boolean, private readonly uuid: UuidMode = 'null') {
    this.single = stack.singleDevice;
    for (const l of stack.layers) if (!this.fsIndex.has(l.dev)) this.fsIndex.set(l.dev, BigInt(this.fsIndex.size));
    this.lowers = stack.layers.filter((l) => l !== stack.upper);
    this.originName = OverlayXattrs.of(userxattr).origin;
  }

  /**
   * The number the merged view reports for an upper object: a copy keeps its origin's number,
   * as ovl_getattr reports it, but not the copy of a lower hard link (nlink > 1): without an
   * index, the links left below keep that number and are other files now, so the copy shows
   * its own. `below` are the lower directories of its merged parent, where the origin is
   * looked for first (see origin.ts).
   */
  ofUpper(dirFd: number, name: string, st: Stat, below?: readonly LayerDir[]): bigint {
    const key = `${st.dev}:${st.ino}:${st.ctime.sec}.${st.ctime.nsec}`;
    const hit = this.originCache.get(key);
    if (hit !== undefined) return hit;
    let ino = this.of(st.dev, st.ino);
    const o = this.origin(dirFd, name, st, below);
    // A link count not known (an origin read, not decoded): maybe a hard link, so not shared.
    if (o && (isDir(st.mode) || o.nlink === 1)) ino = this.of(o.layer.dev, o.ino);
    if (this.originCache.size >= ORIGIN_CACHE) this.originCache.delete(this.originCache.keys().next().value as string);
    this.originCache.set(key, ino);
    return ino;
  }

  /** The lower object an upper one was copied from, where its origin xattr names one of the same type. */
  origin(dirFd: number, name: string, st: Stat, below?: readonly LayerDir[]): Origin | undefined {
    const fb = sys.getxattr(dirFd, name, this.originName);
    const o = typeof fb === 'number' ? undefined : decodeOrigin(fb, this.lowers, this.uuid, below && { dirs: below, name });
    return o && (o.mode === undefined || (o.mode & S_IFMT) === (st.mode & S_IFMT)) ? o : undefined;
  }

  of(dev: number, ino: bigint): bigint {
    if (this.single) return ino;
    return ((this.fsIndex.get(dev) ?? 0n) << XINO_SHIFT) | (ino & LOW_MASK);
  }
}
