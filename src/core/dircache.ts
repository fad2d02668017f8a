// Merged directories already resolved, each holding O_PATH fds of its real directory in every
// contributing layer, kept on the directory's node of the one tree (nodes.ts): the tree is the
// dentry cache, this bounds what it holds. Lookups below a cached directory cost one fstatat
// per layer and never walk the host path again. Bounded by the fds it holds, not by
// directories (one directory of a 60-layer stack holds 60): the least recently used
// directories are closed first, and their nodes dropped unless a client holds them.
// Coherence rests on the rule overlayfs states too: layers change only through the mount.
import { sys, type Listing } from '../host/native';
import type { Layer } from './layers';
import type { Node, NodeTable } from './nodes';

/** One real directory that contributes to a merged directory. */
export interface LayerDir {
  layer: Layer;
  fd: number;
}

/** Lookups in one layer's directory before its names are indexed (see DirNode.namesOf). */
const INDEX_AFTER = 8;

export class DirNode {
  constructor(
    /** The merged path it was resolved at, for messages (a rename drops the stack). */
    readonly path: string,
    /** Top to bottom; stops at the first opaque directory. */
    readonly dirs: LayerDir[],
    readonly opaque: boolean,
    /** Root's fds belong to the layers and are never closed here. */
    readonly ownsFds: boolean,
  ) {}

  /**
   * What readdir learnt of the directories of layers that never change under a mount (lower
   * layers; every layer of a read-only mount), per index in `dirs`: their listings. Kept from
   * the second listing on, so a one-pass walk (find) holds no memory for it; the kernel's
   * overlay keeps a merged directory's listing likewise (ovl_dir_cache).
   */
  listings = 0;
  fixedListings?: Listing[];
  /**
   * Lookups answered by each layer's directory, and for a layer that cannot change, once it
   * has answered a few, the set of its names: a name it lacks then costs no syscall (most names
   * of a merged tree are absent from most of its layers). fuse-overlayfs keeps whole listings
   * for the same reason.
   */
  lookups?: Uint16Array;
  fixedNames?: (Set<string> | undefined)[];
  /**
   * The inode number the merged view reports for this directory, once computed: it stays as
   * long as the node does (a copy-up, removal or rename drops the node). Its attributes are
   * then one fstat of the top directory away, without the lookup (opaque and redirect marks,
   * origin) a directory's getattr otherwise costs: each unlink, create or rename in a directory
   * makes the kernel ask for the directory's attributes again.
   */
  ino?: bigint;

  /** The names of layer `i`'s directory, if that layer cannot change and is worth indexing. */
  namesOf(i: number): Set<string> | undefined {
    const known = this.fixedNames?.[i];
    if (known || this.dirs[i].layer.writable) return known;
    const counts = (this.lookups ??= new Uint16Array(this.dirs.length));
    const listed = this.fixedListings?.[i];
    if (!listed && ++counts[i] < INDEX_AFTER) return undefined;
    const listing = listed ?? sys.readdir(this.dirs[i].fd);
    if (typeof listing === 'number') return undefined;
    const set = new Set(listing[0]);
    (this.fixedNames ??= [])[i] = set;
    return set;
  }

  get top(): LayerDir {
    return this.dirs[0];
  }

  /** A merged directory in the kernel's sense: more than one layer contributes. */
  get merged(): boolean {
    return this.dirs.length > 1;
  }

  /** Its fds passed to a successor (copiedUp): closing is the successor's job. */
  private passedOn = false;

  /**
   * This directory once copied up: `upper` on top of the same directories below, whose fds pass
   * to the new stack. A copy-up changes no layer below (the new upper directory has neither an
   * opaque mark nor a redirect), so looking the directory up again would find just this.
   */
  copiedUp(upper: LayerDir): DirNode {
    const next = new DirNode(this.path, [upper, ...this.dirs], this.opaque, true);
    this.passedOn = true;
    next.ino = this.ino;
    next.listings = this.listings;
    // What was learnt per layer moves down one place with its layer.
    if (this.fixedListings) next.fixedListings = [undefined, ...this.fixedListings] as Listing[];
    if (this.fixedNames) next.fixedNames = [undefined, ...this.fixedNames];
    if (this.lookups) {
      next.lookups = new Uint16Array(this.lookups.length + 1);
      next.lookups.set(this.lookups, 1);
    }
    return next;
  }

  release(): void {
    if (this.ownsFds && !this.passedOn) for (const d of this.dirs) closeLater(d.fd);
  }
}

/**
 * Fds of dropped nodes are closed once the current operation has returned, never during it:
 * an operation may still hold entries resolved through them (and a closed number could be
 * reused by the next open). Core operations are synchronous, so a microtask is late enough.
 */
const doomed: number[] = [];
function closeLater(fd: number): void {
  if (doomed.length === 0) queueMicrotask(closeDoomed);
  doomed.push(fd);
}
function closeDoomed(): void {
  for (const fd of doomed.splice(0)) sys.close(fd);
}

/**
 * At most this many, whatever the limit: a cached directory costs about 3.7 KB of the daemon's
 * memory (measured: 2500 directories of two layers), and engines raise RLIMIT_NOFILE to 1048576,
 * whose quarter would let one server keep 480 MB of directories it may never see again.
 */
export const DIR_CACHE_MAX_FDS = 16384;

/**
 * The fds the caches of one process may hold together: a quarter of RLIMIT_NOFILE (at most
 * DIR_CACHE_MAX_FDS), leaving the rest to the clients' open files (one fd each in the daemon)
 * and to the daemon itself. A resident server's mounts share it: 20 caches of a quarter each
 * ran a server out of fds.
 */
export function dirCacheFdBudget(nofile = sys.nofileLimit(0)): number {
  return Math.min(DIR_CACHE_MAX_FDS, Math.max(64, Math.floor((nofile > 0 ? nofile : 1024) / 4)));
}

const held = (node: DirNode): number => (node.ownsFds ? node.dirs.length : 0);

/** This process's open caches, which share one budget (dirCacheFdBudget() unless set). */
const live = new Set<DirCache>();
let processBudget: number | undefined;
const processFds = (): number => { let n = 0; for (const c of live) n += c.fdCount; return n; };

/** Sets the fds every open cache of this process may hold together (undefined: the default). */
export function setDirCacheProcessBudget(fds: number | undefined): void {
  processBudget = fds;
}

/**
 * Out of fds: every cache of this process lets go of all its directories, their fds closed now
 * rather than after the operation (the one that ran out has returned). Returns how many it closed.
 */
export function giveBackFds(): number {
  let n = 0;
  for (const c of live) { n += c.fdCount; c.clear(); }
  closeDoomed();
  return n;
}

export class DirCache {
  /** Nodes holding a stack (the root's aside), least recently used first. */
  private readonly held = new Set<Node>();
  private fds = 0;

  constructor(private readonly tree: NodeTable, rootStack: DirNode, readonly maxFds = dirCacheFdBudget()) {
    tree.root.stack = rootStack;
    live.add(this);
  }

  /** The node's stack, if cached (marking it used). */
  get(node: Node): DirNode | undefined {
    const s = node.stack;
    if (s && node !== this.tree.root) {
      this.held.delete(node);
      this.held.add(node);
    }
    return s;
  }

  /** The stack cached for a merged path, if any. */
  getPath(path: string): DirNode | undefined {
    const node = this.tree.find(path);
    return node && this.get(node);
  }

  set(node: Node, stack: DirNode): void {
    this.unhold(node);
    node.stack = stack;
    this.held.add(node);
    this.fds += held(stack);
    // The newest stays, even alone over the budget: the caller is about to use it.
    while (this.fds > this.maxFds && this.held.size > 1) this.dropOldest();
    // Over the process's budget: the cache holding most gives up its least recently used, so
    // one busy mount cannot starve the others, nor an idle one keep its fds for ever.
    const budget = processBudget ??= dirCacheFdBudget();
    for (let total = processFds(); total > budget;) {
      let victim: DirCache | undefined;
      for (const c of live) if (c.held.size > (c === this ? 1 : 0) && (!victim || c.fds > victim.fds)) victim = c;
      if (!victim || victim.fds === 0) break;
      const before = victim.fds;
      victim.dropOldest();
      total -= before - victim.fds;
    }
  }

  private dropOldest(): void {
    this.drop(this.held.values().next().value as Node);
  }

  /** Closes the node's stack; the node goes too unless something else holds it. */
  private drop(node: Node): void {
    if (this.unhold(node)) this.tree.maybeDrop(node);
  }

  private unhold(node: Node): boolean {
    const s = node.stack;
    if (!s || node === this.tree.root) return false;
    s.release();
    this.fds -= held(s);
    node.stack = undefined;
    this.held.delete(node);
    return true;
  }

  /** Forget the stacks of `node` and of everything below it; call after the core changes them on disk. */
  invalidate(node: Node): void {
    if (node === this.tree.root) { this.clear(); return; }
    const below: Node[] = [];
    const walk = (n: Node): void => {
      if (n.stack) below.push(n);
      if (n.children) for (const c of n.children.values()) if (c.dir) walk(c);
    };
    walk(node);
    for (const n of below) this.drop(n);
  }

  /** invalidate() of the node at a merged path, if there is one (nothing below it is cached otherwise). */
  invalidatePath(path: string): void {
    const node = this.tree.find(path);
    if (node) this.invalidate(node);
  }

  /** Forget only the stack at `path` (its layer set changed, e.g. after copy-up), keep descendants. */
  invalidateOne(path: string): void {
    const node = this.tree.find(path);
    if (node) this.drop(node);
  }

  clear(): void {
    for (const node of [...this.held]) this.drop(node);
  }

  /** Empty, and out of the process's budget (its overlay is closing). */
  close(): void {
    this.clear();
    live.delete(this);
  }

  get size(): number {
    return this.held.size;
  }

  /** The layer directory fds the cached directories hold open (for counters). */
  get fdCount(): number {
    return this.fds;
  }
}
