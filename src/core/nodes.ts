// The one tree of merged objects: a node per object a client holds (the kernel's lookups, or
// an open file), with its names. Nodes are what the union's operations take (union.ts); their
// merged paths are derived from the tree, never kept beside it.
//
// Directories, and anything still in a lower layer, are named by their place in the tree, as
// the kernel's overlay gives each lower name its own inode (lower hard links are broken apart
// by copy-up, so they must not share one). An object in the upper layer is named by its real
// identity (host dev:ino): its hard links share one node, so one kernel inode and one nlink.
// A copy-up keeps the node (the first lookup or getattr that sees the upper object re-keys it),
// so the kernel keeps its inode and dentries.
// A node has names (parent, name); a rename moves one, an unlink drops one, and a node without
// names lives on while the kernel still holds it (an unlinked file that is still open).
// Ids are never reused within a mount, so the generation is always 0.
import { isDir } from '../host/stat';
import type { DirNode } from './dircache';
import type { Attr } from './overlay';
import { joinPath } from './lookup';

export const ROOT_ID = 1;

export interface Link {
  parent: Node;
  name: string;
}

export class Node {
  /** The kernel's lookup count: entries replied minus forgotten. */
  lookups = 0;
  /**
   * Handles of the files open on this node (RELEASE not yet seen), passthrough or not; made on
   * the first open, as most nodes are never opened (see addFile).
   */
  files: Set<number> | undefined;
  /** The first name, inline (most nodes have exactly one); parent undefined: no name. */
  parent: Node | undefined = undefined;
  name = '';
  /** Names beyond the first (hard links of an upper object). */
  more: Link[] | undefined = undefined;
  /** Directories: the names below that some node stands for. */
  readonly children: Map<string, Node> | undefined;
  /** Upper non-directories: the real identity; undefined for the rest (see keyOf). */
  key: string | undefined;
  /**
   * The inode number last reported for it: the d_ino of listings that name it without
   * attributes (see Transport.readdir), and the "." and ".." of a directory's.
   */
  ino: bigint | undefined;
  /** Stands for no name any more, even if one shows the same object (see NodeTable.retire). */
  retired = false;
  /**
   * A directory's resolved layer stack (its O_PATH fds in every layer that contributes), while
   * the directory cache holds it (dircache.ts): lookups below then never walk a host path.
   */
  stack: DirNode | undefined = undefined;
  private pathCache: string | undefined;
  private pathGen = -1;

  constructor(readonly id: number, readonly dir: boolean) {
    if (dir) this.children = new Map();
  }

  addFile(fh: number): void {
    (this.files ??= new Set()).add(fh);
  }

  dropFile(fh: number): void {
    this.files?.delete(fh);
    if (this.files?.size === 0) this.files = undefined;
  }

  /** The names, first first (a fresh array: for the rare callers that walk them). */
  get links(): Link[] {
    if (!this.parent) return [];
    const first = { parent: this.parent, name: this.name };
    return this.more ? [first, ...this.more] : [first];
  }

  get nameCount(): number {
    return this.parent ? 1 + (this.more?.length ?? 0) : 0;
  }

  addLink(parent: Node, name: string): void {
    if (!this.parent) { this.parent = parent; this.name = name; }
    else (this.more ??= []).push({ parent, name });
  }

  removeLink(parent: Node, name: string): void {
    if (this.parent === parent && this.name === name) {
      const next = this.more?.shift();
      this.parent = next?.parent;
      this.name = next?.name ?? '';
    } else if (this.more) {
      const i = this.more.findIndex((l) => l.parent === parent && l.name === name);
      if (i >= 0) this.more.splice(i, 1);
    }
    if (this.more?.length === 0) this.more = undefined;
  }

  clearLinks(): void {
    this.parent = undefined;
    this.name = '';
    this.more = undefined;
  }

  /** Some handle open on the node, if any. */
  anyFile(): number | undefined {
    return this.files?.values().next().value;
  }

  /** Its cached path no longer holds (it got its first name). */
  forgetPath(): void {
    this.pathGen = -1;
  }

  /** The merged path, or undefined for a node with no name left. */
  path(gen: number): string | undefined {
    if (this.id === ROOT_ID) return '/';
    if (this.pathGen === gen) return this.pathCache;
    const parentPath = this.parent?.path(gen);
    this.pathCache = parentPath === undefined ? undefined : joinPath(parentPath, this.name);
    this.pathGen = gen;
    return this.pathCache;
  }
}

/** The real identity of an upper non-directory; undefined where a node stands for one name. */
export function keyOf(a: Attr): string | undefined {
  return a.inUpper && a.realIno !== undefined && !isDir(a.mode) ? `${a.dev}:${a.realIno}` : undefined;
}

export class NodeTable {
  readonly root = new Node(ROOT_ID, true);
  private readonly byId = new Map<number, Node>([[ROOT_ID, this.root]]);
  private readonly byKey = new Map<string, Node>();
  private nextId = ROOT_ID + 1;
  /** Bumped by every change of names; cached paths older than it are recomputed. */
  private gen = 0;

  constructor() {
    this.root.lookups = 1;
  }

  get size(): number {
    return this.byId.size;
  }

  /** Moves with every change that can change an existing path's node (a removal, a rename). */
  get generation(): number {
    return this.gen;
  }

  /** Nodes a client holds (lookups or open files), the root aside; the rest are cached directories (walks the table: for counters). */
  heldByClients(): number {
    let n = 0;
    for (const node of this.byId.values()) if (node !== this.root && (node.lookups > 0 || node.files)) n++;
    return n;
  }

  get(id: number): Node | undefined {
    return this.byId.get(id);
  }

  pathOf(node: Node): string | undefined {
    return node.path(this.gen);
  }

  /** The node standing for a merged path, if there is one (held by a client, or a cached directory). */
  find(path: string): Node | undefined {
    if (path === '/') return this.root;
    let n: Node | undefined = this.root;
    let from = 1;
    while (n) {
      const end = path.indexOf('/', from);
      n = n.children?.get(end < 0 ? path.slice(from) : path.slice(from, end));
      if (end < 0) return n;
      from = end + 1;
    }
    return undefined;
  }

  /** The child name of `parent` some node stands for, if any. */
  child(parent: Node, name: string): Node | undefined {
    return parent.children?.get(name);
  }

  /**
   * The node for the object `attr` now seen at parent/name, made if needed. Does not count a
   * lookup: callers do that once the reply carrying the id has been written.
   */
  entry(parent: Node, name: string, attr: Attr): Node {
    const n = this.nodeFor(parent, name, attr);
    n.ino = attr.ino;
    return n;
  }

  private nodeFor(parent: Node, name: string, attr: Attr): Node {
    if (isDir(attr.mode)) return this.dirChild(parent, name);
    const existing = this.child(parent, name);
    const key = keyOf(attr);
    if (key === undefined) {
      // A lower object: one node per name.
      if (existing && !existing.dir && existing.key === undefined) return existing;
      if (existing) this.unlinkName(parent, name);
      const n = this.make(false);
      this.link(n, parent, name);
      return n;
    }
    const owner = this.byKey.get(key);
    if (owner) {
      if (existing === owner) return owner;
      if (existing) this.unlinkName(parent, name);
      this.link(owner, parent, name);
      return owner;
    }
    // An upper object not seen before at a name that had a node: that name's copy-up (keep
    // its node, so the kernel keeps its inode and dentry), unless the node has other names.
    if (existing && this.canRekey(existing)) {
      this.rekey(existing, key);
      return existing;
    }
    if (existing) this.unlinkName(parent, name);
    const n = this.make(false);
    n.key = key;
    this.byKey.set(key, n);
    this.link(n, parent, name);
    return n;
  }

  /** The directory node for parent/name, now known to show a directory; made if needed. */
  dirChild(parent: Node, name: string): Node {
    const existing = this.child(parent, name);
    if (existing?.dir) return existing;
    if (existing) this.unlinkName(parent, name);
    const n = this.make(true);
    this.link(n, parent, name);
    return n;
  }

  /** After a getattr by path: follow a copy-up where that is safe. */
  refresh(node: Node, attr: Attr): void {
    if (node.dir || node.retired) return;
    const key = keyOf(attr);
    if (key === undefined || key === node.key || this.byKey.has(key)) return;
    if (this.canRekey(node)) this.rekey(node, key);
  }

  /** A lower object's node, whose one name now shows its copy in upper. */
  private canRekey(node: Node): boolean {
    return !node.dir && !node.retired && node.key === undefined && node.nameCount === 1;
  }

  private rekey(node: Node, key: string): void {
    if (node.key !== undefined && this.byKey.get(node.key) === node) this.byKey.delete(node.key);
    node.key = key;
    this.byKey.set(key, node);
  }

  private make(dir: boolean): Node {
    const n = new Node(this.nextId++, dir);
    this.byId.set(n.id, n);
    return n;
  }

  private link(node: Node, parent: Node, name: string): void {
    const first = node.parent === undefined;
    node.addLink(parent, name);
    parent.children?.set(name, node);
    // A new name changes no other node's path: only this node's, where it is its first (a
    // second name of a hard link leaves the path on the first). Cached paths stay valid
    // through a create, a mkdir or a lookup (a tar x makes nothing but these); a removal or a
    // rename bumps the generation.
    if (!first) return;
    if (node.children && node.children.size > 0) this.gen++;
    else node.forgetPath();
  }

  /** The name parent/name no longer stands for the node it did (unlink, rmdir, replaced). */
  unlinkName(parent: Node, name: string): void {
    const node = this.child(parent, name);
    if (node) this.dropLink(node, parent, name);
  }

  private dropLink(node: Node, parent: Node, name: string): void {
    if (parent.children?.get(name) === node) parent.children.delete(name);
    node.removeLink(parent, name);
    this.gen++;
    this.maybeDrop(node);
    this.maybeDrop(parent);
  }

  /** Moves a node's name, as rename(2) did; `exchange` swaps the two names. */
  rename(oldParent: Node, oldName: string, newParent: Node, newName: string, exchange: boolean): void {
    const src = this.child(oldParent, oldName);
    const dst = this.child(newParent, newName);
    if (src === dst && src) return;
    const detach = (n: Node, p: Node, name: string): void => {
      p.children?.delete(name);
      n.removeLink(p, name);
    };
    if (src) detach(src, oldParent, oldName);
    if (dst) detach(dst, newParent, newName);
    if (src) this.link(src, newParent, newName);
    if (dst && exchange) this.link(dst, oldParent, oldName);
    this.gen++;
    if (dst && !exchange) this.maybeDrop(dst);
    this.maybeDrop(oldParent);
  }

  /**
   * The node stops standing for its name and number: the next lookup makes a new node (and
   * the kernel a new inode) for the object there. Open files on it go on through their handles.
   */
  retire(node: Node): void {
    if (node.id === ROOT_ID) return;
    if (node.key !== undefined && this.byKey.get(node.key) === node) this.byKey.delete(node.key);
    node.key = undefined;
    node.retired = true;
    for (const l of [...node.links]) this.dropLink(node, l.parent, l.name);
  }

  /** FORGET: the kernel dropped n lookups. */
  forget(node: Node, n: number): void {
    if (node.id === ROOT_ID) return;
    node.lookups = Math.max(0, node.lookups - n);
    this.maybeDrop(node);
  }

  /** Forgets a node the kernel no longer holds, has no open file on, and that names nothing. */
  maybeDrop(node: Node): void {
    // An upper object with no name left and no file open is gone from the disk (as far as
    // this mount knows), and its inode number may be handed to the next object created: that
    // one must not be found as this node, whose kernel inode (cached symlink target,
    // attributes) may still be alive while the kernel has not forgotten it.
    if (node.key !== undefined && node.nameCount === 0 && !node.files && this.byKey.get(node.key) === node) {
      this.byKey.delete(node.key);
    }
    if (node.id === ROOT_ID || node.lookups > 0 || node.files || node.stack) return;
    if (node.children && node.children.size > 0) return;
    if (!this.byId.has(node.id)) return;
    this.byId.delete(node.id);
    if (node.key !== undefined && this.byKey.get(node.key) === node) this.byKey.delete(node.key);
    const parents: Node[] = [];
    for (const l of node.links) {
      if (l.parent.children?.get(l.name) === node) l.parent.children.delete(l.name);
      parents.push(l.parent);
    }
    node.clearLinks();
    this.gen++;
    for (const p of parents) this.maybeDrop(p);
  }
}
