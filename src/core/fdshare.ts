// The fds of one process serving several overlays (a resident server's mounts), shared fairly.
// Separate daemons each had a RLIMIT_NOFILE of their own; in one process a mount whose clients
// hold thousands of files open (each one fd here, handles.ts) would push every other mount to
// EMFILE. So each overlay may hold at most its share of open files: what the limit leaves after
// the directory caches' budget (dircache.ts) and a reserve for the process and the mounts' own
// fds (layer roots, /dev/fuse, logs), divided by the mounts served plus one: a share handed out
// cannot be taken back while clients hold the files, and the one spare leaves room for the next
// mount, which engines start while others serve. A mount over its share gets EMFILE, as a
// daemon of its own at its limit would; the others do not notice.
import { dirCacheFdBudget, giveBackFds } from './dircache';
import { E, FsError, errnoOf } from './errors';

/** Fds kept for the process itself (the server's socket and lock, Node's own, a request's transient ones). */
const PROCESS_RESERVE = 64;
/** Fds each mount holds besides its layer roots and open files: /dev/fuse, its log, mountinfo, layer locks. */
const PER_MOUNT = 8;
/** Even a crowded server lets each mount open this many files. */
const MIN_SHARE = 16;

/** EMFILE for an overlay at its share; more directory-cache fds given back would not help it. */
export class FdShareExhausted extends FsError {
  constructor(readonly share: number, subject: string) {
    super(E.EMFILE, 'open (the mount holds its share of the server\'s fds)', subject);
  }
}

/** One overlay's part of an FdPool. */
export interface FdShare {
  /** The open files it may hold now. */
  readonly limit: number;
  /** Out of the pool (its overlay is closing). */
  leave(): void;
}

export class FdPool {
  private readonly members = new Map<FdShare, number>();
  private share = 0;

  /** `nofile`: the process's RLIMIT_NOFILE (raised to the hard limit first, by the caller). */
  constructor(readonly nofile: number) {
    this.recompute();
  }

  /** What open files may use: the limit less the directory caches' budget and the fixed fds. */
  get size(): number {
    let fixed = PROCESS_RESERVE;
    for (const f of this.members.values()) fixed += f;
    return Math.max(0, this.nofile - dirCacheFdBudget(this.nofile) - fixed);
  }

  /** Each member's share now. */
  get current(): number {
    return this.share;
  }

  /** A new member that holds `layers` layer root fds. */
  join(layers: number): FdShare {
    const pool = this;
    const member: FdShare = {
      get limit() { return pool.share; },
      leave() { if (pool.members.delete(member)) pool.recompute(); },
    };
    this.members.set(member, layers + PER_MOUNT);
    this.recompute();
    return member;
  }

  private recompute(): void {
    this.share = Math.max(MIN_SHARE, Math.floor(this.size / (this.members.size + 1)));
  }
}

/**
 * Whether `err`, which ended a whole request, is the process running out of fds (EMFILE, ENFILE:
 * not the mount's share) and the directory caches gave some back: then the request may run once
 * more. One that ran out of fds failed at an open, before its change: the second run starts clean.
 */
export function fdsGivenBack(err: unknown): boolean {
  const errno = errnoOf(err);
  return (errno === E.EMFILE || errno === E.ENFILE) && !(err instanceof FdShareExhausted) && giveBackFds() > 0;
}

/** Runs one whole request, once more where it ran out of fds and the caches gave some back. */
export function withFdsGivenBack<T>(run: () => T): T {
  try {
    return run();
  } catch (err) {
    if (!fdsGivenBack(err)) throw err;
    return run();
  }
}
