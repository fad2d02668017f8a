// Writing to the upper layer: the kernel's rules for copy-up, whiteouts and opaque directories.
// All changes are made fd-relative, and anything that must appear whole is built in the
// work directory and renamed into place, as ovl_copy_up and ovl_create_over_whiteout do.
import { C, sys } from '../host/native';
import { S_IFCHR, S_IFMT, isDir, isLnk, isReg, lstatAt, type Stat } from '../host/stat';
import type { Caller, OverlayConfig } from './config';
import type { DirNode } from './dircache';
import { CopyUpJob, CopyUpPending, copyDataSync } from './copyup';
import { E, FsError, check, fail } from './errors';
import type { Layer, LayerStack } from './layers';
import { joinPath, splitPath, type Entry, type Resolved, type Resolver } from './lookup';
import { encodeOrigin, initOverlayUuid } from './origin';
import { lowerPositive, probe } from './presence';
import { WH_OPAQUE, WH_PREFIX } from './whiteout';
import { OverlayXattrs } from './xattrs';

/** Things the daemon hides from the caller but an operator must hear about. */
export interface CoreEvents {
  warn(msg: string, detail?: Record<string, unknown>): void;
  error(msg: string, detail?: Record<string, unknown>): void;
  /** An object now exists in upper, copied from below (its merged path). */
  copiedUp?(path: string): void;
}

export const WORK_SUBDIR = 'work';

export interface UpperStats {
  copyUps: number;
  bytesCopiedUp: number;
  whiteouts: number;
}

/**
 * The name of the work directory's shared whiteout (see UpperWriter.linkWhiteout): there while
 * the mount is, removed at unmount; a crash leaves it for the next mount to clear, as any
 * leftover of work/.
 */
export const SHARED_WHITEOUT = '#overlayd.whiteout';

export class UpperWriter {
  readonly upper: Layer;
  /** O_PATH fd of workdir/work, where objects are built before they appear in upper. */
  private readonly workFd: number;
  private tmpSeq = 0;
  private whiteoutFiles = false;
  readonly stats: UpperStats = { copyUps: 0, bytesCopiedUp: 0, whiteouts: 0 };
  private readonly xattrs: OverlayXattrs;
  /** Copy-ups in flight (deferred data), by merged path. */
  private readonly inflight = new Map<string, CopyUpJob>();
  /**
   * Whether long work runs in worker threads: copying regular files' data (by jobs) and
   * clearing what removals left in the work directory. A transport that can answer later sets
   * it; otherwise all is done on this thread, within the call.
   */
  background = false;
  /** The whiteout every whiteout links to (see linkWhiteout), once made. */
  private sharedWhiteout: typeof SHARED_WHITEOUT | undefined;

  constructor(
    stack: LayerStack,
    private readonly resolver: Resolver,
    private readonly config: OverlayConfig,
    private readonly events: CoreEvents,
  ) {
    if (!stack.upper || !stack.work) throw new FsError(E.EROFS, 'mount', 'no upper layer');
    this.upper = stack.upper;
    this.xattrs = OverlayXattrs.of(config.userxattr);
    this.workFd = prepareWorkDir(stack.work.fd, events, config.volatile);
    initOverlayUuid(this.upper.fd, config.userxattr, config.uuid ?? 'null', events.warn);
  }

  close(): void {
    this.cancelAll();
    // The kernel leaves its shared whiteout in work/ until the next mount; nothing is left here.
    if (this.sharedWhiteout !== undefined) sys.unlinkat(this.workFd, this.sharedWhiteout, 0);
    sys.close(this.workFd);
  }

  isUpper(e: Entry): boolean {
    return e.layer === this.upper;
  }

  /** A name in the work directory no one else uses. */
  tempName(): string {
    return `#overlayd.${process.pid}.${(this.tmpSeq++).toString(36)}`;
  }

  get work(): number {
    return this.workFd;
  }

  /**
   * The merged directory at `path`, copied up first if it lives only below:
   * "parent directories are copied up first, each with its own attributes".
   * Returns its upper fd.
   */
  upperDir(path: string): number {
    let node = this.resolver.dir(path);
    if (node.top.layer !== this.upper) {
      if (path !== '/') {
        const [parentPath, name] = splitPath(path);
        const parentFd = this.upperDir(parentPath);
        const st = check(lstatAt(node.top.fd, ''), 'stat', path);
        this.copyUpObject(node.top.layer, node.top.fd, '', st, parentFd, name, false);
        this.events.copiedUp?.(path);
      }
      this.resolver.cache.invalidateOne(path);
      node = this.resolver.dir(path);
    }
    return node.top.fd;
  }

  /**
   * Makes the object at `r` exist in upper and returns its upper entry. `withData` false
   * skips copying file contents, for opens with O_TRUNC and truncate to zero. With `background`,
   * a regular file with data is copied by a job (see copyup.ts): CopyUpPending, ask again.
   */
  copyUp(r: Resolved, withData = true): Entry {
    const top = r.entries[0];
    if (this.isUpper(top)) return top;
    const job = this.inflight.get(r.path);
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
    if (this.background && withData && isReg(src.stat.mode) && src.stat.size > 0) {
      throw new CopyUpPending(this.startJob(r.path, src, parentFd, name), true);
    }
    this.copyUpObject(src.layer, src.parentFd, src.name, src.stat, parentFd, name, withData);
    this.events.copiedUp?.(r.path);
    return { layer: this.upper, parentFd, name, stat: check(lstatAt(parentFd, name), 'stat', r.path) };
  }

  /**
   * Throws CopyUpPending while a copy-up is in flight at or below one of `paths`: removing or
   * moving them now would pull the object from under the copy.
   */
  settle(paths: string[]): void {
    if (this.inflight.size === 0) return;
    for (const job of this.inflight.values()) {
      for (const p of paths) if (job.path === p || job.path.startsWith(p === '/' ? p : p + '/')) throw new CopyUpPending(job, false);
    }
  }

  /** Stops every copy-up in flight at its next slice (the mount is going away). */
  cancelAll(): void {
    for (const job of this.inflight.values()) job.cancel();
  }

  /*
   * Copy-up, in the kernel's order (ovl_copy_up_workdir), on a temp in workdir/work:
   *  1. the object: a regular file (0600, O_EXCL), a directory (0700), a symlink, a device;
   *  2. a regular file's data, then its size, then fsync unless volatile (only where data
   *     was copied, as the kernel's ovl_copy_up_file); here or, deferred, in a job's slices;
   *  3. owner: chown after the xattrs would drop security.capability;
   *  4. xattrs but the overlay's own, then the origin;
   *  5. mode and times: chmod after chown keeps setuid/setgid, which chown clears;
   *  6. the rename into the upper parent (RENAME_NOREPLACE), whose times are kept.
   * A crash at any point leaves the lower object or the whole copy; a failure removes the temp.
   */

  /**
   * Builds a copy of (sFd, sName) in the work directory and renames it to `name` in
   * `parentFd` only once complete: a crash leaves the lower object or the whole copy.
   */
  private copyUpObject(srcLayer: Layer, sFd: number, sName: string, st: Stat, parentFd: number, name: string, withData: boolean): void {
    const tmp = this.tempName();
    try {
      if (isReg(st.mode)) {
        const out = check(sys.openat(this.workFd, tmp, C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o600), 'copy-up create', name);
        try {
          if (withData && st.size > 0) {
            const input = check(sys.openat(sFd, sName, C.O_RDONLY | C.O_NOFOLLOW, 0), 'copy-up open', name);
            try {
              this.stats.bytesCopiedUp += copyDataSync({ inFd: input, outFd: out, size: st.size, durable: !this.config.volatile });
            } finally {
              sys.close(input);
            }
          }
        } finally {
          sys.close(out);
        }
      } else if (isDir(st.mode)) {
        check(sys.mkdirat(this.workFd, tmp, 0o700), 'copy-up mkdir', name);
      } else if (isLnk(st.mode)) {
        const target = check(sys.readlinkat(sFd, sName), 'copy-up readlink', name);
        check(sys.symlinkat(target, this.workFd, tmp), 'copy-up symlink', name);
      } else {
        check(sys.mknodat(this.workFd, tmp, st.mode, st.rdevMajor, st.rdevMinor), 'copy-up mknod', name);
      }
      this.finishCopy(srcLayer, sFd, sName, st, tmp, parentFd, name);
    } catch (err) {
      removeTree(this.workFd, tmp);
      this.events.error('copy-up failed', { name, err: String(err) });
      throw err;
    }
  }

  /** Steps 3 to 6 for the temp `tmp`, a copy of (sFd, sName). */
  private finishCopy(srcLayer: Layer, sFd: number, sName: string, st: Stat, tmp: string, parentFd: number, name: string): void {
    copyOwner(st, this.workFd, tmp);
    copyXattrs(sFd, sName, this.workFd, tmp, this.xattrs);
    const origin = encodeOrigin(srcLayer, sFd, sName, this.config.uuid ?? 'null');
    if (origin) check(sys.setxattr(this.workFd, tmp, this.xattrs.origin, origin, 0), 'copy-up origin', name);
    copyModeTimes(st, this.workFd, tmp);
    // Linking the copy in is no change the caller made to the parent: keep its times, as the
    // kernel does (ovl_set_timestamps(upperdir, &c->pstat) after the link).
    const pst = check(lstatAt(parentFd, ''), 'copy-up stat parent', name);
    linkInto(this.workFd, tmp, parentFd, name, pst.mode, st.mode);
    check(sys.utimensat(parentFd, '', pst.atime.sec, pst.atime.nsec, pst.mtime.sec, pst.mtime.nsec), 'copy-up parent times', name);
    this.stats.copyUps++;
  }

  /**
   * Steps 1 and 2 start now; the data goes to worker threads and the rest follows on this
   * thread once it is in. The job holds fds of its own: the directory cache may close the
   * ones `src` and `parentFd` came from meanwhile.
   */
  private startJob(path: string, src: Entry, parentFd: number, name: string): CopyUpJob {
    const tmp = this.tempName();
    const fds: number[] = [];
    const own = (fd: number, what: string): number => {
      fds.push(check(fd, what, name));
      return fd;
    };
    const closeAll = (): void => { for (const fd of fds.splice(0)) sys.close(fd); };
    let outFd: number, inFd: number, parent: number;
    try {
      outFd = own(sys.openat(this.workFd, tmp, C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o600), 'copy-up create');
      inFd = own(sys.openat(src.parentFd, src.name, C.O_RDONLY | C.O_NOFOLLOW, 0), 'copy-up open');
      parent = own(sys.openat(parentFd, '', C.O_PATH | C.O_DIRECTORY, 0), 'copy-up open parent');
    } catch (err) {
      closeAll();
      removeTree(this.workFd, tmp);
      this.events.error('copy-up failed', { name, err: String(err) });
      throw err;
    }
    const st = src.stat;
    const job = new CopyUpJob(path, { inFd, outFd, size: st.size, durable: !this.config.volatile }, {
      finish: (copied) => {
        // The source through its open fd (name ''): xattrs and origin of the very file copied.
        this.finishCopy(src.layer, inFd, '', st, tmp, parent, name);
        this.stats.bytesCopiedUp += copied;
      },
      end: (err) => {
        this.inflight.delete(path);
        closeAll();
        if (err === undefined) {
          this.events.copiedUp?.(path);
          return;
        }
        try {
          this.discard(tmp);
        } catch {
          /* the mount is closing; the next one clears workdir/work */
        }
        const cancelled = err instanceof FsError && err.errno === E.EINTR;
        if (!cancelled) this.events.error('copy-up failed', { name, err: String(err) });
      },
    });
    this.inflight.set(path, job);
    return job;
  }

  /**
   * Leaves a whiteout at `name` in the upper directory `parentFd`, replacing what is there.
   * "A whiteout is created as a character device with 0/0 device number"; where the kernel
   * refuses mknod (rootless), an OCI `.wh.` file says the same.
   */
  whiteout(parentFd: number, name: string): void {
    try {
      this.makeWhiteout(parentFd, name);
      this.stats.whiteouts++;
    } catch (err) {
      // The caller sees only an errno; the operator needs to know a name could not be hidden.
      this.events.error('whiteout failed', { name, err: String(err) });
      throw err;
    }
  }

  private makeWhiteout(parentFd: number, name: string): void {
    if (!this.whiteoutFiles) {
      // Where upper holds nothing by that name (a lower name removed: the common case), one
      // link puts the whiteout in place; else a link in the work directory replaces what is
      // there in one rename, as the kernel does (ovl_cleanup_and_whiteout).
      const r = this.linkWhiteout(parentFd, name);
      if (r === 0) return;
      if (r !== -E.EEXIST && r !== -E.EPERM) fail(-r, 'whiteout', name);
      if (r === -E.EEXIST) {
        const tmp = this.tempName();
        check(this.linkWhiteout(this.workFd, tmp), 'whiteout', name);
        const m = sys.renameat2(this.workFd, tmp, parentFd, name, 0);
        if (m === 0) return;
        if (m !== -E.EISDIR) {
          sys.unlinkat(this.workFd, tmp, 0);
          fail(-m, 'whiteout', name);
        }
        // A directory is in the way: swap it out atomically, then remove it.
        check(sys.renameat2(this.workFd, tmp, parentFd, name, C.RENAME_EXCHANGE), 'whiteout', name);
        this.discard(tmp);
        return;
      }
      this.whiteoutFiles = true;
      this.events.warn('mknod of whiteouts is not permitted here; using .wh. files (OCI layout) from now on');
    }
    removeTree(parentFd, name);
    const fd = check(sys.openat(parentFd, WH_PREFIX + name, C.O_CREAT | C.O_WRONLY, 0), 'whiteout', name);
    sys.close(fd);
  }

  /**
   * Links the work directory's shared whiteout at `dirFd`/`name`: one 0/0 character device
   * that every whiteout of this mount is a hard link of, as the kernel's overlay shares one
   * (ofs->whiteout); a link costs a fraction of a new inode. 0 or -errno; -EPERM where mknod
   * of a whiteout is not permitted (rootless without the capability; a link never says EPERM
   * here: the shared whiteout is the daemon's own).
   */
  private linkWhiteout(dirFd: number, name: string): number {
    let r = 0;
    for (let fresh = 0; fresh < 2; fresh++) {
      if (this.sharedWhiteout === undefined) {
        const made = sys.mknodat(this.workFd, SHARED_WHITEOUT, S_IFCHR, 0, 0);
        if (made < 0) return made;
        this.sharedWhiteout = SHARED_WHITEOUT;
      }
      r = sys.linkat(this.workFd, this.sharedWhiteout, dirFd, name, 0);
      // The filesystem's link limit reached: start a new shared one, as the kernel does.
      if (r !== -E.EMLINK) return r;
      sys.unlinkat(this.workFd, this.sharedWhiteout, 0);
      this.sharedWhiteout = undefined;
    }
    return r;
  }

  /**
   * Removes `tmp` from the work directory, where it is already out of sight: with `background`,
   * in a worker thread (a directory of whiteouts may hold many thousands); otherwise now. A
   * background failure leaves only a leftover the next mount clears; the operator hears of it.
   */
  discard(tmp: string): void {
    if (!this.background) {
      removeTree(this.workFd, tmp);
      return;
    }
    const r = sys.removeTreeAsync(this.workFd, tmp, (res) => {
      if (res < 0) this.events.warn('clearing a removed object from workdir/work failed', { name: tmp, errno: -res });
    });
    if (r < 0) removeTree(this.workFd, tmp);
  }

  /** Whether the upper directory holds a whiteout (either form) for `name`. */
  hasWhiteout(parentFd: number, name: string): boolean {
    return probe(parentFd, name).kind === 'whiteout';
  }

  /** Drops an upper whiteout for `name` (the `.wh.` form; the device form is renamed over). */
  clearWhiteoutFile(parentFd: number, name: string): void {
    const r = sys.unlinkat(parentFd, WH_PREFIX + name, 0);
    if (r < 0 && r !== -E.ENOENT && r !== -E.ENAMETOOLONG) fail(-r, 'unlink whiteout', name);
  }

  /** "A directory is made opaque by setting the xattr trusted.overlay.opaque to y." */
  setOpaque(dirFd: number, name: string): void {
    check(sys.setxattr(dirFd, name, this.xattrs.opaque, Buffer.from('y'), 0), 'set opaque', name);
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
    const daemonUid = process.getuid?.() ?? 0;
    const daemonGid = process.getgid?.() ?? 0;
    const gid = parentGid ?? caller.gid;
    if (caller.uid === daemonUid && gid === daemonGid) return;
    const st = check(lstatAt(dirFd, name), 'stat', name);
    // Already so (a setgid directory handed its group down): a chown would only clear bits.
    if (st.uid === caller.uid && st.gid === gid) return;
    check(sys.fchownat(dirFd, name, caller.uid, gid), 'chown', name);
    // chown(2) clears setuid/setgid of a non-directory; the kernel creates the object with its
    // owner's credentials instead, so the bits the creator asked for stay: put them back.
    if (st.mode & 0o6000 && !isDir(st.mode) && !isLnk(st.mode)) check(sys.fchmodat(dirFd, name, st.mode & 0o7777), 'chmod', name);
  }
}

/**
 * Renames the finished copy `tmp` (mode `mode`) in from the work dir. The kernel links a copy-up
 * into a parent its owner cannot write (a 0555 lower dir, copied up with its mode), and moves a
 * read-only directory (whose ".." the move rewrites), with its mounter's capabilities; a daemon
 * run by a user has no CAP_DAC_OVERRIDE, so it opens its own parent and directory to itself for
 * the moment of the rename and puts their modes back.
 */
function linkInto(workFd: number, tmp: string, parentFd: number, name: string, parentMode: number, mode: number): void {
  const r = sys.renameat2(workFd, tmp, parentFd, name, C.RENAME_NOREPLACE);
  if (r === 0) return;
  if (r !== -E.EACCES || (process.getuid?.() ?? 0) === 0) fail(-r, 'copy-up rename', name);
  const dir = isDir(mode);
  if (sys.fchmodat(parentFd, '', (parentMode & 0o7777) | 0o700) < 0 || (dir && sys.fchmodat(workFd, tmp, (mode & 0o7777) | 0o700) < 0)) {
    sys.fchmodat(parentFd, '', parentMode & 0o7777);
    fail(-r, 'copy-up rename', name);
  }
  let moved = false;
  try {
    check(sys.renameat2(workFd, tmp, parentFd, name, C.RENAME_NOREPLACE), 'copy-up rename', name);
    moved = true;
  } finally {
    if (dir) sys.fchmodat(moved ? parentFd : workFd, moved ? name : tmp, mode & 0o7777);
    sys.fchmodat(parentFd, '', parentMode & 0o7777);
  }
}

/** workdir/work, emptied of anything an interrupted copy-up left behind. */
function prepareWorkDir(workRootFd: number, events: CoreEvents, volatile: boolean): number {
  // The kernel makes it mode 0 (it works in it with its mounter's capabilities); a daemon run by
  // a user has no CAP_DAC_OVERRIDE and must be able to enter it: 0700, also if a run left it 0.
  const byUser = (process.getuid?.() ?? 0) !== 0;
  const r = sys.mkdirat(workRootFd, WORK_SUBDIR, byUser ? 0o700 : 0);
  if (r < 0 && r !== -E.EEXIST) fail(-r, 'mkdir', 'workdir/work');
  if (r === -E.EEXIST && byUser) sys.fchmodat(workRootFd, WORK_SUBDIR, 0o700); // EPERM if not ours: the open below says so
  const fd = check(sys.openat(workRootFd, WORK_SUBDIR, C.O_PATH | C.O_NOFOLLOW | C.O_DIRECTORY, 0), 'open', 'workdir/work');
  try {
    refuseIncompat(fd);
    const list = check(sys.readdir(fd), 'readdir', 'workdir/work')[0];
    for (const name of list) removeTree(fd, name);
    if (list.length) events.warn('removed leftovers of an interrupted operation from workdir', { count: list.length });
    if (volatile) markVolatile(fd);
  } catch (err) {
    sys.close(fd);
    throw err;
  }
  return fd;
}

const INCOMPAT = 'incompat';

/**
 * What the kernel finds in work/incompat/ (its ovl_workdir_cleanup) forbids the mount: a
 * volatile mount leaves `volatile/` there, since its upper may have lost writes, and it stays
 * after a clean unmount until the user removes it. Cleaning it away would hide that loss.
 */
function refuseIncompat(workFd: number): void {
  const st = lstatAt(workFd, INCOMPAT);
  if (typeof st === 'number' || !isDir(st.mode)) return;
  const inner = check(sys.openat(workFd, INCOMPAT, C.O_PATH | C.O_NOFOLLOW | C.O_DIRECTORY, 0), 'open', 'workdir/work/incompat');
  try {
    const names = check(sys.readdir(inner), 'readdir', 'workdir/work/incompat')[0];
    if (names.length > 0) {
      throw new FsError(E.EINVAL, 'mount', `workdir/work/incompat/${names[0]}: overlay with incompat feature '${names[0]}' cannot be mounted (a volatile mount used this upper; remove workdir/work/incompat/${names[0]} once the upper is known good)`);
    }
  } finally {
    sys.close(inner);
  }
}

/** The kernel's marker of a volatile mount (ovl_create_volatile_dirty): incompat/volatile/dirty. */
function markVolatile(workFd: number): void {
  const mode = (process.getuid?.() ?? 0) !== 0 ? 0o700 : 0; // as workdir/work itself
  for (const at of [INCOMPAT, INCOMPAT + '/volatile']) {
    const r = sys.mkdirat(workFd, at, mode);
    if (r < 0 && r !== -E.EEXIST) fail(-r, 'mkdir', `workdir/work/${at}`);
  }
  const dirty = check(sys.openat(workFd, INCOMPAT + '/volatile/dirty', C.O_CREAT | C.O_WRONLY | C.O_NOFOLLOW, 0), 'create', 'workdir/work/incompat/volatile/dirty');
  check(sys.fsync(dirty, 0), 'fsync', 'workdir/work/incompat/volatile/dirty');
  sys.close(dirty);
}

/** rm -rf of `name` in `dirFd`, never following symlinks. */
export function removeTree(dirFd: number, name: string): void {
  const st = lstatAt(dirFd, name);
  if (typeof st === 'number') return;
  if (isDir(st.mode)) {
    const fd = sys.openat(dirFd, name, C.O_PATH | C.O_NOFOLLOW | C.O_DIRECTORY, 0);
    if (fd >= 0) {
      try {
        const list = sys.readdir(fd);
        if (typeof list !== 'number') for (const child of list[0]) removeTree(fd, child);
      } finally {
        sys.close(fd);
      }
    }
    check(sys.unlinkat(dirFd, name, C.AT_REMOVEDIR), 'rmdir', name);
  } else {
    check(sys.unlinkat(dirFd, name, 0), 'unlink', name);
  }
}

/** The xattrs copy-up carries (see OverlayXattrs.copiedUp). */
export function copyXattrs(srcFd: number, srcName: string, dstFd: number, dstName: string, xattrs: OverlayXattrs): void {
  const names = sys.listxattr(srcFd, srcName);
  if (typeof names === 'number') {
    if (names === -E.ENOTSUP) return;
    fail(-names, 'listxattr', srcName);
  }
  for (const x of names) {
    if (!xattrs.copiedUp(x)) continue;
    const v = sys.getxattr(srcFd, srcName, x);
    if (typeof v === 'number') {
      if (v === -E.ENODATA) continue;
      fail(-v, 'getxattr', srcName);
    }
    const r = sys.setxattr(dstFd, dstName, x, v, 0);
    // security.* may be refused by an LSM and user.* on symlinks by the kernel; the kernel's
    // copy-up skips what the upper filesystem does not support in the same way.
    if (r < 0 && r !== -E.ENOTSUP && r !== -E.EPERM) fail(-r, 'setxattr', `${srcName} ${x}`);
  }
}

/** Owner, mode (with setuid/setgid, set after chown clears them) and nanosecond times. */
export function copyOwner(st: Stat, dirFd: number, name: string): void {
  check(sys.fchownat(dirFd, name, st.uid, st.gid), 'chown', name);
}

export function copyModeTimes(st: Stat, dirFd: number, name: string): void {
  if (!isLnk(st.mode)) check(sys.fchmodat(dirFd, name, st.mode & ~S_IFMT), 'chmod', name);
  check(sys.utimensat(dirFd, name, st.atime.sec, st.atime.nsec, st.mtime.sec, st.mtime.nsec), 'utimens', name);
}

export { joinPath, WH_OPAQUE };

