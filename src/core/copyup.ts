// Copy-ups that take time. The data of a regular file is copied in slices by the addon's worker
// threads while the event loop serves everyone else, one job per merged path: as the kernel's
// ovl_copy_up_start, a second caller of the same copy-up waits for the first one's. A request
// that needs the copy, or would change the object meanwhile (remove it, move it), is told so with
// CopyUpPending, waits, and is asked again once the job is over. A job whose every waiting
// caller gave up (a killed process) stops between slices and its temp file goes (the kernel's
// copy-up loop stops on a fatal signal the same way).
import { C, sys } from '../host/native';
import { E, FsError } from './errors';

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
