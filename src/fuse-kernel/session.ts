// One FUSE session on a device: reads requests, hands each to the ops, encodes what they
// answer, and sends notifications; knows nothing of the overlay.
//
// One thread: the device is non-blocking and watched on the libuv loop; each wake-up reads
// requests until none waits, answers the synchronous ones at once and the others (read, write,
// fsync) when their promise settles; one the handler says must wait (for a copy-up of file data
// in the worker threads) is parked and then handled again from the start. Synchronous replies
// are all encoded into one buffer, sent before the next request is read.
//
// With FUSE over io_uring (a ring given, the kernel offering it at INIT) the ring is registered
// once INIT is answered, and from then on requests come from it and replies go back through it;
// FORGET, INTERRUPT and notifications stay on /dev/fuse, read and written as before.
import { E, FsError, errnoOf } from '../core/errors';
import { shown } from '../host/bytes';
import type { Attr } from '../core/overlay';
import type { Logger } from '../log/logger';
import {
  OUT_HEADER, Request, decodeHeader, encodeAttrOut, encodeCount, encodeEntry, encodeInitMajor, encodeInitOut,
  encodeInvalEntry, encodeInvalInode, encodeLseekOut, encodeNotifyHeader, encodeOpenOut, encodeOutHeader, encodeStatfsOut,
  type InitOut, type StatfsOut, type Validity,
} from './abi';
import { describe, type Described } from './describe';
import type { FuseDevice, FuseRing } from './device';
import { INIT2, NOTIFY, OP_NAMES, Op } from './protocol';

/** What an op answers; an errno is thrown as FsError. */
export type Reply =
  /** FORGET, BATCH_FORGET, INTERRUPT: the kernel waits for no answer. */
  | { kind: 'none' }
  | { kind: 'empty' }
  /** nodeid 0: a cached miss (negative entry). */
  | { kind: 'entry'; nodeid: number; attr: Attr | undefined; entryValid: Validity; attrValid: Validity }
  | { kind: 'attr'; attr: Attr; valid: Validity }
  | { kind: 'open'; fh: number; flags: number; backingId: number }
  | { kind: 'create'; nodeid: number; attr: Attr; entryValid: Validity; attrValid: Validity; fh: number; flags: number; backingId: number }
  /** fuse_write_out, fuse_getxattr_out (a size), copy_file_range's count. */
  | { kind: 'count'; n: number }
  | { kind: 'offset'; offset: number }
  | { kind: 'statfs'; statfs: StatfsOut }
  | { kind: 'init'; init: InitOut }
  | { kind: 'initMajor'; major: number; minor: number }
  /** `n` payload bytes at buf[OUT_HEADER..], the header's room left free before them. */
  | { kind: 'bytes'; buf: Buffer; n: number };

export const NONE: Reply = Object.freeze({ kind: 'none' });
export const EMPTY: Reply = Object.freeze({ kind: 'empty' });

/** The replies of the hottest requests (GETATTR, LOOKUP, READ), one object each, refilled per request. */
class SharedAttr {
  readonly kind = 'attr';
  attr!: Attr;
  valid!: Validity;
}

class SharedBytes {
  readonly kind = 'bytes';
  buf!: Buffer;
  n = 0;
}

class SharedEntry {
  readonly kind = 'entry';
  nodeid = 0;
  attr: Attr | undefined;
  entryValid!: Validity;
  attrValid!: Validity;
}

/** What the session hands each request to. */
export interface Handler {
  handle(req: Request): Reply | Promise<Reply>;
  /**
   * For an error `handle` threw: what to wait for before the request is handled again (it
   * changed nothing yet), or undefined where the error is the answer. The wait rejects with
   * the request's answer where it ends otherwise (aborted: the caller is gone).
   */
  retryAfter(err: unknown): ((signal: AbortSignal) => Promise<void>) | undefined;
}

/** A request waiting to be handled again: its caller, and how to give up on it. */
interface Parked {
  pid: number;
  abort: AbortController;
}

/** Requests handled per wake-up before the loop gets a turn (level-triggered: it comes back). */
const BATCH = 64;
/** The largest request: max_write of data and its headers. */
export const MAX_WRITE = 1 << 20;
const READ_BUF = MAX_WRITE + 4096;

export class Session {
  /** Requests read. */
  ops = 0;
  /** Notifications sent to keep the kernel's caches exact. */
  invalidations = 0;
  private readonly req = new Request(Buffer.allocUnsafe(READ_BUF));
  /** Synchronous replies are encoded here (see room). */
  private out = Buffer.allocUnsafe(OUT_HEADER + 128 * 1024);
  private readonly small = Buffer.allocUnsafe(OUT_HEADER + 24);
  private handler: Handler | undefined;
  /** Requests being answered later: their callers wait on them, not on us. */
  private inFlight = 0;
  private ended = false;
  private readonly endHooks: (() => void)[] = [];
  private readonly debug: boolean;
  private readonly sharedAttr = new SharedAttr();
  private readonly sharedEntry = new SharedEntry();
  private readonly sharedBytes = new SharedBytes();
  /** Requests waiting to be handled again (see park), by unique. */
  private readonly parked = new Map<number, Parked>();
  /** Where replies go: the device, or the ring once it serves (it passes on what it does not hold). */
  private replies: FuseDevice;
  /** Ring entries the kernel gave back (torn down or refused): with all gone, the ring is dropped. */
  private ringLost = 0;
  private ringServing = false;
  /** In the ring's read loop: its replies go out with its next read (see FuseRing.flush). */
  private ringLooping = false;
  /** Requests a dropped ring brought. */
  private ringServedBefore = 0;

  /**
   * `ring`: FUSE over io_uring on the same connection, to register once INIT is answered, if
   * the kernel offers it; `ringNote`: why there is none, for the log.
   */
  constructor(
    private readonly dev: FuseDevice, private readonly log: Logger, private readonly spinNs: number,
    private ring?: FuseRing, private readonly ringNote = 'not asked for',
  ) {
    this.debug = log.isLevelEnabled('debug');
    this.replies = dev;
  }

  /** Starts serving: requests go to `handler` from the next turn of the loop. */
  start(handler: Handler): void {
    this.handler = handler;
    this.dev.watch((ev) => this.onEvents(ev, this.dev));
  }

  /** A ring waits to be registered: INIT may ask for FUSE_OVER_IO_URING. */
  get ringReady(): boolean {
    return this.ring !== undefined && !this.ringServing;
  }

  /** Requests that came through io_uring (0 without a ring). */
  get ringOps(): number {
    return this.ringServedBefore + (this.ring?.served ?? 0);
  }

  /** Whether io_uring serves the requests (registered, not dropped). */
  get viaRing(): boolean {
    return this.ringServing;
  }

  /** -o spin=, for the logs. */
  get spinUs(): number {
    return this.spinNs / 1000;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  /** Runs once the session ends, before the device closes (in the order added). */
  onEnd(hook: () => void): void {
    if (this.ended) hook();
    else this.endHooks.push(hook);
  }

  /** Stops serving and closes the device (unmounted, DESTROY, given up). */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    for (const h of this.endHooks.splice(0)) {
      try { h(); } catch (err) { this.log.warn({ err: String(err) }, 'ending the FUSE session'); }
    }
    this.dropRing();
    this.dev.close();
  }

  // ---- the request loop ----

  private onEvents(ev: number, dev: FuseDevice): void {
    if (this.ended) return;
    // No spinning while a reply is pending (its caller sends nothing meanwhile), nor on
    // /dev/fuse while the ring brings the requests.
    const spin = dev === this.dev && this.ringServing ? 0 : this.spinNs;
    for (let i = 0; i < BATCH; i++) {
      const n = dev.read(this.req.buf, this.inFlight === 0 ? spin : 0);
      if (n < 0 && dev !== this.dev) {
        if (n === -E.EAGAIN) return;
        this.entryLost(n);
        if (!this.ringServing) return;
        continue;
      }
      if (n < 0) {
        if (n === -E.EAGAIN) {
          if (ev & 2) this.end();
          return;
        }
        if (n === -E.ENOENT || n === -E.EINTR) continue; // a request interrupted before we read it
        if (n !== -E.ENODEV) this.log.error({ errno: -n }, 'reading /dev/fuse failed; ending the session');
        this.end();
        return;
      }
      this.dispatch(n);
      if (this.ended) return;
    }
  }

  /** Handles the `n` request bytes in the request buffer; `again`: a parked one, counted when it came. */
  private dispatch(n: number, again = false): void {
    const req = this.req;
    if (!decodeHeader(req, n) || !this.handler) return;
    if (!again) this.ops++;
    const { unique, opcode } = req;
    const t0 = this.debug ? process.hrtime.bigint() : 0n;
    // Read now: a reply given later finds the buffer holding another request.
    const args = this.debug ? describe(req) : undefined;
    let r: Reply | Promise<Reply>;
    try {
      r = this.handler.handle(req);
    } catch (err) {
      const wait = this.handler.retryAfter(err);
      if (wait) this.park(n, wait);
      else this.failed(opcode, unique, req.nodeid, err, t0, args);
      return;
    }
    if (r instanceof Promise) {
      this.later(opcode, unique, req.nodeid, t0, r, args);
      return;
    }
    this.send(unique, r);
    if (this.debug) this.trace(opcode, req.nodeid, t0, resultOf(opcode, r), args);
  }

  /**
   * The request in the buffer (n bytes) waits, off the loop, and is handled again from the
   * start once `wait` resolves; if it rejects, that is the answer.
   */
  private park(n: number, wait: (signal: AbortSignal) => Promise<void>): void {
    const req = this.req;
    const bytes = Buffer.from(req.buf.subarray(0, n));
    const unique = req.unique;
    const abort = new AbortController();
    this.parked.set(unique, { pid: req.pid, abort });
    this.inFlight++;
    wait(abort.signal).then(
      () => {
        this.parked.delete(unique);
        this.inFlight--;
        if (this.ended) return;
        // Nothing else runs on this thread now: the buffer is free until the next read.
        bytes.copy(req.buf);
        this.dispatch(n, true);
      },
      (err: unknown) => {
        this.parked.delete(unique);
        this.inFlight--;
        this.replyError(unique, errnoOf(err));
      },
    );
  }

  /** The pid of the caller of parked request `unique`, if it is parked. */
  parkedCaller(unique: number): number | undefined {
    return this.parked.get(unique)?.pid;
  }

  /** Gives up waiting for parked request `unique` (its wait rejects, and that is the answer). */
  cancel(unique: number): void {
    this.parked.get(unique)?.abort.abort();
  }

  private later(opcode: number, unique: number, nodeid: number, t0: bigint, p: Promise<Reply>, args: Described | undefined): void {
    this.inFlight++;
    p.then(
      (r) => {
        this.inFlight--;
        if (r === this.sharedAttr || r === this.sharedEntry || r === this.sharedBytes) {
          // Another request may have refilled it between the handler's await and now.
          this.failed(opcode, unique, nodeid, new Error('a shared reply was returned after an await'), t0);
          return;
        }
        this.send(unique, r);
        if (this.debug) this.trace(opcode, nodeid, t0, resultOf(opcode, r), args);
      },
      (err: unknown) => {
        this.inFlight--;
        this.failed(opcode, unique, nodeid, err, t0, args);
      },
    );
  }

  private failed(opcode: number, unique: number, nodeid: number, err: unknown, t0: bigint, args?: Described): void {
    const errno = errnoOf(err);
    if (!(err instanceof FsError) && errno === E.EIO) this.log.error({ op: OP_NAMES[opcode] ?? opcode, err: shown(String(err)) }, 'request failed unexpectedly');
    if (this.debug) this.trace(opcode, nodeid, t0, -errno, args);
    this.replyError(unique, errno);
  }

  /** The request's debug line: its op, node, names and arguments (describe.ts), result and time. */
  private trace(opcode: number, nodeid: number, t0: bigint, result: number, args: Described | undefined): void {
    this.log.debug({ op: OP_NAMES[opcode] ?? opcode, node: nodeid, ...args, result, us: Number((process.hrtime.bigint() - t0) / 1000n) }, 'fuse op');
  }

  // ---- replies ----

  /**
   * The reply buffer with room for `n` payload bytes after the header, grown if needed: for an
   * op building a `bytes` reply it returns at once (the next reply reuses it).
   */
  room(n: number): Buffer {
    if (this.out.length < OUT_HEADER + n) this.out = Buffer.allocUnsafe(OUT_HEADER + n);
    return this.out;
  }

  /**
   * fuse_attr_out, in an object reused by every request (no garbage on the hot path): only for
   * a reply returned synchronously; a handler that awaits first builds its own.
   */
  attrReply(attr: Attr, valid: Validity): Reply {
    const r = this.sharedAttr;
    r.attr = attr;
    r.valid = valid;
    return r;
  }

  /** fuse_entry_out (nodeid 0: a cached miss), reused as attrReply is. */
  entryReply(nodeid: number, attr: Attr | undefined, entryValid: Validity, attrValid: Validity): Reply {
    const r = this.sharedEntry;
    r.nodeid = nodeid;
    r.attr = attr;
    r.entryValid = entryValid;
    r.attrValid = attrValid;
    return r;
  }

  /** `n` payload bytes at buf[OUT_HEADER..], reused as attrReply is. */
  bytesReply(buf: Buffer, n: number): Reply {
    const r = this.sharedBytes;
    r.buf = buf;
    r.n = n;
    return r;
  }

  /** Encodes and sends a reply to request `unique`. */
  send(unique: number, r: Reply): void {
    if (r.kind === 'none') return;
    let b: Buffer = this.out;
    const o = OUT_HEADER;
    let n: number;
    switch (r.kind) {
      case 'empty': n = 0; break;
      case 'entry': n = encodeEntry(b, o, r.nodeid, r.attr, r.entryValid, r.attrValid); break;
      case 'attr': n = encodeAttrOut(b, o, r.attr, r.valid); break;
      case 'open': n = encodeOpenOut(b, o, r.fh, r.flags, r.backingId); break;
      case 'create':
        n = encodeEntry(b, o, r.nodeid, r.attr, r.entryValid, r.attrValid);
        n += encodeOpenOut(b, o + n, r.fh, r.flags, r.backingId);
        break;
      case 'count': n = encodeCount(b, o, r.n); break;
      case 'offset': n = encodeLseekOut(b, o, r.offset); break;
      case 'statfs': n = encodeStatfsOut(b, o, r.statfs); break;
      case 'init': n = encodeInitOut(b, o, r.init); break;
      case 'initMajor': n = encodeInitMajor(b, o, r.major, r.minor); break;
      case 'bytes': b = r.buf; n = r.n; break;
    }
    encodeOutHeader(b, n, 0, unique);
    this.write(b, OUT_HEADER + n);
    if (r.kind === 'init') this.initAnswered((r.init.flags2 & INIT2.OVER_IO_URING) !== 0);
  }

  // ---- FUSE over io_uring ----

  /** INIT is answered (the kernel is initialised): the ring is registered if it was asked for. */
  private initAnswered(ringAsked: boolean): void {
    const ring = this.ring;
    if (!ring || !ringAsked) {
      this.dropRing();
      this.log.info({ reason: ring ? 'the kernel does not offer it' : this.ringNote }, 'FUSE requests come through /dev/fuse reads, not io_uring');
      return;
    }
    const taken = ring.register();
    if (taken <= 0) {
      // The kernel then falls back to /dev/fuse itself (fc->io_uring is cleared).
      this.dropRing();
      this.log.info({ errno: -taken }, 'FUSE over io_uring refused at registration: requests come through /dev/fuse reads');
      return;
    }
    this.ringServing = true;
    this.replies = ring;
    ring.watch((ev) => {
      this.ringLooping = true;
      try {
        this.onEvents(ev, ring);
      } finally {
        this.ringLooping = false;
        // A batch cut short leaves its last reply unsent.
        if (this.ring === ring) this.flushRing(ring.flush());
      }
    });
    this.log.info({ entries: taken, asked: ring.entries }, 'FUSE requests come through io_uring');
  }

  private flushRing(r: number): void {
    if (r < 0 && r !== -E.ENOTCONN && r !== -E.ENXIO) this.log.warn({ errno: -r }, 'sending FUSE replies through io_uring failed');
  }

  /** An entry the kernel gave back: at teardown each comes back so; with all gone, the ring goes. */
  private entryLost(n: number): void {
    const ring = this.ring;
    if (!ring) return;
    if (n !== -E.ENOTCONN && n !== -E.ECONNABORTED) this.log.warn({ errno: -n }, 'a FUSE io_uring entry failed');
    if (++this.ringLost >= ring.entries) this.dropRing();
  }

  /**
   * Closes the ring, its replies going back to /dev/fuse. Closing it makes the kernel give
   * back the entries still waiting, so the connection can end.
   */
  private dropRing(): void {
    const ring = this.ring;
    if (!ring) return;
    this.ring = undefined;
    this.ringServedBefore += ring.served;
    this.ringServing = false;
    this.replies = this.dev;
    ring.close();
  }

  replyError(unique: number, errno: number): void {
    encodeOutHeader(this.small, 0, errno, unique);
    this.write(this.small, OUT_HEADER);
  }

  private write(b: Buffer, n: number): void {
    if (this.ended) return;
    const r = this.replies.write(b, n);
    if (this.ringServing && !this.ringLooping && this.ring) this.flushRing(this.ring.flush());
    // ENOENT: the request was interrupted and is gone; ENODEV: the mount is gone.
    if (r < 0 && r !== -E.ENOENT && r !== -E.ENODEV) this.log.warn({ errno: -r }, 'writing a FUSE reply failed');
  }

  // ---- notifications ----

  /**
   * FUSE_NOTIFY_INVAL_INODE for the attributes only (the page cache kept). Sent at once, before
   * the reply of the request that caused it, so the caller's next stat sees the change: for
   * attributes alone the kernel takes no lock a pending request could hold.
   */
  invalAttr(nodeid: number): void {
    const b = this.small;
    const n = encodeInvalInode(b, OUT_HEADER, nodeid, -1n, 0n);
    encodeNotifyHeader(b, n, NOTIFY.INVAL_INODE);
    this.invalidations++;
    this.write(b, OUT_HEADER + n);
  }

  /**
   * FUSE_NOTIFY_INVAL_ENTRY: the kernel looks parent/name up again when next used. Sent from the
   * thread pool once the current reply is out: the kernel takes the directory's lock for it,
   * which a request still waiting for our answer may hold.
   */
  invalEntry(parent: number, name: string): void {
    const nb = Buffer.from(name, 'latin1');
    const b = Buffer.allocUnsafe(OUT_HEADER + 16 + nb.length + 1);
    const n = encodeInvalEntry(b, OUT_HEADER, parent, nb);
    encodeNotifyHeader(b, n, NOTIFY.INVAL_ENTRY);
    this.invalidations++;
    setImmediate(() => {
      if (!this.ended) this.dev.writeAsync(b);
    });
  }
}

/** What the debug log shows as a request's result: bytes moved by read and write, -ENOENT for a cached miss. */
function resultOf(opcode: number, r: Reply): number {
  if (r.kind === 'entry' && r.nodeid === 0) return -E.ENOENT;
  if (opcode === Op.READ && r.kind === 'bytes') return r.n;
  if (opcode === Op.WRITE && r.kind === 'count') return r.n;
  return 0;
}
