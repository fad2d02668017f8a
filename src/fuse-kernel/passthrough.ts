// Which opens the kernel serves itself (FUSE passthrough: reads and writes go straight to a
// backing file, never through the daemon) and which go through us with the page cache.
//
// A reader of a lower file on a writable mount must follow the file once another fd copies it
// up (the core switches its fd, as the kernel's overlay reopens the upper file); a backing file
// cannot switch, so such readers go through the daemon, with the page cache kept across opens
// (the lower file cannot change until it is copied up, and the copy-up's writer invalidates it).
// A kernel inode has one backing file at a time and then takes no cached open: a node bound to
// another real file than the one just opened (lower hard links copied up apart) is a conflict,
// which the caller resolves by giving the name a new node.
import type { FileHandle } from '../core/handles';
import { shown } from '../host/bytes';
import { lstatAt } from '../host/stat';
import type { Logger } from '../log/logger';
import type { FuseDevice } from './device';
import type { Node } from '../core/nodes';
import { FOPEN } from './protocol';

/** -o passthrough=: `upper` (the default) binds upper files and those of a read-only mount; `all` lower readers too. */
export type PassthroughMode = 'off' | 'upper' | 'all';

/** How an open is answered: fuse_open_out's flags and backing id. */
export interface Binding {
  flags: number;
  backingId: number;
  passthrough: boolean;
}

/** The passthrough backing file a kernel inode is bound to while files on it are open. */
export interface Backing {
  id: number;
  /** Real identity (host dev:ino) of the backing file. */
  key: string;
  refs: number;
}

/** What a node's open files hold of the kernel inode: its backing file, or its page cache. */
interface NodeBinding {
  backing: Backing | undefined;
  /** Files opened without passthrough (the inode's page cache is in use). */
  cachedOpens: number;
}

export interface PassthroughCounters {
  passthroughOpens: number;
  cachedOpens: number;
  /** Backing ids registered with the kernel and not yet closed. */
  backingIds: number;
}

export class Passthrough {
  /** Whether the kernel took FUSE_PASSTHROUGH at INIT. */
  on = false;
  readonly stats: PassthroughCounters = { passthroughOpens: 0, cachedOpens: 0, backingIds: 0 };
  private warned = false;
  /** Nodes with open files (RELEASE not yet seen); dropped with their last. */
  private readonly bound = new Map<Node, NodeBinding>();

  /** `mode`: what was asked, already 'off' where the daemon cannot register backing files. */
  constructor(readonly mode: PassthroughMode, private readonly dev: FuseDevice, private readonly log: Logger) {}

  /**
   * The answer to an open of `h` on `node`, the node's backing file bound where passthrough
   * serves it; undefined where the node is bound to another file than `h`'s (a conflict).
   */
  bind(node: Node, h: FileHandle): Binding | undefined {
    const nb = this.bound.get(node) ?? { backing: undefined, cachedOpens: 0 };
    const b = this.decide(nb, h);
    if (b && !this.bound.has(node)) this.bound.set(node, nb);
    return b;
  }

  private decide(node: NodeBinding, h: FileHandle): Binding | undefined {
    let flags = FOPEN.NOFLUSH;
    let backingId = 0;
    let passthrough = false;
    if (h.below && this.mode !== 'all') {
      flags |= FOPEN.KEEP_CACHE;
      if (node.backing) return undefined;
    } else if (this.on) {
      const key = h.realKey ?? ((st) => (typeof st === 'number' ? '' : `${st.dev}:${st.ino}`))(lstatAt(h.fd, ''));
      const b = node.backing;
      if (b && b.key !== key) return undefined;
      if (b) {
        b.refs++;
        backingId = b.id;
        passthrough = true;
      } else if (node.cachedOpens === 0 && key !== '') {
        const id = this.dev.backingOpen(h.fd);
        if (id > 0) {
          this.stats.backingIds++;
          node.backing = { id, key, refs: 1 };
          backingId = id;
          passthrough = true;
        } else if (!this.warned) {
          this.warned = true;
          this.log.warn({ errno: -id, path: shown(h.path) }, 'FUSE passthrough refused for a file; its data goes through the daemon');
        }
      }
    }
    if (passthrough) {
      flags |= FOPEN.PASSTHROUGH;
      this.stats.passthroughOpens++;
    } else {
      node.cachedOpens++;
      this.stats.cachedOpens++;
    }
    return { flags, backingId, passthrough };
  }

  /** A file opened with `b` is released. */
  unbind(node: Node, b: { passthrough: boolean }): void {
    const nb = this.bound.get(node);
    if (!nb) return;
    if (b.passthrough) this.dropBacking(nb);
    else nb.cachedOpens--;
    if (!nb.backing && nb.cachedOpens <= 0) this.bound.delete(node);
  }

  /** Whether the node is bound to a backing file now. */
  isBacked(node: Node): boolean {
    return this.bound.get(node)?.backing !== undefined;
  }

  /** Nodes bound to a backing file (for counters). */
  get backedNodes(): number {
    let n = 0;
    for (const nb of this.bound.values()) if (nb.backing) n++;
    return n;
  }

  /** One file less on the node's backing file; the id is closed with the last. */
  private dropBacking(node: NodeBinding): void {
    const b = node.backing;
    if (!b) return;
    if (--b.refs > 0) return;
    node.backing = undefined;
    this.dev.backingClose(b.id);
    this.stats.backingIds--;
  }
}
