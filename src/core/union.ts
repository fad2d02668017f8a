// The union addressed by node: what a client that holds objects (the FUSE kernel protocol's node
// ids, go-fuse's Inode, libfuse's low-level ops) calls. Every call takes nodes of the one tree
// (nodes.ts) and names as binary strings, and keeps the tree in step with what it changed on
// disk: a create links a node, an unlink drops a name, a rename moves one. A node without a
// name (unlinked or renamed over while open) is reached through its open files.
import { C } from '../host/native';
import type { Timespec } from '../host/stat';
import type { Caller } from './config';
import { E, FsError, errnoOf } from './errors';
import { joinPath } from './lookup';
import type { Attr, Overlay } from './overlay';
import type { DirEntry } from './readdir';
import type { Node, NodeTable } from './nodes';

/** A name just resolved or made: its node (no lookup counted) and attributes. */
export interface Named {
  node: Node;
  attr: Attr;
}

/** What a setattr changes; absent fields stay. Times may be UTIME_NOW / UTIME_OMIT. */
export interface AttrChanges {
  mode?: number;
  /** -1: unchanged (with the other one set). */
  uid?: number;
  gid?: number;
  size?: number;
  atime?: Timespec;
  mtime?: Timespec;
}

/** A listing of a directory node, with the generation it was taken at. */
export interface Listing {
  entries: (DirEntry & { ino?: bigint })[];
  listedAt: number;
}

/** A name a client may send: one path component, bytes but '/' and NUL (the kernel's own check). */
function validName(name: string): void {
  if (name.length === 0 || name.includes('/')) throw new FsError(E.EINVAL, 'name', name);
}

export class Union {
  readonly table: NodeTable;
  /** Open handle → its node. */
  private readonly opened = new Map<number, Node>();
  /** Told of each node whose attributes a copy-up changed (ctime, blocks, a directory's nlink). */
  onCopyUp: ((node: Node) => void) | undefined;

  constructor(readonly overlay: Overlay) {
    this.table = overlay.tree;
    overlay.onCopyUp = (path) => {
      const node = this.table.find(path);
      if (node) this.onCopyUp?.(node);
    };
  }

  get root(): Node {
    return this.table.root;
  }

  /** The node with this id; ESTALE where it was forgotten. */
  node(id: number): Node {
    const n = this.table.get(id);
    if (!n) throw new FsError(E.ESTALE, 'node', String(id));
    return n;
  }

  /** The merged path of a node with a name; ENOENT for one without. */
  pathOf(node: Node): string {
    const p = this.table.pathOf(node);
    if (p === undefined) throw new FsError(E.ENOENT, 'path', `node ${node.id}`);
    return p;
  }

  private childPath(parent: Node, name: string): string {
    validName(name);
    return joinPath(this.pathOf(parent), name);
  }

  /** The node for parent/name and its attributes (ENOENT where nothing is visible). */
  lookup(parent: Node, name: string): Named {
    validName(name);
    return this.named(parent, name, this.overlay.lookupAt(parent, name));
  }

  /**
   * The attributes of parent/name without a node for it: for a client that names by path and
   * holds nothing of the name (a stat through libfuse's high-level API), where a node made and
   * forgotten per call would only be garbage.
   */
  attrAt(parent: Node, name: string): Attr {
    validName(name);
    const held = parent.children?.get(name);
    return held ? this.getattr(held) : this.overlay.lookupAt(parent, name);
  }

  /** The node for parent/name, just resolved to `attr` elsewhere (a listing's entry). */
  named(parent: Node, name: string, attr: Attr): Named {
    return { node: this.table.entry(parent, name, attr), attr };
  }

  /** A node's attributes: by its name, else (unlinked but open) through one of its files. */
  getattr(node: Node, fh?: number): Attr {
    const parent = node.parent;
    if (parent || node === this.table.root) {
      try {
        // An upper file's node learns its number afresh each time the table links it to a
        // name (entry), so node.ino is that of the object its name shows, even where the host
        // reused a freed inode number for it.
        const a = !parent ? this.overlay.getattr('/')
          : node.key !== undefined && node.ino !== undefined ? this.overlay.getattrOfUpper(parent, node.name, node.key, node.ino)
            : this.overlay.lookupAt(parent, node.name);
        this.table.refresh(node, a);
        node.ino = a.ino;
        return a;
      } catch (err) {
        if (errnoOf(err) !== E.ENOENT || (!node.files && fh === undefined)) throw err;
      }
    }
    return this.overlay.fgetattr(this.fileOf(node, fh, 'getattr'));
  }

  /** `fh` if it is open on the node, else any file open on it; ENOENT where none is. */
  private fileOf(node: Node, fh: number | undefined, op: string): number {
    const id = fh !== undefined && this.opened.get(fh) === node ? fh : node.anyFile();
    if (id === undefined) throw new FsError(E.ENOENT, op, `node ${node.id}`);
    return id;
  }

  /**
   * chown, chmod, truncate and utimens, in that order (the kernel's notify_change order as
   * FUSE sends them in one request); returns the attributes after. `fh`: the file the change
   * came through (ftruncate, fchmod ...), which also serves a node with no name left.
   */
  setattr(node: Node, c: AttrChanges, fh?: number): Attr {
    const ov = this.overlay;
    const path = this.table.pathOf(node);
    const known = fh !== undefined && this.opened.get(fh) === node ? fh : undefined;
    const h = path === undefined ? this.fileOf(node, known, 'setattr') : undefined;
    if (c.uid !== undefined || c.gid !== undefined) {
      const uid = c.uid ?? -1;
      const gid = c.gid ?? -1;
      if (h !== undefined) ov.fchown(h, uid, gid);
      else ov.chown(path as string, uid, gid);
    }
    if (c.mode !== undefined) {
      if (h !== undefined) ov.fchmod(h, c.mode);
      else ov.chmod(path as string, c.mode);
    }
    if (c.size !== undefined) {
      const by = known ?? h;
      if (by !== undefined) ov.ftruncate(by, c.size);
      else ov.truncate(path as string, c.size);
    }
    if (c.atime !== undefined || c.mtime !== undefined) {
      const omit: Timespec = { sec: 0, nsec: C.UTIME_OMIT };
      const atime = c.atime ?? omit;
      const mtime = c.mtime ?? omit;
      if (h !== undefined) ov.futimens(h, atime, mtime);
      else ov.utimens(path as string, atime, mtime);
    }
    return this.getattr(node, fh);
  }

  /** Copies the node's object up (and its parents), waiting for a copy in flight. */
  copyUp(node: Node, signal?: AbortSignal): Promise<void> {
    return this.overlay.copyUp(this.pathOf(node), signal);
  }

  readlink(node: Node): string {
    return this.overlay.readlink(this.pathOf(node));
  }

  /** Opens the node's object; the handle keeps the node alive until release. */
  open(node: Node, flags: number): number {
    const fh = this.overlay.open(this.pathOf(node), flags);
    this.opened.set(fh, node);
    node.addFile(fh);
    return fh;
  }

  /** Creates parent/name and opens it: its node holds the handle (no lookup counted). */
  create(parent: Node, name: string, mode: number, flags: number, caller: Caller): Named & { fh: number } {
    const fh = this.overlay.create(this.childPath(parent, name), mode, flags, caller);
    let attr: Attr;
    try {
      attr = this.overlay.createdAttr(fh);
    } catch (err) {
      this.overlay.release(fh);
      throw err;
    }
    const node = this.table.entry(parent, name, attr);
    this.opened.set(fh, node);
    node.addFile(fh);
    return { node, attr, fh };
  }

  /** The node a handle is open on. */
  nodeOfFile(fh: number): Node | undefined {
    return this.opened.get(fh);
  }

  /** Closes a handle; a node left with no name, file nor lookup is dropped. */
  release(fh: number): void {
    const node = this.opened.get(fh);
    this.opened.delete(fh);
    node?.dropFile(fh);
    try {
      this.overlay.release(fh);
    } finally {
      if (node) this.table.maybeDrop(node);
    }
  }

  mkdir(parent: Node, name: string, mode: number, caller: Caller): Named {
    const path = this.childPath(parent, name);
    this.overlay.mkdir(path, mode, caller);
    return this.named(parent, name, this.overlay.lookupAt(parent, name));
  }

  mknod(parent: Node, name: string, mode: number, major: number, minor: number, caller: Caller): Named {
    const path = this.childPath(parent, name);
    this.overlay.mknod(path, mode, major, minor, caller);
    return this.named(parent, name, this.overlay.lookupAt(parent, name));
  }

  symlink(parent: Node, name: string, target: string, caller: Caller): Named {
    const path = this.childPath(parent, name);
    this.overlay.symlink(target, path, caller);
    return this.named(parent, name, this.overlay.lookupAt(parent, name));
  }

  /**
   * A new name for `src`'s object. A lower source is copied up to be linked; its node follows
   * it to the upper object, so the new name is the same node. Where it cannot follow (it has
   * other names), `stale` is a name of it whose entry the client must look up again.
   */
  link(src: Node, parent: Node, name: string, caller: Caller): Named & { stale?: { parent: Node; name: string } } {
    const srcPath = this.pathOf(src);
    const path = this.childPath(parent, name);
    this.overlay.link(srcPath, path, caller);
    try { this.table.refresh(src, this.overlay.getattr(srcPath)); } catch { /* gone meanwhile */ }
    const made = this.named(parent, name, this.overlay.getattr(path));
    if (made.node !== src && src.parent) return { ...made, stale: { parent: src.parent, name: src.name } };
    return made;
  }

  unlink(parent: Node, name: string): void {
    this.overlay.unlink(this.childPath(parent, name));
  }

  rmdir(parent: Node, name: string): void {
    this.overlay.rmdir(this.childPath(parent, name));
  }

  rename(parent: Node, name: string, newParent: Node, newName: string, flags: number): void {
    this.overlay.rename(this.childPath(parent, name), this.childPath(newParent, newName), flags);
  }

  /** A directory's listing: with d_ino, or names only where the caller asks attributes anyway. */
  list(dir: Node, withIno: boolean): Listing {
    const path = this.pathOf(dir);
    const listedAt = this.overlay.generation;
    return { entries: withIno ? this.overlay.readdir(path) : this.overlay.readdirNames(path), listedAt };
  }

  /** Attributes of an entry of `l`, a listing of `dir` (see Overlay.getattrListed). */
  listedAttr(dir: Node, l: Listing, e: DirEntry): Attr {
    return this.overlay.getattrListed(this.pathOf(dir), e, l.listedAt);
  }

  /** d_ino of an entry of `l`, a listing of `dir`. */
  listedIno(dir: Node, l: Listing, e: DirEntry): bigint {
    return this.overlay.listedIno(this.pathOf(dir), e, l.listedAt);
  }

  /** The upper directory to fsync (see Overlay.dirToSync); none for a directory with no name left. */
  dirToSync(dir: Node): number | undefined {
    const path = this.table.pathOf(dir);
    return path === undefined ? undefined : this.overlay.dirToSync(path);
  }

  setxattr(node: Node, name: string, value: Buffer, flags: number): void {
    this.overlay.setxattr(this.pathOf(node), name, value, flags);
  }

  getxattr(node: Node, name: string): Buffer {
    return this.overlay.getxattr(this.pathOf(node), name);
  }

  listxattr(node: Node, privileged: boolean): string[] {
    return this.overlay.listxattr(this.pathOf(node), privileged);
  }

  removexattr(node: Node, name: string): void {
    this.overlay.removexattr(this.pathOf(node), name);
  }

  access(node: Node, mode: number): void {
    this.overlay.access(this.pathOf(node), mode);
  }

  /** The client dropped `n` of its lookups of node `id`. */
  forget(id: number, n: number): void {
    const node = this.table.get(id);
    if (node) this.table.forget(node, n);
  }

  /** Lets go of every handle still open (the client is gone). */
  releaseAll(): void {
    for (const fh of [...this.opened.keys()]) {
      try { this.release(fh); } catch { /* already gone */ }
    }
  }

  /** fsync of a directory's upper directory, on this thread; nothing for one with no name left. */
  fsyncdir(dir: Node, datasync: boolean): void {
    const path = this.table.pathOf(dir);
    if (path !== undefined) this.overlay.fsyncdir(path, datasync);
  }
}
