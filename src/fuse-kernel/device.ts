// The /dev/fuse connection a session reads requests from and writes replies to, behind the
// few calls the session and the passthrough policy make, so a test can stand a fake in for it
// (test/lib/fake-fuse.ts) and drive the whole transport without a mount.
import fs from 'node:fs';
import type { FuseDeviceAddon, FusePollHandle, FuseRingHandle } from '../host/native';

export interface FuseDevice {
  /**
   * One whole request into `buf`: its length; -EAGAIN when none waits; else -errno (ENODEV: the
   * mount is gone; ENOENT, EINTR: a request interrupted before it was read). With spinNs, the
   * device may ask again for up to that long before saying EAGAIN.
   */
  read(buf: Buffer, spinNs: number): number;
  /** A reply or a notification, now, from this thread: 0 or -errno. */
  write(buf: Buffer, len: number): number;
  /** A notification from the thread pool (the kernel may hold a lock a pending request needs). */
  writeAsync(buf: Buffer): void;
  /** Calls `onEvents` on this thread while requests wait: bit 1 readable, bit 2 hung up. */
  watch(onEvents: (events: number) => void): void;
  /** FUSE_DEV_IOC_BACKING_OPEN for FOPEN_PASSTHROUGH: an id > 0, or -errno. */
  backingOpen(fd: number): number;
  backingClose(id: number): void;
  /** Stops watching and closes the connection; later writes are dropped. */
  close(): void;
}

/**
 * FUSE over io_uring on a connection: requests come from the ring (once registered), replies
 * go back through it; what it does not hold (FORGET, INTERRUPT, the first requests,
 * notifications) stays on /dev/fuse, which the ring writes to for them.
 */
export interface FuseRing extends FuseDevice {
  /** Entries per queue times queues, for the logs. */
  readonly entries: number;
  /** Requests that came through the ring. */
  readonly served: number;
  /** Registers the entries (after INIT is answered): how many the kernel took, or -errno. */
  register(): number;
  /**
   * Sends the replies written since the last read: the ring sends them with the next read
   * (one syscall for both), so a reply written outside the read loop needs this.
   */
  flush(): number;
}

/** The real device: an fd on /dev/fuse, watched on the libuv loop by our addon. */
export class DevFuse implements FuseDevice {
  private poller: FusePollHandle | undefined;

  constructor(private readonly addon: FuseDeviceAddon, private fd: number) {}

  read(buf: Buffer, spinNs: number): number {
    return this.fd < 0 ? -this.addon.constants.ENODEV : this.addon.read(this.fd, buf, buf.length, spinNs);
  }

  write(buf: Buffer, len: number): number {
    return this.fd < 0 ? -this.addon.constants.ENODEV : this.addon.write(this.fd, buf, len);
  }

  writeAsync(buf: Buffer): void {
    const fd = this.fd;
    if (fd >= 0) fs.write(fd, buf, 0, buf.length, null, () => undefined);
  }

  watch(onEvents: (events: number) => void): void {
    const p = this.addon.poll(this.fd, onEvents);
    if (typeof p === 'number') throw new Error(`cannot watch /dev/fuse (libuv error ${p})`);
    this.poller = p;
  }

  backingOpen(fd: number): number {
    return this.fd < 0 ? -this.addon.constants.ENODEV : this.addon.backingOpen(this.fd, fd);
  }

  /** A ring of `queues` x `depth` entries on this connection, each taking `payload` bytes; or -errno. */
  ring(queues: number, depth: number, payload: number): RingFuse | number {
    if (this.fd < 0) return -this.addon.constants.ENODEV;
    const h = this.addon.uringCreate(this.fd, queues, depth, payload);
    return typeof h === 'number' ? h : new RingFuse(this.addon, h, this, queues * depth);
  }

  backingClose(id: number): void {
    if (this.fd >= 0) this.addon.backingClose(this.fd, id);
  }

  close(): void {
    if (this.poller) { this.addon.pollStop(this.poller); this.poller = undefined; }
    if (this.fd >= 0) { fs.closeSync(this.fd); this.fd = -1; }
  }
}

/** The real ring (native/fuse_uring.c), watched on the libuv loop as the device is. */
export class RingFuse implements FuseRing {
  served = 0;
  private poller: FusePollHandle | undefined;
  private closed = false;

  constructor(private readonly addon: FuseDeviceAddon, private readonly h: FuseRingHandle, private readonly dev: DevFuse, readonly entries: number) {}

  register(): number {
    return this.addon.uringRegister(this.h);
  }

  read(buf: Buffer, spinNs: number): number {
    const n = this.addon.uringRead(this.h, buf, buf.length, spinNs);
    if (n >= 0) this.served++;
    return n;
  }

  write(buf: Buffer, len: number): number {
    return this.addon.uringWrite(this.h, buf, len);
  }

  flush(): number {
    return this.addon.uringFlush(this.h);
  }

  writeAsync(buf: Buffer): void {
    this.dev.writeAsync(buf);
  }

  watch(onEvents: (events: number) => void): void {
    const p = this.addon.poll(this.addon.uringFd(this.h), onEvents);
    if (typeof p === 'number') throw new Error(`cannot watch the FUSE io_uring (libuv error ${p})`);
    this.poller = p;
  }

  backingOpen(fd: number): number {
    return this.dev.backingOpen(fd);
  }

  backingClose(id: number): void {
    this.dev.backingClose(id);
  }

  /** Stops watching and closes the ring (the device stays open: the session closes it). */
  close(): void {
    if (this.poller) { this.addon.pollStop(this.poller); this.poller = undefined; }
    if (!this.closed) { this.closed = true; this.addon.uringClose(this.h); }
  }
}
