// The union-resolution core: merged paths in, host syscalls out, errno codes on failure.
// It knows nothing of FUSE; a transport calls these methods and maps FsError to its replies.
import fs from 'node:fs';
import { C, sys } from '../host/native';
import { isDir, isLnk, lstatAt, type Stat, type Timespec } from '../host/stat';
import type { Caller, CoreEvents, OverlayConfig } from './config';
import { E, FsError, check, fail } from './errors';
import { InodeNumbers } from './inode';
import { LayerStack } from './layers';
import type { DirNode } from './dircache';
import { Resolver, joinPath, splitPath, type Resolved } from './lookup';
import type { Node, NodeTable } from './nodes';
import { redirectModeOf } from './redirect';
import { listMerged, type DirEntry } from './readdir';
import { OverlayXattrs } from './xattrs';
import { FileHandle, HandleTable } from './handles';
import { UpperWriter, type UpperStats } from './upper';
import { whenCopiedUp } from './copyup';
import * as create from './create';
import * as remove from './remove';
import { rename } from './rename';
import * as setattr from './setattr';
import { ACL_XATTRS, idMapOf, type IdMap } from './idmap';

/** Attributes of a merged object as the caller sees them. */
export interface Attr extends Stat {
  /** The inode number reported through the mount (see InodeNumbers). */
  ino: bigint;
  /**
   * The real object behind it, for transports that tell objects apart (src/fuse-kernel): its
   * host inode number (dev is the host's), and whether it lies in the upper layer.
   */
  realIno?: bigint;
  inUpper?: boolean;
}

/**
 * An Attr spelled out field by field: a spread of the Stat would give every attribute a
 * dictionary-mode object built through V8's slow path (measurable on each getattr).
 */
function attrFrom(st: Stat, ino: bigint, inUpper: boolean, ids: IdMap | undefined): Attr {
  return {
    dev: st.dev, ino, mode: st.mode, nlink: st.nlink,
    uid: ids ? ids.uidShown(st.uid) : st.uid, gid: ids ? ids.gidShown(st.gid) : st.gid,
    rdevMajor: st.rdevMajor, rdevMinor: st.rdevMinor, size: st.size, blksize: st.blksize, blocks: st.blocks,
    atime: st.atime, mtime: st.mtime, ctime: st.ctime, realIno: st.ino, inUpper,
  };
}

export interface StatFs {
  bsize: number; frsize: number; blocks: number; bfree: number; bavail: number;
  files: number; ffree: number; namemax: number;
}

export interface MergedDirEntry extends DirEntry {
  ino: bigint;
}

const silentEvents: CoreEvents = { warn: () => undefined, error: () => undefined };

export class Overlay {
  readonly stack: LayerStack;
  readonly resolver: Resolver;
  readonly inodes: InodeNumbers;

  readonly handles = new HandleTable();
  private readonly writer: UpperWriter | undefined;
  private changes = 0;
  /** The kernel's mapping of xattr names (private and escaped overlay.* names). */
  private readonly xattrs: OverlayXattrs;
  /** The one place ownership is translated (attrs out; callers and chown in). */
  private readonly ids: IdMap | undefined;
  /**
   * Told the merged path of every object copied up, directories included: a copy-up changes
   * what the object's attributes show (ctime, blocks, a merged directory's nlink), which a
   * transport caching them must hear of.
   */
  onCopyUp: ((path: string) => void) | undefined;

  constructor(readonly config: OverlayConfig, private readonly events: CoreEvents = silentEvents, stack?: LayerStack) {
    this.stack = stack ?? LayerStack.open(config);
    try {
      this.resolver = new Resolver(this.stack, undefined, { mode: redirectModeOf(config.redirectDir, config.userxattr), xattr: OverlayXattrs.of(config.userxattr).redirect });
      this.inodes = new InodeNumbers(this.stack, config.userxattr, config.uuid);
      this.xattrs = OverlayXattrs.of(config.userxattr);
      this.ids = idMapOf(config.idmap);
      this.handles.onFull = (share, path) => events.warn('open files at this mount\'s share of the process\'s fds: further opens get EMFILE until some are closed', { path, share });
      this.writer = this.stack.upper && !config.readonly ? new UpperWriter(this.stack, this.resolver, config, { ...events, copiedUp: (p) => this.onCopyUp?.(p) }) : undefined;
    } catch (err) {
      this.stack.close();
      throw err;
    }
  }

  get readonly(): boolean {
    return this.writer === undefined;
  }

  /**
   * Whether fsync reaches the layers: not on a volatile mount, whose fsync and syncfs succeed
   * doing nothing, as kernel overlayfs's do (ovl_should_sync), and where nothing can change.
   */
  get syncs(): boolean {
    return this.writer !== undefined && !this.config.volatile;
  }

  /**
   * Whether long work runs in worker threads: copy-ups of file data, and clearing removed
   * directories from the work directory. Then a call that needs a copy-up (open for writing,
   * chmod, link ... of a lower file), or would remove or move an object being copied up, throws
   * CopyUpPending: its caller waits (`wait()`) and calls again. For transports, which can answer
   * a request later; otherwise all is done within the call.
   */
  set backgroundWork(on: boolean) {
    if (this.writer) this.writer.background = on;
  }

  /** Copies the object at `path` up (and its parents), waiting for a copy in flight. */
  copyUp(path: string, signal?: AbortSignal): Promise<void> {
    return whenCopiedUp(() => { this.w('copy-up', path).upper.copyUp(this.resolver.get(path)); }, signal);
  }

  /** Counters for status reports. */
  get upperStats(): UpperStats | undefined {
    return this.writer?.stats;
  }

  close(): void {
    this.handles.closeAll();
    this.handles.share?.leave();
    this.resolver.cache.close();
    this.writer?.close();
    this.stack.close();
  }

  /**
   * The write context, or EROFS on a read-only mount. `moving`: names the call removes or
   * moves, which must wait for a copy-up in flight at or below them (CopyUpPending).
   */
  private w(op: string, path: string, moving?: string[]): create.WriteContext {
    if (!this.writer) fail(E.EROFS, op, path);
    if (moving) this.writer.settle(moving);
    this.changes++;
    return { resolver: this.resolver, upper: this.writer };
  }

  /**
   * Counts the calls that may change the layers (every one goes through the writer): a listing
   * taken at one count still tells, at the same count, which layer each name comes from.
   */
  get generation(): number {
    return this.changes;
  }

  /** "The attributes are those of the upper object if it exists, else of the lower." */
  attrOf(r: Pick<Resolved, 'entries' | 'parent'>): Attr {
    const top = r.entries[0];
    const st = top.stat;
    const ino = top.layer === this.stack.upper ? this.inodes.ofUpper(top.parentFd, top.name, st, r.parent?.dirs) : this.inodes.of(st.dev, st.ino);
    const attr = attrFrom(st, ino, top.layer === this.stack.upper, this.ids);
    // As the kernel: counting subdirectories of a merged directory is not worth it; nlink=1
    // tells find(1) and friends not to rely on it.
    if (isDir(st.mode) && r.entries.length > 1) attr.nlink = 1;
    return attr;
  }

  getattr(path: string): Attr {
    const cached = this.resolver.cache.getPath(path);
    if (cached?.ino !== undefined) return this.stackAttr(cached);
    const r = this.resolver.get(path);
    return this.noteIno(cached, this.attrOf(r), r);
  }

  /** getattr of parent/name, by the parent's node of the one tree (no path walked). */
  lookupAt(parent: Node, name: string): Attr {
    const child = parent.children?.get(name);
    const cached = child?.dir ? this.resolver.cache.get(child) : undefined;
    if (cached?.ino !== undefined) return this.stackAttr(cached);
    const r = this.resolver.lookup(this.resolver.dirOf(parent), name);
    if (!r) fail(E.ENOENT, 'lookup', name);
    return this.noteIno(cached, this.attrOf(r), r);
  }

  /** A cached directory's attributes: one fstat of its top directory, its number known. */
  private stackAttr(node: DirNode): Attr {
    const top = node.top;
    const attr = attrFrom(check(lstatAt(top.fd, ''), 'stat', node.path), node.ino as bigint, top.layer === this.stack.upper, this.ids);
    if (node.merged) attr.nlink = 1;
    return attr;
  }

  /** Keeps a cached directory's number, once computed, while its top layer stays. */
  private noteIno(cached: DirNode | undefined, attr: Attr, r: Pick<Resolved, 'entries'>): Attr {
    if (cached && cached.top.layer === r.entries[0].layer) cached.ino = attr.ino;
    return attr;
  }

  /**
   * getattr of parent/name for a caller that already reported `ino` for the upper non-directory
   * `key` (host dev:ino). While the name still shows that object, the number stands: an upper
   * object's origin is written before it is linked in and never changes, so it is not read
   * again (the origin cache is keyed by ctime, which every setattr and write moves: one
   * getxattr per GETATTR or SETATTR of an upper file, three per file of a tar x). `ino` must
   * be what was reported for the object at `path` when the caller last looked it up: a host
   * inode number freed by an unlink may come back at once for a new file (ext4), so the key
   * alone cannot tell an old object's number from the new one's.
   */
  getattrOfUpper(parent: Node, name: string, key: string, ino: bigint): Attr {
    const r = this.resolver.lookup(this.resolver.dirOf(parent), name);
    if (!r) fail(E.ENOENT, 'lookup', name);
    const top = r.entries[0];
    const st = top.stat;
    if (top.layer !== this.stack.upper || isDir(st.mode) || `${st.dev}:${st.ino}` !== key) return this.attrOf(r);
    return attrFrom(st, ino, true, this.ids);
  }

  /**
   * getattr of an entry of the listing of `dir` made at generation `listedAt`. While nothing
   * changed since, the layers above the entry's own are known to hold neither the name nor a
   * whiteout of it, so the lookup starts at the entry's layer.
   */
  getattrListed(dir: string, e: DirEntry, listedAt: number): Attr {
    const path = joinPath(dir, e.name);
    if (listedAt !== this.changes || e.layer === 0) return this.getattr(path);
    const r = this.resolver.lookup(this.resolver.dir(dir), e.name, e.layer);
    if (!r) fail(E.ENOENT, 'lookup', path);
    return this.attrOf(r);
  }

  /**
   * The listing with d_ino. An entry whose object is gone by the time its number is asked
   * is left out, as ovl_cache_update marks it stale; any other failure fails the listing:
   * never d_ino 0, which readdir(3) callers take for a deleted entry.
   */
  readdir(path: string): MergedDirEntry[] {
    const node = this.resolver.dir(path);
    const out: MergedDirEntry[] = [];
    for (const e of listMerged(node) as MergedDirEntry[]) {
      try {
        e.ino = this.entryIno(node, e);
      } catch (err) {
        if (err instanceof FsError && err.errno === E.ENOENT) continue;
        this.events.warn('readdir: no inode number for a listed entry', { path: joinPath(path, e.name), err: String(err) });
        throw err;
      }
      out.push(e);
    }
    return out;
  }

  /** Names only, without inode numbers: what a transport needs when it fills d_ino itself. */
  readdirNames(path: string): DirEntry[] {
    return listMerged(this.resolver.dir(path));
  }

  /** d_ino of an entry of the listing of `dir` made at generation `listedAt` (see getattrListed). */
  listedIno(dir: string, e: DirEntry, listedAt: number): bigint {
    if (listedAt !== this.changes) return this.getattr(joinPath(dir, e.name)).ino;
    return this.entryIno(this.resolver.dir(dir), e);
  }

  /**
   * d_ino as the kernel's overlay gives it (ovl_calc_d_ino): "if this is lower, then native
   * d_ino will do", mapped into the layer's inode-number space as stat maps st_ino; an upper
   * entry may have been copied up, and then shows its origin's number.
   */
  private entryIno(node: DirNode, e: DirEntry): bigint {
    const d = node.dirs[e.layer];
    if (d.layer !== this.stack.upper) return this.inodes.of(d.layer.dev, e.dino);
    const st = check(lstatAt(d.fd, e.name), 'lstat', joinPath(node.path, e.name));
    return this.inodes.ofUpper(d.fd, e.name, st, node.dirs);
  }

  readlink(path: string): string {
    const top = this.resolver.get(path).entries[0];
    if (!isLnk(top.stat.mode)) fail(E.EINVAL, 'readlink', path);
    return check(sys.readlinkat(top.parentFd, top.name), 'readlink', path);
  }

  /**
   * Opens a merged file; returns a handle number. Readers get the winning object where it
   * lies; writers (or O_TRUNC) get the upper copy, copied up first.
   */
  open(path: string, flags: number): number {
    this.handles.room(path);
    const writing = (flags & 3) !== C.O_RDONLY || (flags & C.O_TRUNC) !== 0;
    if (writing) return this.handles.add(new FileHandle(setattr.openWrite(this.w('open', path), path, flags), path, true));
    const r = this.resolver.get(path);
    const top = r.entries[0];
    if (isDir(top.stat.mode)) fail(E.EISDIR, 'open', path);
    const keep = flags & (C.O_NONBLOCK | fs.constants.O_NOATIME);
    const h = new FileHandle(check(sys.openat(top.parentFd, top.name, C.O_RDONLY | C.O_NOFOLLOW | keep, 0), 'open', path), path, false);
    h.inUpper = top.layer === this.stack.upper;
    h.realKey = `${top.stat.dev}:${top.stat.ino}`;
    if (this.writer && !h.inUpper) h.below = { copyUps: this.writer.stats.copyUps };
    return this.handles.add(h);
  }

  /** A mount-side owner (a chown's) as stored on disk. */
  private storedOwner(uid: number, gid: number): [number, number] {
    const ids = this.ids;
    return ids ? [ids.uidStored(uid), ids.gidStored(gid)] : [uid, gid];
  }

  /** A mount-side caller as the owner stored on disk. */
  private stored(caller: Caller): Caller {
    if (!this.ids) return caller;
    const [uid, gid] = this.storedOwner(caller.uid, caller.gid);
    return { ...caller, uid, gid };
  }

  /** Creates a regular file and opens it; returns a handle number. */
  create(path: string, mode: number, flags: number, caller: Caller): number {
    this.handles.room(path);
    const fd = create.createFile(this.w('create', path), path, mode, flags, this.stored(caller));
    return this.handles.add(new FileHandle(fd, path, true));
  }

  handle(id: number): FileHandle {
    const h = this.handles.get(id);
    if (!h) fail(E.EBADF, 'handle', String(id));
    return h;
  }

  /**
   * chmod, chown and utimens of an open file with no name left (unlinked while open, or renamed
   * over), through its handle: the kernel's overlay reaches such an inode the same way.
   */
  fchmod(id: number, mode: number): void {
    const h = this.nameless(id, 'chmod');
    check(sys.fchmodat(h.fd, '', mode), 'chmod', h.path);
  }

  fchown(id: number, uid: number, gid: number): void {
    const h = this.nameless(id, 'chown');
    const [su, sg] = this.storedOwner(uid, gid);
    check(sys.fchownat(h.fd, '', su, sg), 'chown', h.path);
  }

  futimens(id: number, atime: Timespec, mtime: Timespec): void {
    const h = this.nameless(id, 'utimens');
    check(sys.utimensat(h.fd, '', atime.sec, atime.nsec, mtime.sec, mtime.nsec), 'utimens', h.path);
  }

  /** The handle of an unnamed open file; only an upper one may change (a lower one is ENOENT, as before). */
  private nameless(id: number, op: string): FileHandle {
    const h = this.handle(id);
    if (!h.inUpper) fail(E.ENOENT, op, h.path);
    return h;
  }

  release(id: number): void {
    if (!this.handles.release(id)) fail(E.EBADF, 'release', String(id));
  }

  /**
   * A read-only handle opened on a lower file follows the file once it is copied up, as the
   * kernel's stacked file does (ovl_real_fdget reopens the upper file): readers then see what
   * writers wrote through other handles. Matched by the copy's origin.
   */
  private followCopyUp(h: FileHandle): void {
    const below = h.below;
    if (!below || !this.writer || below.copyUps === this.writer.stats.copyUps) return;
    const copyUps = this.writer.stats.copyUps;
    let r: Resolved | undefined;
    try {
      r = this.resolver.resolve(h.path);
    } catch (err) {
      // A parent renamed or removed: the path names nothing, so the reader keeps what it opened.
      // Any other failure (EIO, EMFILE) is the caller's answer, and the question stays open.
      if (!(err instanceof FsError) || (err.errno !== E.ENOENT && err.errno !== E.ENOTDIR)) throw err;
    }
    // The same file, copied up, is the one whose origin is the lower file this reader opened
    // (not the same st_ino: the copy of a lower hard link has a number of its own).
    const top = r?.entries[0];
    const o = r && top && top.layer === this.stack.upper ? this.inodes.origin(top.parentFd, top.name, top.stat, r.parent?.dirs) : undefined;
    if (!r || !top || !o || `${o.layer.dev}:${o.ino}` !== h.realKey) {
      below.copyUps = copyUps;
      return;
    }
    const fd = check(sys.openat(top.parentFd, top.name, C.O_RDONLY | C.O_NOFOLLOW, 0), 'open', h.path);
    below.copyUps = copyUps;
    // A read on the old fd may still be in flight on the thread pool: close it with the handle.
    h.retired.push(h.fd);
    h.fd = fd;
    h.inUpper = true;
    h.below = undefined;
  }

  /** The fd a handle reads from now (after following a copy-up), for a transport's own reads, seeks and copies. */
  readFd(id: number): number {
    const h = this.handle(id);
    this.followCopyUp(h);
    return h.fd;
  }

  read(id: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const h = this.handle(id);
    this.followCopyUp(h);
    return new Promise((resolve, reject) => {
      fs.read(h.fd, buf, 0, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
    });
  }

  write(id: number, buf: Buffer, len: number, pos: number): Promise<number> {
    const h = this.handle(id);
    if (!h.writable) fail(E.EBADF, 'write', h.path);
    return new Promise((resolve, reject) => {
      fs.write(h.fd, buf, 0, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
    });
  }

  /**
   * read and write on the calling thread. For a transport whose requests already wait on this
   * thread (fuse-native), a thread-pool hop only adds two thread wake-ups to every call.
   */
  readSync(id: number, buf: Buffer, len: number, pos: number): number {
    const h = this.handle(id);
    this.followCopyUp(h);
    return fs.readSync(h.fd, buf, 0, len, pos);
  }

  writeSync(id: number, buf: Buffer, len: number, pos: number): number {
    const h = this.handle(id);
    if (!h.writable) fail(E.EBADF, 'write', h.path);
    return fs.writeSync(h.fd, buf, 0, len, pos);
  }

  fsync(id: number, datasync: boolean): void {
    const fd = this.handle(id).fd;
    if (this.syncs) check(sys.fsync(fd, datasync ? 1 : 0), 'fsync');
  }

  /**
   * The upper directory behind a merged one, opened to be synced as ovl_dir_fsync syncs it, or
   * undefined where there is nothing to sync: a directory still only below (nothing inside it
   * changed), a read-only or volatile mount. Looked up now, not at opendir: a change inside
   * (a rename, an unlink's whiteout) may have copied the directory up since, and what such a
   * change wrote lies in that upper directory.
   */
  dirToSync(path: string): number | undefined {
    if (!this.syncs) return undefined;
    const top = this.resolver.get(path).entries[0];
    if (top.layer !== this.stack.upper) return undefined;
    return check(sys.openat(top.parentFd, top.name, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW, 0), 'fsyncdir', path);
  }

  fsyncdir(path: string, datasync: boolean): void {
    const fd = this.dirToSync(path);
    if (fd === undefined) return;
    try {
      check(sys.fsync(fd, datasync ? 1 : 0), 'fsyncdir', path);
    } finally {
      sys.close(fd);
    }
  }

  ftruncate(id: number, size: number): void {
    const h = this.handle(id);
    if (!h.writable) { this.truncate(h.path, size); return; }
    check(sys.ftruncate(h.fd, size), 'ftruncate', h.path);
  }

  fallocate(id: number, mode: number, offset: number, length: number): void {
    check(sys.fallocate(this.handle(id).fd, mode, offset, length), 'fallocate', this.handle(id).path);
  }

  /** Attributes through an open handle: right even after the name is gone. */
  fgetattr(id: number): Attr {
    const h = this.handle(id);
    this.followCopyUp(h);
    return this.attrOfFd(h.fd, h.inUpper);
  }

  /**
   * fgetattr of a file create() just made: made in upper with O_EXCL, it has no copy-up origin
   * to read, so its number is its own (one getxattr less per create).
   */
  createdAttr(id: number): Attr {
    const st = check(lstatAt(this.handle(id).fd, ''), 'fstat');
    return attrFrom(st, this.inodes.of(st.dev, st.ino), true, this.ids);
  }

  mkdir(path: string, mode: number, caller: Caller): void {
    create.mkdir(this.w('mkdir', path), path, mode, this.stored(caller));
  }

  mknod(path: string, mode: number, major: number, minor: number, caller: Caller): void {
    create.mknod(this.w('mknod', path), path, mode, major, minor, this.stored(caller));
  }

  symlink(target: string, path: string, caller: Caller): void {
    create.symlink(this.w('symlink', path), target, path, this.stored(caller));
  }

  link(existing: string, path: string, caller: Caller): void {
    create.link(this.w('link', path), existing, path, caller);
  }

  unlink(path: string): void {
    remove.unlink(this.w('unlink', path, [path]), path);
    this.dropName(path);
  }

  /** The tree's node for a name just removed no longer stands for it. */
  private dropName(path: string): void {
    const [dir, name] = splitPath(path);
    const parent = this.resolver.tree.find(dir);
    if (parent) this.resolver.tree.unlinkName(parent, name);
  }

  /** Attributes of an object through an fd, whatever its name now. */
  private attrOfFd(fd: number, inUpper: boolean): Attr {
    const st = check(lstatAt(fd, ''), 'fstat');
    return attrFrom(st, inUpper ? this.inodes.ofUpper(fd, '', st) : this.inodes.of(st.dev, st.ino), inUpper, this.ids);
  }

  rmdir(path: string): void {
    remove.rmdir(this.w('rmdir', path, [path]), path);
    this.dropName(path);
  }

  rename(from: string, to: string, flags = 0): void {
    rename(this.w('rename', from, [from, to]), from, to, flags);
    // The tree follows: the node moves with its name (or the two swap).
    const tree = this.resolver.tree;
    const [fromDir, fromName] = splitPath(from);
    const [toDir, toName] = splitPath(to);
    const p = tree.find(fromDir);
    const np = tree.find(toDir);
    if (p && np) tree.rename(p, fromName, np, toName, (flags & C.RENAME_EXCHANGE) !== 0);
    else {
      if (p) tree.unlinkName(p, fromName);
      if (np) tree.unlinkName(np, toName);
    }
  }

  /** The one tree of merged objects (nodes.ts), which the path calls above keep in step. */
  get tree(): NodeTable {
    return this.resolver.tree;
  }

  chmod(path: string, mode: number): void {
    setattr.chmod(this.w('chmod', path), path, mode);
  }

  chown(path: string, uid: number, gid: number): void {
    const [su, sg] = this.storedOwner(uid, gid);
    setattr.chown(this.w('chown', path), path, su, sg);
  }

  utimens(path: string, atime: Timespec, mtime: Timespec): void {
    setattr.utimens(this.w('utimens', path), path, atime, mtime);
  }

  truncate(path: string, size: number): void {
    setattr.truncate(this.w('truncate', path), path, size);
  }

  setxattr(path: string, name: string, value: Buffer, flags: number): void {
    const stored = this.ids && ACL_XATTRS.has(name) ? this.ids.acl(value, false) : value;
    setattr.setxattr(this.w('setxattr', path), path, this.xattrs.toDisk(name), stored, flags);
  }

  removexattr(path: string, name: string): void {
    setattr.removexattr(this.w('removexattr', path), path, this.xattrs.toDisk(name));
  }

  statfs(): StatFs {
    const o = new Float64Array(10);
    check(sys.fstatfs(this.stack.statfsLayer.fd, o), 'statfs', this.stack.statfsLayer.root);
    return { bsize: o[0], frsize: o[1], blocks: o[2], bfree: o[3], bavail: o[4], files: o[5], ffree: o[6], namemax: o[7] };
  }

  /** The overlay's own xattrs read as absent (ENODATA); escaped ones under the caller's name. */
  getxattr(path: string, name: string): Buffer {
    const top = this.resolver.get(path).entries[0];
    const value = check(sys.getxattr(top.parentFd, top.name, this.xattrs.toDisk(name)), 'getxattr', path);
    return this.ids && ACL_XATTRS.has(name) ? this.ids.acl(value, true) : value;
  }

  /**
   * The names of the object's xattrs but the overlay's own; `trusted.*` ones only to a caller
   * with CAP_SYS_ADMIN, as the kernel lists them (ovl_can_list). Reading or writing one is
   * refused by the VFS before any filesystem sees the call; listing is left to the filesystem.
   */
  listxattr(path: string, privileged = true): string[] {
    const top = this.resolver.get(path).entries[0];
    const out: string[] = [];
    for (const n of check(sys.listxattr(top.parentFd, top.name), 'listxattr', path)) {
      const shown = this.xattrs.fromDisk(n);
      if (shown !== undefined && (privileged || !shown.startsWith('trusted.'))) out.push(shown);
    }
    return out;
  }

  /** access(2) beyond what default_permissions already checks: existence and read-only layers. */
  access(path: string, mode: number): void {
    this.resolver.get(path);
    if (mode & 2 /* W_OK */ && this.readonly) fail(E.EROFS, 'access', path);
  }
}
