// Paths to nodes, for a client that names everything by path (libfuse 2's high-level API, which
// fuse-native speaks) over the node-addressed union (core/union.ts): as libfuse's own high-level
// layer sits on its low-level one, a path is walked from the root name by name, each step reusing
// the child node the tree already has and looking up the others.
//
// The walker holds what it walked as a client holds nodes: one lookup each (the kernel's count on
// the kernel transport), in a bounded cache (libfuse's node cache, its `remember` option), and
// gives it back with union.forget on eviction and at close. The cache is an LRU of two
// generations: nodes walked since the last turn, and those of the turn before, which are
// forgotten at the next turn unless walked again. A Map used as an exact LRU (delete the first
// key on every insert) makes V8 skip the deleted slots from the front on each eviction: measured
// 5x the CPU of the path API on 100k getattrs. Nodes the tree keeps anyway (a directory
// with held children, a file that is open) outlive their eviction; the rest are dropped, so the
// tree stays bounded however many paths pass through.
//
// Files libfuse hides: libfuse 2 without hard_remove does not unlink an open file, it renames it
// to `.fuse_hidden*` in the same directory and unlinks that name after its last close (fuse.c,
// hide_node). The walker turns the rename into union.unlink (the node keeps its open files and
// has no name, as on the kernel transport) and maps the hidden name to that node, so attributes
// and changes asked by the hidden path reach the object through its files; the final unlink of
// the hidden name only drops the mapping.
import { E, FsError } from '../core/errors';
import type { Node } from '../core/nodes';
import type { Attr } from '../core/overlay';
import type { Union } from '../core/union';

/** The names libfuse 2 gives open files it hides instead of removing (fuse.c, hidden_name). */
const HIDDEN_NAME = /^\.fuse_hidden[0-9a-f]{16}$/;

/** How many walked nodes are held by default: a few thousand, as libfuse's node cache. */
export const DEFAULT_HELD = 4096;

/** A hidden name's object, and the directory it is hidden in (held, so its id stays). */
interface Hidden {
  parent: Node;
  node: Node;
}

export class PathWalker {
  /** Nodes walked since the last turn, and those of the turn before (see hold). */
  private young = new Set<Node>();
  private old = new Set<Node>();
  /** The young generation's size at which it turns old: two of them make the bound. */
  private readonly half: number;
  /** `${parent id}/${hidden name}` → the hidden object. */
  private readonly hidden = new Map<string, Hidden>();

  constructor(readonly union: Union, bound = DEFAULT_HELD) {
    if (!(bound >= 1)) throw new RangeError(`walker bound ${bound}: at least 1`);
    this.half = Math.max(1, Math.floor(bound / 2));
  }

  /** Nodes held now (at most the bound). */
  get size(): number {
    return this.young.size + this.old.size;
  }

  /** Unlinked-but-open files libfuse still names by a hidden name. */
  get hiddenCount(): number {
    return this.hidden.size;
  }

  /** The node a path names (ENOENT, ENOTDIR ... as a lookup of each step). */
  node(path: string): Node {
    return this.walk(path).node;
  }

  /**
   * A path's attributes. Its last name is not held: a stat of every file of a tree would
   * otherwise make and forget a node per file (measured: 20 MiB more peak RSS and 15% more CPU
   * stat'ing 50k files), where only the directories walked through are worth keeping.
   */
  attr(path: string): Attr {
    if (path === '/') return this.union.getattr(this.union.root);
    const { parent, name } = this.parent(path);
    const h = this.hidden.size > 0 ? this.hidden.get(key(parent, name)) : undefined;
    return h ? this.union.getattr(h.node) : this.union.attrAt(parent, name);
  }

  /** The directory node a path's last name is in, and that name (not looked up). */
  parent(path: string): { parent: Node; name: string } {
    const slash = path.lastIndexOf('/');
    if (slash < 0 || slash === path.length - 1) throw new FsError(E.EINVAL, 'path', path);
    return { parent: this.node(slash === 0 ? '/' : path.slice(0, slash)), name: path.slice(slash + 1) };
  }

  /** Whether `to` is the hidden name libfuse gives an open file instead of removing it. */
  static isHiding(to: string): boolean {
    return HIDDEN_NAME.test(to.slice(to.lastIndexOf('/') + 1));
  }

  /** libfuse's rename of an open file to a hidden name: the unlink it stands for. */
  hide(from: string, to: string): void {
    const src = this.parent(from);
    const dst = this.parent(to);
    const k = key(dst.parent, dst.name);
    if (this.hidden.has(k) || this.isHidden(src.parent, src.name)) throw new FsError(E.EBUSY, 'rename', to);
    const node = this.node(from);
    this.union.unlink(src.parent, src.name);
    if (dst.parent !== this.union.root) dst.parent.lookups++;
    this.hidden.set(k, { parent: dst.parent, node });
    // Its open files keep it now; a lookup held for a name it no longer has would only keep it longer.
    this.letGo(node);
  }

  /** Whether parent/name is a hidden name the walker maps. */
  isHidden(parent: Node, name: string): boolean {
    return this.hidden.size > 0 && this.hidden.has(key(parent, name));
  }

  /** The last unlink of a hidden name: true where parent/name was one (the mapping is dropped). */
  unhide(parent: Node, name: string): boolean {
    if (this.hidden.size === 0) return false;
    const k = key(parent, name);
    const h = this.hidden.get(k);
    if (!h) return false;
    this.hidden.delete(k);
    this.union.forget(h.parent.id, 1);
    return true;
  }

  /** Gives back the walker's lookup of a node that lost its name (unlink, rmdir, renamed over). */
  letGo(node: Node | undefined): void {
    if (node && (this.young.delete(node) || this.old.delete(node))) this.union.forget(node.id, 1);
  }

  /** Gives back every node held (the mount is gone). */
  close(): void {
    for (const node of this.old) this.union.forget(node.id, 1);
    for (const node of this.young) this.union.forget(node.id, 1);
    this.old.clear();
    this.young.clear();
    for (const h of this.hidden.values()) this.union.forget(h.parent.id, 1);
    this.hidden.clear();
  }

  private walk(path: string): { node: Node; attr?: Attr } {
    const union = this.union;
    let node = union.root;
    if (path === '/') return { node };
    let from = 1;
    for (;;) {
      const end = path.indexOf('/', from);
      const name = end < 0 ? path.slice(from) : path.slice(from, end);
      let attr: Attr | undefined;
      let next = union.table.child(node, name);
      if (next === undefined && end < 0 && this.hidden.size > 0) {
        // Not held: its open files keep it (see hide).
        const h = this.hidden.get(key(node, name));
        if (h) return { node: h.node };
      }
      if (next === undefined) ({ node: next, attr } = union.lookup(node, name));
      this.hold(next);
      if (end < 0) return { node: next, attr };
      node = next;
      from = end + 1;
    }
  }

  /** Marks a node walked now, taking a lookup of it the first time. */
  private hold(node: Node): void {
    if (node === this.union.root || this.young.has(node)) return;
    if (!this.old.delete(node)) node.lookups++;
    this.young.add(node);
    if (this.young.size >= this.half) {
      // A turn: what was not walked for a whole generation is forgotten. This walk's nodes are
      // all young; a directory of a walk longer than a generation is kept by its held child.
      for (const n of this.old) this.union.forget(n.id, 1);
      this.old = this.young;
      this.young = new Set();
    }
  }
}

function key(parent: Node, name: string): string {
  return `${parent.id}/${name}`;
}
