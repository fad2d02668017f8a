// Copy-ups that take time. The data of a regular file is copied in slices by the addon's worker
// threads while the event loop serves everyone else, one job per merged path: as the kernel's
// ovl_copy_up_start, a second caller of the same copy-up waits for the first one's. A request
// that needs the copy, or would change the object meanwhile (remove it, move it), is told so with
// CopyUpPending, waits, and is asked again once the job is over. A job whose every waiting
// caller gave up (a killed process) stops between slices and its temp file goes (the kernel's
// copy-up loop stops on a fatal signal the same way).
//
// The copy itself (CopyUp below) is built in the work directory in the kernel's order and
// renamed into upper only once whole.
import { C, sys } from '../host/native';
import { S_IFMT, isDir, isLnk, isReg, lstatAt, type Stat } from '../host/stat';
import type { CoreEvents } from './config';
import { E, FsError, check, fail } from './errors';
import type { Layer } from './layers';
import { encodeOrigin, type UuidMode } from './origin';
import { removeTree, type WorkDir } from './workdir';
import type { OverlayXattrs } from './xattrs';

/** Bytes per slice: one worker turn, and how far a cancelled copy runs on at most. */
export const SLICE = 16 * 1024 * 1024;

/** The data phase of one copy-up: from the lower file into the temp in the work directory. */
export interface DataCopy {
  inFd: number;
  outFd: number;
  size: number;
  durable: boolean;
}

function flagsOf(d: DataCopy): number {
  return C.COPY_CLONE | (d.durable ? C.COPY_WRITEBACK | C.COPY_FSYNC : 0);
}

/** The whole data phase on this thread (for callers that cannot wait); returns bytes copied. */
export function copyDataSync(d: DataCopy): number {
  const copied = new Float64Array(1);
  const r = sys.copySlice(d.inFd, d.outFd, 0, d.size, d.size, flagsOf(d), copied);
  if (r < 0) throw new FsError(-r, 'copy-up data');
  return copied[0];
}

function sliceAsync(d: DataCopy, pos: number): Promise<[number, number]> {
  return new Promise((resolve, reject) => {
    sys.copySliceAsync(d.inFd, d.outFd, pos, d.size, SLICE, flagsOf(d), (next, copied) => {
      if (next < 0) reject(new FsError(-next, 'copy-up data'));
      else resolve([next, copied]);
    });
  });
}

/** What a job does around its data phase, on the JS thread. */
export interface JobSteps {
  /** Metadata and the rename into place (the data is complete); given the bytes copied. */
  finish(copied: number): void;
  /** Always last: closes the job's fds; with an error, removes the temp. */
  end(err?: unknown): void;
}

export class CopyUpJob {
  /** Resolves once the copy is in place; rejects with its FsError (EINTR when cancelled). */
  readonly done: Promise<void>;
  /** Callers waiting because they need the copy; the last to give up cancels it. */
  private needers = 0;
  private cancelled = false;

  constructor(readonly path: string, data: DataCopy, steps: JobSteps) {
    this.done = this.run(data, steps);
    // Nobody may be waiting (the caller that started it went away): not an unhandled rejection.
    this.done.catch(() => undefined);
  }

  private async run(data: DataCopy, steps: JobSteps): Promise<void> {
    let copied = 0;
    try {
      for (let pos = 0; ;) {
        if (this.cancelled) throw new FsError(E.EINTR, 'copy-up', this.path);
        const [next, n] = await sliceAsync(data, pos);
        copied += n;
        if (next >= data.size) break;
        pos = next;
      }
      if (this.cancelled) throw new FsError(E.EINTR, 'copy-up', this.path);
      steps.finish(copied);
    } catch (err) {
      steps.end(err);
      throw err;
    }
    steps.end();
  }

  /** Stops the job at the next slice boundary, whoever waits (the mount is going away). */
  cancel(): void {
    this.cancelled = true;
  }

  /**
   * Waits for the copy as a caller that needs it: its outcome is the caller's. When `signal`
   * aborts, this caller stops waiting (EINTR), and if it was the last one, the job stops too.
   */
  join(signal?: AbortSignal): Promise<void> {
    this.needers++;
    return this.waitOn(this.done, signal, () => {
      if (--this.needers === 0) this.cancelled = true;
    });
  }

  /** Waits only for the job to be over, however it ends (for callers that must not overlap it). */
  settled(signal?: AbortSignal): Promise<void> {
    return this.waitOn(this.done.then(() => undefined, () => undefined), signal, () => undefined);
  }

  private waitOn(p: Promise<void>, signal: AbortSignal | undefined, leave: () => void): Promise<void> {
    if (!signal) return p;
    return new Promise((resolve, reject) => {
      let gone = false;
      const onAbort = (): void => {
        gone = true;
        leave();
        reject(new FsError(E.EINTR, 'copy-up', this.path));
      };
      if (signal.aborted) { onAbort(); return; }
      signal.addEventListener('abort', onAbort, { once: true });
      p.then(
        () => { signal.removeEventListener('abort', onAbort); if (!gone) resolve(); },
        (err: unknown) => { signal.removeEventListener('abort', onAbort); if (!gone) reject(err); },
      );
    });
  }
}

/**
 * Thrown by a core call that cannot go on while a copy-up is in flight; it changed nothing the
 * caller can see (at most, parent directories were copied up). The caller waits and asks again.
 */
export class CopyUpPending extends Error {
  constructor(readonly job: CopyUpJob, private readonly needsCopy: boolean) {
    // As FsError: an answer, not a bug; no stack trace.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(`copy-up of ${job.path} in progress`);
    Error.stackTraceLimit = limit;
  }

  /** Resolves when asking again makes sense; rejects with the error that is the request's answer. */
  wait(signal?: AbortSignal): Promise<void> {
    return this.needsCopy ? this.job.join(signal) : this.job.settled(signal);
  }
}

/** Runs `fn` until no copy-up holds it up: for callers whose requests may wait (a promise). */
export async function whenCopiedUp<T>(fn: () => T, signal?: AbortSignal): Promise<T> {
  for (;;) {
    try {
      return fn();
    } catch (err) {
      if (!(err instanceof CopyUpPending)) throw err;
      await err.wait(signal);
    }
  }
}

/** What one copy-up copies, and to where. */
export interface CopyUpContext {
  /** The merged path (jobs are keyed by it; the transport hears of it). */
  path: string;
  /** The object below: its layer, (dirFd, name) naming it ('' with an fd of the object itself), its stat. */
  src: { layer: Layer; dirFd: number; name: string; stat: Stat };
  /** The upper directory it goes in, already copied up, and its name there. */
  parentFd: number;
  name: string;
  /** False skips a regular file's data (opens with O_TRUNC, truncate to zero). */
  withData: boolean;
}

/** What every copy-up of a mount shares. */
export interface CopyUpEnv {
  work: WorkDir;
  xattrs: OverlayXattrs;
  uuid: UuidMode;
  /** fsync the data before the copy is linked in (not with volatile). */
  durable: boolean;
  counts: { copyUps: number; bytesCopiedUp: number };
  events: CoreEvents;
}

/*
 * Copy-up, in the kernel's order (ovl_copy_up_workdir), on a temp in workdir/work:
 *  1. the object: a regular file (0600, O_EXCL), a directory (0700), a symlink, a device;
 *  2. a regular file's data, then its size, then fsync unless volatile (only where data
 *     was copied, as the kernel's ovl_copy_up_file); here or, deferred, in a job's slices;
 *  3. owner: chown after the xattrs would drop security.capability;
 *  4. xattrs but the overlay's own (OverlayXattrs.copiedUp), then the origin;
 *  5. mode and times: chmod after chown keeps setuid/setgid, which chown clears;
 *  6. the rename into the upper parent (RENAME_NOREPLACE), whose times are kept.
 * A crash at any point leaves the lower object or the whole copy; a failure removes the temp.
 */
export class CopyUp {
  /** Copy-ups in flight (deferred data), by merged path. */
  private readonly inflight = new Map<string, CopyUpJob>();

  constructor(private readonly env: CopyUpEnv) {}

  /** The job copying the object at `path`, if one is in flight. */
  pending(path: string): CopyUpJob | undefined {
    return this.inflight.get(path);
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

  /** Steps 1 to 6 on this thread. */
  now(c: CopyUpContext): void {
    const { work, events } = this.env;
    const { src, name } = c;
    const st = src.stat;
    const tmp = work.tempName();
    try {
      if (isReg(st.mode)) {
        const out = check(sys.openat(work.fd, tmp, C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o600), 'copy-up create', name);
        try {
          if (c.withData && st.size > 0) {
            const input = check(sys.openat(src.dirFd, src.name, C.O_RDONLY | C.O_NOFOLLOW, 0), 'copy-up open', name);
            try {
              this.env.counts.bytesCopiedUp += copyDataSync({ inFd: input, outFd: out, size: st.size, durable: this.env.durable });
            } finally {
              sys.close(input);
            }
          }
        } finally {
          sys.close(out);
        }
      } else if (isDir(st.mode)) {
        check(sys.mkdirat(work.fd, tmp, 0o700), 'copy-up mkdir', name);
      } else if (isLnk(st.mode)) {
        const target = check(sys.readlinkat(src.dirFd, src.name), 'copy-up readlink', name);
        check(sys.symlinkat(target, work.fd, tmp), 'copy-up symlink', name);
      } else {
        check(sys.mknodat(work.fd, tmp, st.mode, st.rdevMajor, st.rdevMinor), 'copy-up mknod', name);
      }
      this.finish(c, tmp);
    } catch (err) {
      removeTree(work.fd, tmp);
      events.error('copy-up failed', { name, err: String(err) });
      throw err;
    }
    events.copiedUp?.(c.path);
  }

  /**
   * Steps 1 and 2 of a regular file start now; the data goes to worker threads and the rest
   * follows on this thread once it is in. The job holds fds of its own: the directory cache may
   * close the ones the context names meanwhile.
   */
  start(c: CopyUpContext): CopyUpJob {
    const { work, events } = this.env;
    const { src, name, path } = c;
    const tmp = work.tempName();
    const fds: number[] = [];
    const own = (fd: number, what: string): number => {
      fds.push(check(fd, what, name));
      return fd;
    };
    const closeAll = (): void => { for (const fd of fds.splice(0)) sys.close(fd); };
    let outFd: number, inFd: number, parent: number;
    try {
      outFd = own(sys.openat(work.fd, tmp, C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o600), 'copy-up create');
      inFd = own(sys.openat(src.dirFd, src.name, C.O_RDONLY | C.O_NOFOLLOW, 0), 'copy-up open');
      parent = own(sys.openat(c.parentFd, '', C.O_PATH | C.O_DIRECTORY, 0), 'copy-up open parent');
    } catch (err) {
      closeAll();
      removeTree(work.fd, tmp);
      events.error('copy-up failed', { name, err: String(err) });
      throw err;
    }
    const job = new CopyUpJob(path, { inFd, outFd, size: src.stat.size, durable: this.env.durable }, {
      finish: (copied) => {
        // The source through its open fd (name ''): xattrs and origin of the very file copied.
        this.finish({ ...c, src: { ...src, dirFd: inFd, name: '' }, parentFd: parent }, tmp);
        this.env.counts.bytesCopiedUp += copied;
      },
      end: (err) => {
        this.inflight.delete(path);
        closeAll();
        if (err === undefined) {
          events.copiedUp?.(path);
          return;
        }
        try {
          work.discard(tmp);
        } catch {
          /* the mount is closing; the next one clears workdir/work */
        }
        const cancelled = err instanceof FsError && err.errno === E.EINTR;
        if (!cancelled) events.error('copy-up failed', { name, err: String(err) });
      },
    });
    this.inflight.set(path, job);
    return job;
  }

  /** Steps 3 to 6 for the temp `tmp`, a copy of c.src. */
  private finish(c: CopyUpContext, tmp: string): void {
    const { work, xattrs } = this.env;
    const { src, parentFd, name } = c;
    const st = src.stat;
    copyOwner(st, work.fd, tmp);
    copyXattrs(src.dirFd, src.name, work.fd, tmp, xattrs);
    const origin = encodeOrigin(src.layer, src.dirFd, src.name, this.env.uuid);
    if (origin) check(sys.setxattr(work.fd, tmp, xattrs.origin, origin, 0), 'copy-up origin', name);
    copyModeTimes(st, work.fd, tmp);
    // Linking the copy in is no change the caller made to the parent: keep its times, as the
    // kernel does (ovl_set_timestamps(upperdir, &c->pstat) after the link).
    const pst = check(lstatAt(parentFd, ''), 'copy-up stat parent', name);
    linkInto(work.fd, tmp, parentFd, name, pst.mode, st.mode);
    check(sys.utimensat(parentFd, '', pst.atime.sec, pst.atime.nsec, pst.mtime.sec, pst.mtime.nsec), 'copy-up parent times', name);
    this.env.counts.copyUps++;
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
