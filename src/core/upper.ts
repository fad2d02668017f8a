// Writing to the upper layer: what the union operations (create, remove, rename, setattr) ask of
// it. The rules live beside it: copy-up in copyup.ts (its order written down there), whiteouts
// and opaque marks in marks.ts, the work directory in workdir.ts, "is it still there below" in
// presence.ts. All changes are made fd-relative, and anything that must appear whole is built in
// the work directory and renamed into place, as ovl_copy_up and ovl_create_over_whiteout do.
import { sys } from '../host/native';
import { isDir, isLnk, isReg, lstatAt } from '../host/stat';
import { DAEMON_CALLER, type Caller, type CoreEvents, type OverlayConfig } from './config';
import type { DirNode } from './dircache';
import { CopyUp, CopyUpPending } from './copyup';
import { E, FsError, check, fail } from './errors';
import type { Layer, LayerStack } from './layers';
import { openDirIn, splitPath, type Entry, type Resolved, type Resolver } from './lookup';
import { MarkWriter } from './marks';
import { initOverlayUuid } from './origin';
import { lowerPositive, probe } from './presence';
import { WorkDir } from './workdir';
import { OverlayXattrs } from './xattrs';

export interface UpperStats {
  copyUps: number;
  bytesCopiedUp: number;
  whiteouts: number;
}

export class UpperWriter {
  readonly upper: Layer;
  readonly stats: UpperStats = { copyUps: 0, bytesCopiedUp: 0, whiteouts: 0 };
  private readonly workdir: WorkDir;
  private readonly copies: CopyUp;
  private readonly marks: MarkWriter;

  constructor(
    stack: LayerStack,
    private readonly resolver: Resolver,
    config: OverlayConfig,
    events: CoreEvents,
  ) {
    if (!stack.upper || !stack.work) throw new FsError(E.EROFS, 'mount', 'no upper layer');
    this.upper = stack.upper;
    const xattrs = OverlayXattrs.of(config.userxattr);
    this.workdir = new WorkDir(stack.work.fd, events, config.volatile);
    this.copies = new CopyUp({ work: this.workdir, xattrs, uuid: config.uuid ?? 'null', durable: !config.volatile, counts: this.stats, events });
    this.marks = new MarkWriter(this.workdir, xattrs, this.stats, events);
    initOverlayUuid(this.upper.fd, config.userxattr, config.uuid ?? 'null', events.warn);
  }

  close(): void {
    this.copies.cancelAll();
    this.marks.close();
    this.workdir.close();
  }

  /**
   * Whether long work runs in worker threads: copying regular files' data (by jobs) and
   * clearing what removals left in the work directory. A transport that can answer later sets
   * it; otherwise all is done on this thread, within the call.
   */
  get background(): boolean {
    return this.workdir.background;
  }

  set background(on: boolean) {
    this.workdir.background = on;
  }

  isUpper(e: Entry): boolean {
    return e.layer === this.upper;
  }

  /** A name in the work directory no one else uses. */
  tempName(): string {
    return this.workdir.tempName();
  }

  /** O_PATH fd of workdir/work. */
  get work(): number {
    return this.workdir.fd;
  }

  /** Clears `tmp`, already moved into the work directory (see WorkDir.discard). */
  discard(tmp: string): void {
    this.workdir.discard(tmp);
  }

  /**
   * The merged directory at `path`, copied up first if it lives only below:
   * "parent directories are copied up first, each with its own attributes".
   * Returns its upper fd.
   */
  upperDir(path: string): number {
    const node = this.resolver.dir(path);
    if (node.top.layer === this.upper) return node.top.fd;
    if (path === '/') fail(E.EROFS, 'copy-up', path);
    const [parentPath, name] = splitPath(path);
    const parentFd = this.upperDir(parentPath);
    const st = check(lstatAt(node.top.fd, ''), 'stat', path);
    this.copies.now({ path, src: { layer: node.top.layer, dirFd: node.top.fd, name: '', stat: st }, parentFd, name, withData: false });
    // The same stack with the new upper directory on top, not a fresh lookup of every layer.
    const at = this.resolver.tree.find(path);
    if (at?.stack !== node) {
      // Evicted meanwhile (a small cache): resolve it again.
      this.resolver.cache.invalidateOne(path);
      return this.resolver.dir(path).top.fd;
    }
    const up = node.copiedUp({ layer: this.upper, fd: openDirIn(this.upper, parentFd, name) });
    this.resolver.cache.set(at, up);
    return up.top.fd;
  }

  /**
   * Makes the object at `r` exist in upper and returns its upper entry. `withData` false
   * skips copying file contents, for opens with O_TRUNC and truncate to zero. With `background`,
   * a regular file with data is copied by a job (see copyup.ts): CopyUpPending, ask again.
   */
  copyUp(r: Resolved, withData = true): Entry {
    const top = r.entries[0];
    if (this.isUpper(top)) return top;
    const job = this.copies.pending(r.path);
    if (job) throw new CopyUpPending(job, true);
    if (isDir(top.stat.mode)) {
      const fd = this.upperDir(r.path);
      return { layer: this.upper, parentFd: fd, name: '', stat: check(lstatAt(fd, ''), 'stat', r.path) };
    }
    const [parentPath, name] = splitPath(r.path);
    const parentFd = this.upperDir(parentPath);
    // Copying the parent up replaced its cached node and closed the fds `r` was resolved
    // through (and an fd number may already be reused): name the source afresh.
    const src = this.resolver.get(r.path).entries[0];
    const c = { path: r.path, src: { layer: src.layer, dirFd: src.parentFd, name: src.name, stat: src.stat }, parentFd, name, withData };
    if (this.background && withData && isReg(src.stat.mode) && src.stat.size > 0) {
      throw new CopyUpPending(this.copies.start(c), true);
    }
    this.copies.now(c);
    return { layer: this.upper, parentFd, name, stat: check(lstatAt(parentFd, name), 'stat', r.path) };
  }

  /** See CopyUp.settle. */
  settle(paths: string[]): void {
    this.copies.settle(paths);
  }

  /** Leaves a whiteout at `name` in the upper directory `parentFd` (see MarkWriter). */
  whiteout(parentFd: number, name: string): void {
    this.marks.whiteout(parentFd, name);
  }

  /** Whether the upper directory holds a whiteout (either form) for `name`. */
  hasWhiteout(parentFd: number, name: string): boolean {
    return probe(parentFd, name).kind === 'whiteout';
  }

  clearWhiteoutFile(parentFd: number, name: string): void {
    this.marks.clearWhiteoutFile(parentFd, name);
  }

  setOpaque(dirFd: number, name: string): void {
    this.marks.setOpaque(dirFd, name);
  }

  /**
   * Whether anything in the layers below upper still shows `name` in the merged directory
   * `parent` (the kernel's ovl_lower_positive): if so, removing it needs a whiteout.
   */
  lowerPositive(parent: DirNode, name: string): boolean {
    return lowerPositive(parent.dirs, this.upper, name);
  }

  /** Sets owner to the caller's when the daemon is someone else (files are born the daemon's). */
  ownByCaller(dirFd: number, name: string, caller: Caller, parentGid?: number): void {
    const gid = parentGid ?? caller.gid;
    // The daemon's own ids, read once (two syscalls per create otherwise): it never changes them.
    if (caller.uid === DAEMON_CALLER.uid && gid === DAEMON_CALLER.gid) return;
    const st = check(lstatAt(dirFd, name), 'stat', name);
    // Already so (a setgid directory handed its group down): a chown would only clear bits.
    if (st.uid === caller.uid && st.gid === gid) return;
    check(sys.fchownat(dirFd, name, caller.uid, gid), 'chown', name);
    // chown(2) clears setuid/setgid of a non-directory; the kernel creates the object with its
    // owner's credentials instead, so the bits the creator asked for stay: put them back.
    if (st.mode & 0o6000 && !isDir(st.mode) && !isLnk(st.mode)) check(sys.fchmodat(dirFd, name, st.mode & 0o7777), 'chmod', name);
  }
}
