// A /dev/fuse that is a queue: tests push requests the way the kernel writes them, the session
// reads them on `deliver`, and what it writes back is kept, decoded, for the test to look at.
import { E } from '../../src/core/errors';
import { ABI, encodeHeader } from '../../src/fuse-kernel/abi';
import type { FuseDevice, FuseRing } from '../../src/fuse-kernel/device';

export interface Written {
  len: number;
  /** A reply's -errno, or a notification's code. */
  error: number;
  unique: number;
  body: Buffer;
}

export class FakeFuse implements FuseDevice {
  /** Everything the session wrote from its thread: replies and attribute invalidations, in order. */
  readonly written: Written[] = [];
  /** Notifications it sent from the thread pool. */
  readonly writtenAsync: Written[] = [];
  readonly backing = new Map<number, number>();
  closed = false;
  private readonly queue: Buffer[] = [];
  private onEvents: ((ev: number) => void) | undefined;
  private nextUnique = 2;
  private nextBacking = 1;

  read(buf: Buffer): number {
    const r = this.queue.shift();
    if (!r) return -E.EAGAIN;
    r.copy(buf);
    return r.length;
  }

  write(buf: Buffer, len: number): number {
    this.written.push(decodeWritten(buf.subarray(0, len)));
    return 0;
  }

  writeAsync(buf: Buffer): void {
    this.writtenAsync.push(decodeWritten(buf));
  }

  watch(onEvents: (ev: number) => void): void {
    this.onEvents = onEvents;
  }

  backingOpen(fd: number): number {
    const id = this.nextBacking++;
    this.backing.set(id, fd);
    return id;
  }

  backingClose(id: number): void {
    this.backing.delete(id);
  }

  close(): void {
    this.closed = true;
  }

  /** Queues a request (header made here; uid, gid and pid 0 unless given); returns its unique. */
  push(opcode: number, nodeid: number, body: Buffer = Buffer.alloc(0), who: { uid?: number; gid?: number; pid?: number } = {}): number {
    const unique = this.nextUnique++;
    const b = Buffer.alloc(ABI.in_header.size + body.length);
    encodeHeader(b, b.length, opcode, unique, nodeid, who.uid ?? 0, who.gid ?? 0, who.pid ?? 0);
    body.copy(b, ABI.in_header.size);
    this.queue.push(b);
    return unique;
  }

  /** The device turns readable: the session reads what is queued. Returns what it wrote meanwhile. */
  deliver(): Written[] {
    const from = this.written.length;
    this.onEvents?.(1);
    return this.written.slice(from);
  }

  /** push + deliver: the one reply to that request (throws if there is none, or several). */
  call(opcode: number, nodeid: number, body?: Buffer, who?: { uid?: number; gid?: number; pid?: number }): Written {
    const unique = this.push(opcode, nodeid, body, who);
    const out = this.deliver().filter((w) => w.unique === unique);
    if (out.length !== 1) throw new Error(`request ${opcode}: ${out.length} replies`);
    return out[0];
  }

  /** What was written up to the reply to `unique`, once it is there (replies that come later: thread pool, copy-up). */
  async until(unique: number, ms = 10000): Promise<Written[]> {
    for (const end = Date.now() + ms; Date.now() < end; await new Promise((resolve) => setTimeout(resolve, 5))) {
      const i = this.written.findIndex((w) => w.unique === unique);
      if (i >= 0) return this.written.slice(0, i + 1);
    }
    throw new Error(`no reply to request ${unique} within ${ms} ms`);
  }

  /** The device hangs up (the mount is gone). */
  hangUp(): void {
    this.onEvents?.(2);
  }
}

/**
 * FUSE over io_uring beside a FakeFuse, as native/fuse_uring.c behaves: requests pushed here
 * come from the ring once registered; a reply to one of them is committed on its entry and sent
 * with the next read or flush; any other write goes to the device.
 */
export class FakeRing implements FuseRing {
  readonly entries = 4;
  served = 0;
  /** What register() answers (entries taken, or -errno). */
  registerAnswer = 4;
  /** dev.written.length when register() was called, or -1. */
  registeredAt = -1;
  closed = false;
  /** Replies sent to the kernel through the ring. */
  readonly sent: Written[] = [];
  /** Replies committed but not yet sent (waiting for the next read or flush). */
  readonly unsent: Written[] = [];
  private readonly queue: (Buffer | number)[] = [];
  private readonly held = new Set<number>();
  private onEvents: ((ev: number) => void) | undefined;
  private nextUnique = 1001;

  constructor(private readonly dev: FakeFuse) {}

  register(): number {
    this.registeredAt = this.dev.written.length;
    return this.registerAnswer;
  }

  read(buf: Buffer): number {
    this.flush();
    const r = this.queue.shift();
    if (r === undefined) return -E.EAGAIN;
    if (typeof r === 'number') return r;
    r.copy(buf);
    this.held.add(Number(r.readBigUInt64LE(ABI.in_header.unique)));
    this.served++;
    return r.length;
  }

  write(buf: Buffer, len: number): number {
    const w = decodeWritten(buf.subarray(0, len));
    if (!this.held.delete(w.unique)) return this.dev.write(buf, len);
    this.unsent.push(w);
    return 0;
  }

  flush(): number {
    this.sent.push(...this.unsent.splice(0));
    return 0;
  }

  writeAsync(buf: Buffer): void { this.dev.writeAsync(buf); }
  watch(onEvents: (ev: number) => void): void { this.onEvents = onEvents; }
  backingOpen(fd: number): number { return this.dev.backingOpen(fd); }
  backingClose(id: number): void { this.dev.backingClose(id); }
  close(): void { this.closed = true; this.onEvents = undefined; }

  /** Queues a request on the ring; returns its unique. */
  push(opcode: number, nodeid: number, body: Buffer = Buffer.alloc(0)): number {
    const unique = this.nextUnique++;
    const b = Buffer.alloc(ABI.in_header.size + body.length);
    encodeHeader(b, b.length, opcode, unique, nodeid, 0, 0, 0);
    body.copy(b, ABI.in_header.size);
    this.queue.push(b);
    return unique;
  }

  /** An entry the kernel gives back with -errno (teardown). */
  giveBack(errno: number): void {
    this.queue.push(-errno);
  }

  /** Completions wait: the session reads them. Returns what it sent through the ring meanwhile. */
  deliver(): Written[] {
    const from = this.sent.length;
    this.onEvents?.(1);
    return this.sent.slice(from);
  }

  get watched(): boolean {
    return this.onEvents !== undefined;
  }
}

function decodeWritten(b: Buffer): Written {
  const h = ABI.out_header;
  return { len: b.readUInt32LE(h.len), error: b.readInt32LE(h.error), unique: Number(b.readBigUInt64LE(h.unique)), body: Buffer.from(b.subarray(h.size)) };
}

/** Body builders for the requests the tests send, field by field as in fuse.h. */
export const body = {
  name: (s: string): Buffer => Buffer.from(s + '\0'),
  u32s: (...v: number[]): Buffer => Buffer.concat(v.map((x) => { const b = Buffer.alloc(4); b.writeUInt32LE(x >>> 0); return b; })),
  u64s: (...v: number[]): Buffer => Buffer.concat(v.map((x) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(x)); return b; })),
  /** fuse_init_in */
  init: (major: number, minor: number, flags: number, flags2 = 0): Buffer => {
    const b = Buffer.alloc(64);
    b.writeUInt32LE(major, 0); b.writeUInt32LE(minor, 4); b.writeUInt32LE(131072, 8); b.writeUInt32LE(flags >>> 0, 12); b.writeUInt32LE(flags2 >>> 0, 16);
    return b;
  },
  /** fuse_read_in (READ, READDIR, READDIRPLUS) */
  read: (fh: number, offset: number, size: number): Buffer => {
    const b = Buffer.alloc(40);
    b.writeBigUInt64LE(BigInt(fh), 0); b.writeBigUInt64LE(BigInt(offset), 8); b.writeUInt32LE(size, 16);
    return b;
  },
};

/** fuse_entry_out: the node id and a few attributes. */
export function entryOf(b: Buffer): { nodeid: number; entryValid: number; ino: bigint; size: number; mode: number } {
  return { nodeid: Number(b.readBigUInt64LE(0)), entryValid: Number(b.readBigUInt64LE(16)), ino: b.readBigUInt64LE(40), size: Number(b.readBigUInt64LE(48)), mode: b.readUInt32LE(40 + 60) };
}

/** fuse_attr_out's attributes. */
export function attrOf(b: Buffer): { ino: bigint; size: number; mode: number } {
  return { ino: b.readBigUInt64LE(16), size: Number(b.readBigUInt64LE(24)), mode: b.readUInt32LE(16 + 60) };
}

/** The records of a READDIR (or READDIRPLUS, `plus`) reply. */
export function direntsOf(b: Buffer, plus = false): { name: string; ino: bigint; off: number; type: number; nodeid?: number }[] {
  const out: { name: string; ino: bigint; off: number; type: number; nodeid?: number }[] = [];
  let p = 0;
  while (p < b.length) {
    const nodeid = plus ? Number(b.readBigUInt64LE(p)) : undefined;
    if (plus) p += 128;
    const namelen = b.readUInt32LE(p + 16);
    out.push({ ino: b.readBigUInt64LE(p), off: Number(b.readBigUInt64LE(p + 8)), type: b.readUInt32LE(p + 20), name: b.toString('utf8', p + 24, p + 24 + namelen), nodeid });
    p += (24 + namelen + 7) & ~7;
  }
  return out;
}
