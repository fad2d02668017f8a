// The kernel transport: overlayd speaks the FUSE protocol on /dev/fuse itself, so everything
// the kernel says reaches the core (caller uid/gid/pid and umask, ns times, 64-bit inode
// numbers, create and rename flags, fallocate, lseek, readdirplus) and reads and writes of
// regular files bypass the daemon entirely where the kernel offers passthrough.
//
// One thread: the device is non-blocking and watched on the libuv loop (native poll); each
// wake-up reads requests until none waits, answers the synchronous ones at once and the data
// ones (read, write, fsync) when the thread pool is done; one that needs a copy-up of file data
// waits for the worker threads doing it and is then handled again. Notifications go out from the pool,
// never from this thread, since the kernel may hold a lock a pending request of ours needs.
import fs from 'node:fs';
import { shown, toBinary } from '../host/bytes';
import { C, fuseDevice, sys, type FuseDeviceAddon, type FusePollHandle } from '../host/native';
import { S_IFDIR, S_IFMT, S_IFREG, lstatAt, type Timespec } from '../host/stat';
import type { Caller } from '../core/config';
import { CopyUpPending } from '../core/copyup';
import { E, FsError, errnoOf } from '../core/errors';
import { joinPath } from '../core/lookup';
import type { Attr, Overlay } from '../core/overlay';
import type { DirEntry } from '../core/readdir';
import type { FuseMountOptions } from '../fuse/adapter';
import type { Logger } from '../log/logger';
import type { Transport, TransportCounters } from '../transport';
import { Node, NodeTable, type Backing } from './inodes';
import { CAP_FSETID, CAP_SYS_ADMIN, callerCapable, callerDying, callerInGroup, hasCapSysAdmin, inInitUserNs } from './caller';
import { escapeOption, fusermountMount, fusermountUnmount, fusermountUnusable } from './fusermount';
import {
  FATTR, FOPEN, INIT, INIT2, KERNEL_MINOR, KERNEL_MINOR_KNOWN, KERNEL_VERSION, NOTIFY, OP_NAMES, Op, cstring, putU64, s64, u64,
} from './protocol';
import {
  ATTR_OUT, DIRENT_BASE, ENTRY_OUT, INIT_OUT, IN_HEADER, OPEN_OUT, OUT_HEADER, STATFS_OUT, decodeDev, direntSize,
  encodeAttr as putAttr, encodeEntry as putEntry, validity, type Validity,
} from './abi';
import { describe, type Described } from './describe';

/** What a handler returns: a payload length already in `out`, or that it answers later/never. */
const LATER = -1;
const NEVER = -2;
/** The handler wrote its reply itself. */
const REPLIED = -3;

const MAX_WRITE = 1 << 20;
const MAX_PAGES = MAX_WRITE / 4096;
const READ_BUF = MAX_WRITE + 4096;
/** Requests handled per wake-up before the loop gets a turn (level-triggered: it comes back). */
const BATCH = 64;
/**
 * Microseconds to keep asking for the next request after a batch (-o spin=): a waiting caller
 * usually sends it within that, and waking an idle CPU costs more (see native/overlayd_fuse.c).
 */
const SPIN_US = 100;
/** copy_file_range per request; userspace loops over short copies. */
const COPY_CHUNK = 16 << 20;
/**
 * Default entry, attribute and negative timeouts (seconds). Every change to the layers comes
 * through this mount, and the kernel updates its own caches for each request it sends; where
 * one of ours changes what another name or inode shows, we tell it (notifications), so the
 * caches stay exact however long they live. (Changing the layers behind a mounted overlay is
 * undefined, as with the kernel's overlay.)
 */
const CACHE_TIMEOUT = 86400;

const OVERLAYFS_MAGIC = 0x794c7630;
const FUSE_MAGIC = 0x65735546;

const DT_DIR = 4;

/** Requests libfuse lets through even when allow_root denies everyone else. */
const ALWAYS_ALLOWED = new Set<number>([
  Op.INIT, Op.READ, Op.WRITE, Op.FSYNC, Op.RELEASE, Op.READDIR, Op.FSYNCDIR, Op.RELEASEDIR, Op.NOTIFY_REPLY,
  Op.READDIRPLUS, Op.FORGET, Op.BATCH_FORGET, Op.INTERRUPT, Op.DESTROY, Op.FLUSH,
]);

interface DirHandle {
  node: Node;
  /** The listing; d_ino filled in when first needed (READDIRPLUS learns it from the attributes). */
  entries: (DirEntry & { ino?: bigint })[] | undefined;
  /** Overlay.generation when the listing was made. */
  listedAt: number;
  /** ino of "." and "..", looked up when first listed. */
  self?: bigint;
  parent?: bigint;
}

interface OpenFile {
  node: Node;
  /** Bound to the node's backing file (FOPEN_PASSTHROUGH). */
  passthrough: boolean;
}

/** Counters for `overlayd status` and the tests. */
export interface KernelCounters {
  ops: number;
  reads: number;
  writes: number;
  passthroughOpens: number;
  cachedOpens: number;
  nodes: number;
  /** Notifications sent to keep the kernel's caches exact. */
  invalidations: number;
  /** File handles the kernel holds (RELEASE not yet seen), directory handles likewise. */
  openFiles: number;
  openDirs: number;
  /** Passthrough backing ids registered with the kernel and not yet closed. */
  backingIds: number;
  /** Nodes bound to a backing file (refs > 0): equals backingIds unless an id leaked. */
  backedNodes: number;
}

export class KernelTransport implements Transport {
  ops = 0;
  readonly stats: KernelCounters = { ops: 0, reads: 0, writes: 0, passthroughOpens: 0, cachedOpens: 0, nodes: 0, invalidations: 0, openFiles: 0, openDirs: 0, backingIds: 0, backedNodes: 0 };
  /** Whether the kernel took FUSE_PASSTHROUGH at INIT. */
  passthrough = false;
  /** Whether the kernel caches writes (FUSE_WRITEBACK_CACHE), where there is no passthrough. */
  writeback = false;

  private readonly dev: FuseDeviceAddon;
  private fd = -1;
  private poller: FusePollHandle | undefined;
  private readonly table = new NodeTable();
  private readonly files = new Map<number, OpenFile>();
  private readonly dirs = new Map<number, DirHandle>();
  private nextDir = 1;
  private readonly rbuf = Buffer.allocUnsafe(READ_BUF);
  /** Synchronous replies are built here and written before the next request is read. */
  private out = Buffer.allocUnsafe(OUT_HEADER + 128 * 1024);
  private readonly entryValid: Validity;
  private readonly attrValid: Validity;
  private readonly negValid: Validity;
  private readonly debug: boolean;
  /** The current request's names and arguments, for its debug line (only when debug is on). */
  private args: Described | undefined;
  private readonly daemonUid = process.getuid?.() ?? 0;
  private readonly daemonGid = process.getgid?.() ?? 0;
  private initDone: ((err?: Error) => void) | undefined;
  private ended = false;
  private endWaiters: (() => void)[] = [];
  private passthroughWarned = false;
  /**
   * -o passthrough= (else env OVERLAYD_PASSTHROUGH): `off`; `all` also binds readers of lower
   * files on a writable mount (faster, but such a reader keeps reading the lower file after
   * another fd copies it up, where the kernel's overlay follows the copy); by default (`upper`)
   * they go through the daemon.
   */
  private readonly passthroughAsked: 'off' | 'upper' | 'all';
  /** mount(2) of FUSE takes CAP_SYS_ADMIN (in a user namespace, that namespace's). */
  private readonly privileged = hasCapSysAdmin();
  /**
   * FUSE_DEV_IOC_BACKING_OPEN takes CAP_SYS_ADMIN in the initial user namespace: without it no
   * backing file can be registered, so passthrough is not even asked for.
   */
  private readonly passthroughMode: 'off' | 'upper' | 'all';
  /** Mounted through fusermount3 (not privileged, or mount(2) said EPERM): unmounted through it too. */
  viaFusermount = false;
  private stackDepth = 1;
  private readonly cacheListings: boolean;

  // The request being handled (synchronous handlers only).
  private unique = 0;
  private nodeid = 0;
  private uid = 0;
  private gid = 0;
  private pid = 0;
  private len = 0;
  /** The reply is a cached miss: the caller sees ENOENT (for the debug log). */
  private negative = false;
  private readonly spinNs: number;
  /** Requests being answered from the thread pool: the caller waits on them, not on us. */
  private inFlight = 0;
  /** Requests waiting for a copy-up (see park), by unique: INTERRUPT lets a dying caller go. */
  private readonly parked = new Map<number, { pid: number; abort: AbortController }>();

  constructor(private readonly overlay: Overlay, private readonly mountpoint: string, private readonly opts: FuseMountOptions, private readonly log: Logger) {
    this.dev = fuseDevice();
    this.entryValid = validity(opts.entryTimeout ?? CACHE_TIMEOUT);
    this.attrValid = validity(opts.attrTimeout ?? CACHE_TIMEOUT);
    this.negValid = validity(opts.negativeTimeout ?? CACHE_TIMEOUT);
    this.cacheListings = (opts.attrTimeout ?? CACHE_TIMEOUT) > 0;
    this.spinNs = (opts.spin ?? SPIN_US) * 1000;
    const env = process.env.OVERLAYD_PASSTHROUGH;
    this.passthroughAsked = opts.passthrough ?? (env === '0' || env === 'off' ? 'off' : env === 'all' ? 'all' : 'upper');
    this.passthroughMode = this.privileged && inInitUserNs() ? this.passthroughAsked : 'off';
    this.debug = log.isLevelEnabled('debug');
    // Requests that need a copy-up of file data wait for it off the loop (see park).
    overlay.backgroundWork = true;
    overlay.onCopyUp = (path) => {
      const node = this.table.find(path);
      if (node) this.invalAttr(node);
    };
  }

  /** The mount(2) data string and flags, for logs and status. */
  fuseOptions(): string[] {
    if (this.viaFusermount) return ['fusermount3', ...this.helperOptions()];
    return [...this.mountData('N').split(','), ...this.flagNames()];
  }

  /**
   * fusermount3's -o for this mount: it adds fd, rootmode, user_id and group_id itself, takes
   * fsname and subtype (so the type is fuse.overlayd, as with mount(2)), and for a user always
   * mounts nosuid,nodev (it ignores suid and dev with a warning).
   */
  private helperOptions(): string[] {
    const o = this.opts;
    const out = [`fsname=${escapeOption(o.fsname)}`, 'subtype=overlayd'];
    if (o.defaultPermissions) out.push('default_permissions');
    if (o.allowOther || o.allowRoot) out.push('allow_other');
    const f = this.mountFlags();
    const c = this.dev.constants;
    out.push(...this.flagNames());
    if (!(f & c.MS_RDONLY)) out.push('rw');
    if (this.daemonUid === 0) {
      // root's fusermount3 starts from nosuid,nodev too, but lets them be cleared.
      if (!(f & c.MS_NOSUID)) out.push('suid');
      if (!(f & c.MS_NODEV)) out.push('dev');
    }
    return out;
  }

  private flagNames(): string[] {
    const names: string[] = [];
    const f = this.mountFlags();
    const c = this.dev.constants;
    if (f & c.MS_RDONLY) names.push('ro');
    if (f & c.MS_NOSUID) names.push('nosuid');
    if (f & c.MS_NODEV) names.push('nodev');
    if (f & c.MS_NOEXEC) names.push('noexec');
    if (f & c.MS_NOATIME) names.push('noatime');
    if (f & c.MS_SYNCHRONOUS) names.push('sync');
    if (f & c.MS_DIRSYNC) names.push('dirsync');
    return names;
  }

  private mountData(fd: number | string): string {
    const o = this.opts;
    const data = [`fd=${fd}`, 'rootmode=40000', `user_id=${this.daemonUid}`, `group_id=${this.daemonGid}`];
    if (o.defaultPermissions) data.push('default_permissions');
    // allow_root is allow_other in the kernel, narrowed here (see ALWAYS_ALLOWED).
    if (o.allowOther || o.allowRoot) data.push('allow_other');
    return data.join(',');
  }

  /** VFS flags: libfuse's defaults (nosuid, nodev) unless the options say otherwise. */
  private mountFlags(): number {
    const c = this.dev.constants;
    let flags = c.MS_NOSUID | c.MS_NODEV;
    for (const x of this.opts.extra) {
      switch (x) {
        case 'ro': flags |= c.MS_RDONLY; break;
        case 'rw': flags &= ~c.MS_RDONLY; break;
        case 'nosuid': flags |= c.MS_NOSUID; break;
        case 'suid': flags &= ~c.MS_NOSUID; break;
        case 'nodev': flags |= c.MS_NODEV; break;
        case 'dev': flags &= ~c.MS_NODEV; break;
        case 'noexec': flags |= c.MS_NOEXEC; break;
        case 'exec': flags &= ~c.MS_NOEXEC; break;
        case 'noatime': flags |= c.MS_NOATIME; break;
        case 'sync': flags |= c.MS_SYNCHRONOUS; break;
        case 'dirsync': flags |= c.MS_DIRSYNC; break;
        default: break; // libfuse-only options (nonempty, ...) mean nothing to mount(2)
      }
    }
    if (this.overlay.readonly) flags |= c.MS_RDONLY;
    return flags;
  }

  /**
   * Mounts, and resolves once the kernel's INIT is answered, i.e. the mount serves. With
   * CAP_SYS_ADMIN: /dev/fuse and mount(2) here; without it (or if mount(2) says EPERM, as in a
   * user namespace), through fusermount3, as libfuse does; the device is served the same way.
   */
  async mount(): Promise<void> {
    this.stackDepth = this.layerStackDepth();
    if (this.passthroughMode === 'off' && this.passthroughAsked !== 'off') {
      this.log.info('no CAP_SYS_ADMIN (in the initial user namespace): FUSE passthrough is off, file data goes through the daemon');
    }
    let fd = -1;
    if (this.privileged) {
      fd = this.dev.openDevice();
      if (fd < 0) throw new FsError(-fd, 'open', '/dev/fuse');
      const r = this.dev.mount(this.opts.fsname, this.mountpoint, 'fuse.overlayd', this.mountFlags(), this.mountData(fd));
      if (r < 0) {
        fs.closeSync(fd);
        fd = -1;
        if (r !== -E.EPERM || fusermountUnusable() !== undefined) throw new FsError(-r, 'mount', this.mountpoint);
        this.log.info({ mountpoint: this.mountpoint }, 'mount(2) refused (EPERM); mounting through fusermount3');
      }
    }
    if (fd < 0) {
      const unusable = fusermountUnusable();
      if (unusable !== undefined) throw new Error(`a mount without CAP_SYS_ADMIN goes through fusermount3, but ${unusable}`);
      if (this.daemonUid !== 0) {
        this.log.info('mounted by a user: nosuid,nodev (fusermount3 allows no setuid files or devices on a user\'s mount)');
      }
      fd = await fusermountMount(this.mountpoint, this.helperOptions());
      this.viaFusermount = true;
    }
    this.fd = fd;
    const p = this.dev.poll(fd, (ev) => this.onEvents(ev));
    if (typeof p === 'number') {
      if (this.viaFusermount) await fusermountUnmount(this.mountpoint, true);
      else sys.umount2(toBinary(this.mountpoint), C.MNT_DETACH);
      fs.closeSync(fd);
      this.fd = -1;
      throw new Error(`cannot watch /dev/fuse (libuv error ${p})`);
    }
    this.poller = p;
    return new Promise((resolve, reject) => {
      this.initDone = (err) => (err ? reject(err) : resolve());
    });
  }

  /**
   * Unmounts; EBUSY (a process still inside) is returned to the caller to decide. A mount made
   * through fusermount3 is unmounted through `fusermount3 -u [-z]`, a child process this one
   * never waits for synchronously (the helper stats the mountpoint, which we serve).
   */
  async unmount(lazy = false): Promise<number> {
    if (!this.viaFusermount) return sys.umount2(toBinary(this.mountpoint), lazy ? C.MNT_DETACH : 0);
    const r = await fusermountUnmount(this.mountpoint, lazy);
    if (r.rc !== 0 && r.rc !== -E.EBUSY) this.log.warn({ mountpoint: this.mountpoint, errno: -r.rc, fusermount3: r.message }, 'fusermount3 -u failed');
    return r.rc;
  }

  /** Resolves when the kernel ends the session (unmounted, aborted). */
  whenEnded(): Promise<void> {
    if (this.ended) return Promise.resolve();
    return new Promise((resolve) => this.endWaiters.push(resolve));
  }

  /** Stops serving and closes the device (after unmount, or to give up). */
  close(): void {
    this.end();
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    if (this.poller) { this.dev.pollStop(this.poller); this.poller = undefined; }
    for (const [id, f] of this.files) {
      try { this.overlay.release(id); } catch { /* already gone */ }
      if (f.passthrough && f.node.backing) this.dropBacking(f.node);
    }
    this.files.clear();
    this.dirs.clear();
    if (this.fd >= 0) { fs.closeSync(this.fd); this.fd = -1; }
    this.stats.nodes = this.table.size;
    this.log.info({ counters: this.stats }, 'FUSE session ended');
    this.initDone?.(new Error('the kernel ended the session before INIT'));
    this.initDone = undefined;
    for (const w of this.endWaiters.splice(0)) w();
  }

  /** 1 + the deepest stacking under any layer (a layer on overlayfs or FUSE is itself stacked). */
  private layerStackDepth(): number {
    const o = new Float64Array(10);
    for (const l of this.overlay.stack.layers) {
      if (sys.fstatfs(l.fd, o) === 0 && (o[8] === OVERLAYFS_MAGIC || o[8] === FUSE_MAGIC)) return 2;
    }
    return 1;
  }

  // ---- the request loop ----

  private onEvents(ev: number): void {
    if (this.ended) return;
    for (let i = 0; i < BATCH; i++) {
      // No spinning while the thread pool answers a request: its caller sends nothing meanwhile.
      const n = this.dev.read(this.fd, this.rbuf, this.rbuf.length, this.inFlight === 0 ? this.spinNs : 0);
      if (n < 0) {
        if (n === -this.dev.constants.EAGAIN) {
          if (ev & 2) this.end();
          return;
        }
        if (n === -E.ENOENT || n === -E.EINTR) continue; // a request interrupted before we read it
        if (n !== -this.dev.constants.ENODEV) this.log.error({ errno: -n }, 'reading /dev/fuse failed; ending the session');
        this.end();
        return;
      }
      this.dispatch(n);
      if (this.ended) return;
    }
  }

  private dispatch(n: number): void {
    const b = this.rbuf;
    if (n < IN_HEADER) return;
    const len = Math.min(b.readUInt32LE(0), n);
    const opcode = b.readUInt32LE(4);
    this.unique = u64(b, 8);
    this.nodeid = u64(b, 16);
    this.uid = b.readUInt32LE(24);
    this.gid = b.readUInt32LE(28);
    this.pid = b.readUInt32LE(32);
    this.len = len - b.readUInt16LE(36) * 8;
    this.ops++;
    this.stats.ops++;
    const unique = this.unique;
    const t0 = this.debug ? process.hrtime.bigint() : 0n;
    if (this.debug) this.args = describe(opcode, b, this.len);
    let result: number;
    if (this.opts.allowRoot && this.uid !== 0 && this.uid !== this.daemonUid && !ALWAYS_ALLOWED.has(opcode)) {
      this.replyError(unique, E.EACCES);
      return;
    }
    try {
      result = this.handle(opcode);
    } catch (err) {
      if (err instanceof CopyUpPending) {
        this.park(err, n);
        return;
      }
      const errno = errnoOf(err);
      if (!(err instanceof FsError) && errno === E.EIO) this.log.error({ op: OP_NAMES[opcode] ?? opcode, err: shown(String(err)) }, 'request failed unexpectedly');
      if (this.debug) this.trace(opcode, t0, -errno);
      this.replyError(unique, errno);
      return;
    }
    if (result >= 0) this.reply(unique, result);
    if (this.debug && result !== LATER) this.trace(opcode, t0, this.negative ? -E.ENOENT : 0);
    this.negative = false;
  }

  private trace(opcode: number, t0: bigint, result: number): void {
    this.log.debug({ op: OP_NAMES[opcode] ?? opcode, node: this.nodeid, ...this.args, result, us: Number((process.hrtime.bigint() - t0) / 1000n) }, 'fuse op');
  }

  private handle(op: number): number {
    switch (op) {
      case Op.LOOKUP: return this.lookup();
      case Op.FORGET: this.forget(this.nodeid, u64(this.rbuf, IN_HEADER)); return NEVER;
      case Op.BATCH_FORGET: return this.batchForget();
      case Op.GETATTR: return this.getattr();
      case Op.SETATTR: return this.setattr();
      case Op.READLINK: return this.readlink();
      case Op.SYMLINK: return this.symlink();
      case Op.MKNOD: return this.mknod();
      case Op.MKDIR: return this.mkdir();
      case Op.UNLINK: return this.remove(false);
      case Op.RMDIR: return this.remove(true);
      case Op.RENAME: return this.rename(false);
      case Op.RENAME2: return this.rename(true);
      case Op.LINK: return this.link();
      case Op.OPEN: return this.open();
      case Op.CREATE: return this.create();
      case Op.READ: return this.read();
      case Op.WRITE: return this.write();
      case Op.RELEASE: return this.release();
      case Op.FLUSH: return 0;
      case Op.FSYNC: return this.fsync();
      case Op.STATFS: return this.statfs();
      case Op.SETXATTR: return this.setxattr();
      case Op.GETXATTR: return this.getxattr(false);
      case Op.LISTXATTR: return this.getxattr(true);
      case Op.REMOVEXATTR: return this.removexattr();
      case Op.ACCESS: return this.access();
      case Op.OPENDIR: return this.opendir();
      case Op.READDIR: return this.readdir(false);
      case Op.READDIRPLUS: return this.readdir(true);
      case Op.RELEASEDIR: this.dirs.delete(u64(this.rbuf, IN_HEADER)); return 0;
      case Op.FSYNCDIR: return this.fsyncdir();
      case Op.FALLOCATE: return this.fallocate();
      case Op.LSEEK: return this.lseek();
      case Op.COPY_FILE_RANGE: return this.copyFileRange();
      case Op.INIT: return this.init();
      case Op.INTERRUPT: return this.interrupt();
      case Op.DESTROY: setImmediate(() => this.end()); return 0;
      default: throw new FsError(E.ENOSYS, OP_NAMES[op] ?? `op ${op}`);
    }
  }

  // ---- replies ----

  /** Room for `n` payload bytes in `out`, grown if needed. */
  private room(n: number): Buffer {
    if (this.out.length < OUT_HEADER + n) this.out = Buffer.allocUnsafe(OUT_HEADER + n);
    return this.out;
  }

  private reply(unique: number, payload: number): void {
    const b = this.out;
    b.writeUInt32LE(OUT_HEADER + payload, 0);
    b.writeInt32LE(0, 4);
    putU64(b, 8, unique);
    this.send(b, OUT_HEADER + payload);
  }

  private replyError(unique: number, errno: number): void {
    const b = Buffer.allocUnsafe(OUT_HEADER);
    b.writeUInt32LE(OUT_HEADER, 0);
    b.writeInt32LE(-errno, 4);
    putU64(b, 8, unique);
    this.send(b, OUT_HEADER);
  }

  /** A reply whose payload sits in `b` after OUT_HEADER bytes left free for the header. */
  private replyData(unique: number, b: Buffer, payload: number): void {
    b.writeUInt32LE(OUT_HEADER + payload, 0);
    b.writeInt32LE(0, 4);
    putU64(b, 8, unique);
    this.send(b, OUT_HEADER + payload);
  }

  private send(b: Buffer, n: number): void {
    if (this.fd < 0) return;
    const r = this.dev.write(this.fd, b, n);
    // ENOENT: the request was interrupted and is gone; ENODEV: the mount is gone.
    if (r < 0 && r !== -E.ENOENT && r !== -this.dev.constants.ENODEV) this.log.warn({ errno: -r }, 'writing a FUSE reply failed');
  }

  /** Runs `work` (async) and answers with what it resolves to: a payload length in `b`, or an errno. */
  private later(opcode: number, work: () => Promise<{ b: Buffer; n: number }>): number {
    const unique = this.unique;
    const t0 = this.debug ? process.hrtime.bigint() : 0n;
    const nodeid = this.nodeid;
    const args = this.args;
    this.inFlight++;
    work().then(
      ({ b, n }) => {
        this.inFlight--;
        this.replyData(unique, b, n);
        // read and write report the bytes moved, as their syscalls do
        const result = opcode === Op.READ ? n : opcode === Op.WRITE ? b.readUInt32LE(OUT_HEADER) : 0;
        if (this.debug) this.log.debug({ op: OP_NAMES[opcode], node: nodeid, ...args, result, us: Number((process.hrtime.bigint() - t0) / 1000n) }, 'fuse op');
      },
      (err: unknown) => {
        this.inFlight--;
        const errno = errnoOf(err);
        this.replyError(unique, errno);
        if (this.debug) this.log.debug({ op: OP_NAMES[opcode], node: nodeid, ...args, result: -errno }, 'fuse op');
      },
    );
    return LATER;
  }

  /**
   * The request in rbuf (n bytes) waits for a copy-up, off the loop, and is handled again from
   * the start once it is over: the core changed nothing it can see before saying so. Its
   * outcome is the copy-up's error if that failed (for a request that needed the copy).
   */
  private park(p: CopyUpPending, n: number): void {
    const req = Buffer.from(this.rbuf.subarray(0, n));
    const unique = this.unique;
    const abort = new AbortController();
    this.parked.set(unique, { pid: this.pid, abort });
    this.inFlight++;
    p.wait(abort.signal).then(
      () => {
        this.parked.delete(unique);
        this.inFlight--;
        if (this.ended) return;
        // Nothing else runs on this thread now: rbuf is free until the next read. The request
        // was counted when it first came.
        req.copy(this.rbuf);
        this.ops--;
        this.stats.ops--;
        this.dispatch(n);
      },
      (err: unknown) => {
        this.parked.delete(unique);
        this.inFlight--;
        this.replyError(unique, errnoOf(err));
      },
    );
  }

  /**
   * FUSE_INTERRUPT of a request waiting for a copy-up: the kernel sends it for any signal, but
   * its overlay's copy-up stops only for a fatal one (a killed caller), and so does this: a
   * caller merely interrupted by a handled signal keeps waiting, as the kernel's would.
   */
  private interrupt(): number {
    const p = this.parked.get(u64(this.rbuf, IN_HEADER));
    if (p && callerDying(p.pid)) p.abort.abort();
    return NEVER;
  }

  /** FUSE_NOTIFY_INVAL_ENTRY: the kernel looks parent/name up again when next used. */
  private invalEntry(parent: Node, name: string): void {
    const nb = Buffer.from(name, 'latin1');
    const b = Buffer.alloc(OUT_HEADER + 16 + nb.length + 1);
    b.writeUInt32LE(b.length, 0);
    b.writeInt32LE(NOTIFY.INVAL_ENTRY, 4);
    putU64(b, OUT_HEADER, parent.id);
    b.writeUInt32LE(nb.length, OUT_HEADER + 8);
    nb.copy(b, OUT_HEADER + 16);
    this.stats.invalidations++;
    this.notify(b);
  }

  /**
   * FUSE_NOTIFY_INVAL_INODE for the attributes only (offset -1 keeps the page cache). Sent at
   * once, before the reply of the request that caused it, so the caller's next stat sees the
   * change: for attributes alone the kernel takes no lock a pending request could hold.
   */
  private invalAttr(node: Node): void {
    const b = Buffer.alloc(OUT_HEADER + 24);
    b.writeUInt32LE(b.length, 0);
    b.writeInt32LE(NOTIFY.INVAL_INODE, 4);
    putU64(b, OUT_HEADER, node.id);
    b.writeBigInt64LE(-1n, OUT_HEADER + 8);
    this.stats.invalidations++;
    if (this.fd >= 0) this.send(b, b.length);
  }

  /**
   * Sends a notification from the thread pool once the current reply is out: the kernel may
   * hold a lock that a request still waiting for our answer needs.
   */
  private notify(b: Buffer): void {
    const fd = this.fd;
    if (fd < 0) return;
    setImmediate(() => {
      if (this.fd !== fd) return;
      fs.write(fd, b, 0, b.length, null, () => undefined);
    });
  }

  /** The node stops standing for its names; the kernel is told to forget its dentries. */
  private retire(node: Node): void {
    for (const l of node.links) this.invalEntry(l.parent, l.name);
    this.table.retire(node);
  }

  // ---- helpers ----

  private node(id = this.nodeid): Node {
    const n = this.table.get(id);
    if (!n) throw new FsError(E.ESTALE, 'node', String(id));
    return n;
  }

  private pathOf(node: Node): string {
    const p = this.table.pathOf(node);
    if (p === undefined) throw new FsError(E.ENOENT, 'path', `node ${node.id}`);
    return p;
  }

  private childPath(parent: Node, name: string): string {
    if (name.length === 0 || name.includes('/')) throw new FsError(E.EINVAL, 'name', name);
    return joinPath(this.pathOf(parent), name);
  }

  private caller(umask?: number): Caller {
    return { uid: this.uid, gid: this.gid, pid: this.pid, umask };
  }

  private name(off: number): string {
    return cstring(this.rbuf, off, this.len)[0];
  }

  /** Attributes of a node: by its path, else (unlinked but open) through one of its files. */
  private attrOf(node: Node, fh?: number): Attr {
    const path = this.table.pathOf(node);
    if (path !== undefined) {
      try {
        const a = this.overlay.getattr(path);
        this.table.refresh(node, a);
        node.ino = a.ino;
        return a;
      } catch (err) {
        if (errnoOf(err) !== E.ENOENT || (!node.files && fh === undefined)) throw err;
      }
    }
    const id = fh !== undefined && this.files.get(fh)?.node === node ? fh : node.anyFile();
    if (id === undefined) throw new FsError(E.ENOENT, 'getattr', `node ${node.id}`);
    return this.overlay.fgetattr(id);
  }

  /** entry_out for parent/name (just resolved to `attr`) into out at OUT_HEADER; counts the lookup. */
  private entryReply(parent: Node, name: string, attr: Attr, off = OUT_HEADER): number {
    const node = this.table.entry(parent, name, attr);
    putEntry(this.room(off - OUT_HEADER + ENTRY_OUT), off, node.id, attr, this.entryValid, this.attrValid);
    node.lookups++;
    return ENTRY_OUT;
  }

  private forget(id: number, n: number): void {
    const node = this.table.get(id);
    if (node) this.table.forget(node, n);
  }

  // ---- operations ----

  private init(): number {
    const b = this.rbuf;
    const major = b.readUInt32LE(IN_HEADER);
    const minor = b.readUInt32LE(IN_HEADER + 4);
    const maxReadahead = b.readUInt32LE(IN_HEADER + 8);
    const flags = b.readUInt32LE(IN_HEADER + 12);
    const flags2 = flags & INIT.INIT_EXT ? b.readUInt32LE(IN_HEADER + 16) : 0;
    const out = this.room(INIT_OUT);
    out.fill(0, OUT_HEADER, OUT_HEADER + INIT_OUT);
    out.writeUInt32LE(KERNEL_VERSION, OUT_HEADER);
    if (major !== KERNEL_VERSION) {
      // The kernel retries INIT with our major when it can; anything else is the end.
      if (major < KERNEL_VERSION) throw new FsError(E.EPROTO, 'init', `kernel protocol ${major}.${minor}`);
      out.writeUInt32LE(KERNEL_MINOR, OUT_HEADER + 4);
      return 8;
    }
    const want = INIT.ASYNC_READ | INIT.ATOMIC_O_TRUNC | INIT.BIG_WRITES | INIT.AUTO_INVAL_DATA | INIT.DO_READDIRPLUS |
      INIT.READDIRPLUS_AUTO | INIT.ASYNC_DIO | INIT.PARALLEL_DIROPS | INIT.MAX_PAGES | INIT.CACHE_SYMLINKS | INIT.INIT_EXT;
    let outFlags = flags & want;
    let outFlags2 = 0;
    const offered = (flags & INIT.INIT_EXT) !== 0 && (flags2 & INIT2.PASSTHROUGH) !== 0;
    if (offered && this.passthroughMode !== 'off') {
      outFlags2 |= INIT2.PASSTHROUGH;
      this.passthrough = true;
    }
    // Where file data goes through the daemon, the kernel may gather small writes in its page
    // cache first (one inode has one of the two); every change comes through the mount, so its
    // cached sizes and times stay right.
    if (!this.passthrough && !this.overlay.readonly && (flags & INIT.WRITEBACK_CACHE) && this.opts.writeback !== false && process.env.OVERLAYD_WRITEBACK !== 'off') {
      outFlags |= INIT.WRITEBACK_CACHE;
      this.writeback = true;
    }
    // The kernel's minor where we know its layouts (7.40 ... 7.45); ours otherwise.
    out.writeUInt32LE(Math.min(Math.max(minor, KERNEL_MINOR), KERNEL_MINOR_KNOWN), OUT_HEADER + 4);
    out.writeUInt32LE(maxReadahead, OUT_HEADER + 8);
    out.writeUInt32LE(outFlags >>> 0, OUT_HEADER + 12);
    out.writeUInt16LE(64, OUT_HEADER + 16); // max_background
    out.writeUInt16LE(48, OUT_HEADER + 18); // congestion_threshold
    out.writeUInt32LE(MAX_WRITE, OUT_HEADER + 20);
    out.writeUInt32LE(1, OUT_HEADER + 24); // time_gran: nanoseconds
    out.writeUInt16LE(MAX_PAGES, OUT_HEADER + 28);
    out.writeUInt32LE(outFlags2 >>> 0, OUT_HEADER + 32);
    out.writeUInt32LE(this.passthrough ? this.stackDepth : 0, OUT_HEADER + 36);
    this.log.info({ kernel: `${major}.${minor}`, passthrough: this.passthrough, passthroughOffered: offered, writeback: this.writeback, maxWrite: MAX_WRITE, spinUs: this.spinNs / 1000 }, 'FUSE session initialised');
    if (!offered) this.log.info('the kernel offers no FUSE passthrough: file data goes through the daemon');
    const done = this.initDone;
    this.initDone = undefined;
    setImmediate(() => {
      this.raiseReadahead();
      done?.();
    });
    return INIT_OUT;
  }

  /**
   * Reads that go through the daemon arrive in readahead-sized requests; the kernel starts FUSE
   * mounts at 128 KiB (and INIT can only lower it). Raise it to max_write through the mount's
   * bdi, as an administrator would; found through mountinfo, never by touching the mount.
   */
  private raiseReadahead(): void {
    try {
      for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
        const f = line.split(' ');
        const mp = f[4]?.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
        const dash = f.indexOf('-');
        if (mp !== this.mountpoint || dash < 0 || f[dash + 1] !== 'fuse.overlayd') continue;
        fs.writeFileSync(`/sys/class/bdi/${f[2]}/read_ahead_kb`, String(MAX_WRITE / 1024));
      }
    } catch (err) {
      this.log.debug({ err: String(err) }, 'cannot raise the readahead of the mount');
    }
  }

  private lookup(): number {
    const parent = this.node();
    const name = this.name(IN_HEADER);
    const path = this.childPath(parent, name);
    let attr: Attr;
    try {
      attr = this.overlay.getattr(path);
    } catch (err) {
      if (errnoOf(err) === E.ENOENT && (this.negValid.sec > 0 || this.negValid.nsec > 0)) {
        putEntry(this.room(ENTRY_OUT), OUT_HEADER, 0, undefined, this.negValid, this.negValid);
        this.negative = true;
        return ENTRY_OUT;
      }
      throw err;
    }
    return this.entryReply(parent, name, attr);
  }

  private batchForget(): number {
    const b = this.rbuf;
    const count = b.readUInt32LE(IN_HEADER);
    for (let i = 0, off = IN_HEADER + 8; i < count && off + 16 <= this.len; i++, off += 16) this.forget(u64(b, off), u64(b, off + 8));
    return NEVER;
  }

  private attrReply(a: Attr): number {
    const b = this.room(ATTR_OUT);
    putU64(b, OUT_HEADER, this.attrValid.sec);
    b.writeUInt32LE(this.attrValid.nsec, OUT_HEADER + 8);
    b.writeUInt32LE(0, OUT_HEADER + 12);
    putAttr(b, OUT_HEADER + 16, a);
    return ATTR_OUT;
  }

  private getattr(): number {
    const node = this.node();
    const flags = this.rbuf.readUInt32LE(IN_HEADER);
    const fh = flags & 1 /* FUSE_GETATTR_FH */ ? u64(this.rbuf, IN_HEADER + 8) : undefined;
    return this.attrReply(this.attrOf(node, fh));
  }

  private setattr(): number {
    const b = this.rbuf;
    const node = this.node();
    const valid = b.readUInt32LE(IN_HEADER);
    const fh = valid & FATTR.FH ? u64(b, IN_HEADER + 8) : undefined;
    const ov = this.overlay;
    const path = this.table.pathOf(node);
    // A file with no name left (unlinked or renamed over while open) changes through a handle.
    const known = fh !== undefined && this.files.has(fh) ? fh : undefined;
    const handle = path === undefined ? known ?? node.anyFile() : undefined;
    if (path === undefined && handle === undefined) throw new FsError(E.ENOENT, 'setattr', `node ${node.id}`);
    const p = path as string;
    const h = handle as number;
    if (valid & (FATTR.UID | FATTR.GID)) {
      const uid = valid & FATTR.UID ? b.readUInt32LE(IN_HEADER + 76) : -1;
      const gid = valid & FATTR.GID ? b.readUInt32LE(IN_HEADER + 80) : -1;
      if (path === undefined) ov.fchown(h, uid, gid);
      else ov.chown(p, uid, gid);
    }
    if (valid & FATTR.MODE) {
      const mode = b.readUInt32LE(IN_HEADER + 68) & 0o7777;
      if (path === undefined) ov.fchmod(h, mode);
      else ov.chmod(p, mode);
    }
    if (valid & FATTR.SIZE) {
      const size = u64(b, IN_HEADER + 16);
      if (known !== undefined) ov.ftruncate(known, size);
      else if (path === undefined) ov.ftruncate(h, size);
      else ov.truncate(p, size);
    }
    if (valid & (FATTR.ATIME | FATTR.MTIME)) {
      const time = (set: number, now: number, secOff: number, nsecOff: number): Timespec => {
        if (!(valid & set)) return { sec: 0, nsec: C.UTIME_OMIT };
        if (valid & now) return { sec: 0, nsec: C.UTIME_NOW };
        return { sec: s64(b, secOff), nsec: b.readUInt32LE(nsecOff) };
      };
      const atime = time(FATTR.ATIME, FATTR.ATIME_NOW, IN_HEADER + 32, IN_HEADER + 56);
      const mtime = time(FATTR.MTIME, FATTR.MTIME_NOW, IN_HEADER + 40, IN_HEADER + 60);
      if (path === undefined) ov.futimens(h, atime, mtime);
      else ov.utimens(p, atime, mtime);
    }
    return this.attrReply(this.attrOf(node, fh));
  }

  private readlink(): number {
    const target = Buffer.from(this.overlay.readlink(this.pathOf(this.node())), 'latin1');
    const b = this.room(target.length);
    target.copy(b, OUT_HEADER);
    return target.length;
  }

  /** After a create: the new object's entry. */
  private created(parent: Node, name: string, path: string): number {
    return this.entryReply(parent, name, this.overlay.getattr(path));
  }

  private symlink(): number {
    const parent = this.node();
    const [name, next] = cstring(this.rbuf, IN_HEADER, this.len);
    const target = cstring(this.rbuf, next, this.len)[0];
    const path = this.childPath(parent, name);
    this.overlay.symlink(target, path, this.caller());
    return this.created(parent, name, path);
  }

  private mknod(): number {
    const b = this.rbuf;
    const parent = this.node();
    const mode = b.readUInt32LE(IN_HEADER);
    const [major, minor] = decodeDev(b.readUInt32LE(IN_HEADER + 4));
    const umask = b.readUInt32LE(IN_HEADER + 8);
    const name = this.name(IN_HEADER + 16);
    const path = this.childPath(parent, name);
    this.overlay.mknod(path, mode, major, minor, this.caller(umask));
    return this.created(parent, name, path);
  }

  private mkdir(): number {
    const b = this.rbuf;
    const parent = this.node();
    const mode = b.readUInt32LE(IN_HEADER);
    const umask = b.readUInt32LE(IN_HEADER + 4);
    const name = this.name(IN_HEADER + 8);
    const path = this.childPath(parent, name);
    this.overlay.mkdir(path, (mode & 0o7777) | S_IFDIR, this.caller(umask));
    return this.created(parent, name, path);
  }

  private remove(dir: boolean): number {
    const parent = this.node();
    const name = this.name(IN_HEADER);
    const path = this.childPath(parent, name);
    if (dir) this.overlay.rmdir(path);
    else this.overlay.unlink(path);
    this.table.unlinkName(parent, name);
    return 0;
  }

  private rename(two: boolean): number {
    const b = this.rbuf;
    const parent = this.node();
    const newParent = this.node(u64(b, IN_HEADER));
    const flags = two ? b.readUInt32LE(IN_HEADER + 8) : 0;
    const [oldName, next] = cstring(b, two ? IN_HEADER + 16 : IN_HEADER + 8, this.len);
    const newName = cstring(b, next, this.len)[0];
    this.overlay.rename(this.childPath(parent, oldName), this.childPath(newParent, newName), flags);
    this.table.rename(parent, oldName, newParent, newName, (flags & C.RENAME_EXCHANGE) !== 0);
    return 0;
  }

  private link(): number {
    const b = this.rbuf;
    const src = this.node(u64(b, IN_HEADER));
    const parent = this.node();
    const name = this.name(IN_HEADER + 8);
    const srcPath = this.pathOf(src);
    const path = this.childPath(parent, name);
    this.overlay.link(srcPath, path, this.caller());
    // A lower source was copied up to be linked: its node follows it to the upper object, so
    // the reply names the kernel's inode of the source, whose nlink it then updates.
    try { this.table.refresh(src, this.overlay.getattr(srcPath)); } catch { /* gone meanwhile */ }
    const n = this.entryReply(parent, name, this.overlay.getattr(path));
    if (this.table.child(parent, name) !== src) {
      // The source's node could not follow (it has other names): have the kernel look it up again.
      if (src.parent) this.invalEntry(src.parent, src.name);
    }
    return n;
  }

  /**
   * Binds a just opened handle to the node's passthrough backing file where the kernel offers
   * passthrough; returns the open_out flags and backing id.
   *
   * A reader of a lower file on a writable mount must follow the file once another fd copies it
   * up (the core switches its fd, as the kernel's overlay reopens the upper file); a backing file
   * cannot switch, so such readers go through the daemon, with the page cache kept across opens
   * (the lower file cannot change until it is copied up, and the copy-up's writer invalidates it).
   * A kernel inode has one backing file at a time and then takes no cached open: a node bound to
   * another real file than the one just opened (lower hard links copied up apart) is retired,
   * and the opener told to look the name up again (ESTALE), which gives it a new node.
   */
  private bind(node: Node, fh: number): [number, number] {
    let flags = FOPEN.NOFLUSH;
    let backingId = 0;
    let passthrough = false;
    const h = this.overlay.handle(fh);
    if (h.below && this.passthroughMode !== 'all') {
      flags |= FOPEN.KEEP_CACHE;
      if (node.backing) this.conflict(node, fh);
    } else if (this.passthrough) {
      const key = h.realKey ?? ((st) => (typeof st === 'number' ? '' : `${st.dev}:${st.ino}`))(lstatAt(h.fd, ''));
      const b: Backing | undefined = node.backing;
      if (b && b.key !== key) this.conflict(node, fh);
      if (b) {
        b.refs++;
        backingId = b.id;
        passthrough = true;
      } else if (node.cachedOpens === 0 && key !== '') {
        const id = this.dev.backingOpen(this.fd, h.fd);
        if (id > 0) {
          this.stats.backingIds++;
          node.backing = { id, key, refs: 1 };
          backingId = id;
          passthrough = true;
        } else if (!this.passthroughWarned) {
          this.passthroughWarned = true;
          this.log.warn({ errno: -id, path: shown(h.path) }, 'FUSE passthrough refused for a file; its data goes through the daemon');
        }
      }
    }
    if (passthrough) {
      flags |= FOPEN.PASSTHROUGH;
      this.stats.passthroughOpens++;
    } else {
      node.cachedOpens++;
      this.stats.cachedOpens++;
    }
    node.addFile(fh);
    this.files.set(fh, { node, passthrough });
    return [flags, backingId];
  }

  private conflict(node: Node, fh: number): never {
    this.overlay.release(fh);
    this.retire(node);
    throw new FsError(E.ESTALE, 'open', `node ${node.id} is bound to another file`);
  }

  private openOut(off: number, fh: number, flags: number, backingId: number): void {
    const b = this.out;
    putU64(b, off, fh);
    b.writeUInt32LE(flags, off + 8);
    b.writeInt32LE(backingId, off + 12);
  }

  /**
   * With the writeback cache the kernel reads pages of files opened only for writing, and
   * appends at the offsets it knows (libfuse's passthrough_hp does the same).
   */
  private openFlags(flags: number): number {
    if (!this.writeback) return flags;
    if ((flags & 3) === C.O_WRONLY) flags = (flags & ~3) | C.O_RDWR;
    return flags & ~C.O_APPEND;
  }

  /**
   * open(O_TRUNC) of a regular file by a caller without CAP_FSETID drops setuid, and setgid
   * where the group may execute or the caller is not in the group, as the VFS's truncate does
   * (setattr_should_drop_suidgid); with atomic O_TRUNC the kernel leaves it to the daemon.
   */
  private dropSuidOnTruncate(node: Node, fh: number): void {
    const a = this.overlay.fgetattr(fh);
    if ((a.mode & S_IFMT) !== S_IFREG || (a.mode & 0o6000) === 0) return;
    const sgid = (a.mode & 0o2000) !== 0 && ((a.mode & 0o010) !== 0 || !callerInGroup(this.pid, this.gid, a.gid));
    const kill = (a.mode & 0o4000) | (sgid ? 0o2000 : 0);
    if (kill === 0 || callerCapable(this.pid, this.uid, CAP_FSETID)) return;
    this.overlay.fchmod(fh, a.mode & 0o7777 & ~kill);
    this.invalAttr(node);
  }

  private open(): number {
    const node = this.node();
    const flags = this.openFlags(this.rbuf.readUInt32LE(IN_HEADER));
    const fh = this.overlay.open(this.pathOf(node), flags);
    if (flags & C.O_TRUNC) this.dropSuidOnTruncate(node, fh);
    const [oflags, backingId] = this.bind(node, fh);
    this.room(OPEN_OUT);
    this.openOut(OUT_HEADER, fh, oflags, backingId);
    return OPEN_OUT;
  }

  private create(): number {
    const b = this.rbuf;
    const parent = this.node();
    const flags = this.openFlags(b.readUInt32LE(IN_HEADER));
    const mode = b.readUInt32LE(IN_HEADER + 4);
    const umask = b.readUInt32LE(IN_HEADER + 8);
    const name = this.name(IN_HEADER + 16);
    const path = this.childPath(parent, name);
    const fh = this.overlay.create(path, mode & 0o7777, flags, this.caller(umask));
    let attr: Attr;
    try {
      attr = this.overlay.fgetattr(fh);
    } catch (err) {
      this.overlay.release(fh);
      throw err;
    }
    const node = this.table.entry(parent, name, attr);
    let oflags: number, backingId: number;
    try {
      [oflags, backingId] = this.bind(node, fh);
    } catch (err) {
      this.table.maybeDrop(node);
      throw err;
    }
    this.room(ENTRY_OUT + OPEN_OUT);
    putEntry(this.out, OUT_HEADER, node.id, attr, this.entryValid, this.attrValid);
    node.lookups++;
    this.openOut(OUT_HEADER + ENTRY_OUT, fh, oflags, backingId);
    return ENTRY_OUT + OPEN_OUT;
  }

  private release(): number {
    const fh = u64(this.rbuf, IN_HEADER);
    const f = this.files.get(fh);
    this.files.delete(fh);
    if (f) {
      f.node.dropFile(fh);
      if (f.passthrough) this.dropBacking(f.node);
      else f.node.cachedOpens--;
    }
    try {
      this.overlay.release(fh);
    } finally {
      if (f) this.table.maybeDrop(f.node);
    }
    return 0;
  }

  private dropBacking(node: Node): void {
    const b = node.backing;
    if (!b) return;
    if (--b.refs > 0) return;
    node.backing = undefined;
    if (this.fd >= 0) this.dev.backingClose(this.fd, b.id);
    this.stats.backingIds--;
  }

  private read(): number {
    const b = this.rbuf;
    const fh = u64(b, IN_HEADER);
    const offset = u64(b, IN_HEADER + 8);
    const size = b.readUInt32LE(IN_HEADER + 16);
    this.stats.reads++;
    const out = Buffer.allocUnsafe(OUT_HEADER + size);
    // What the page cache holds is read here and now; only what needs the disk goes to the
    // thread pool. A short reply would mean end of file, so a partial read is completed there.
    const fd = this.overlay.readFd(fh);
    let got = this.dev.preadNowait(fd, out, OUT_HEADER, size, offset);
    let eof = got === 0;
    // Short: the end of the file, or of what the page cache holds. Asking on tells which (a
    // small file's one read ends here instead of in the thread pool).
    while (got > 0 && got < size) {
      const more = this.dev.preadNowait(fd, out, OUT_HEADER + got, size - got, offset + got);
      if (more === 0) eof = true;
      if (more <= 0) break;
      got += more;
    }
    if (got === size || eof) {
      this.replyData(this.unique, out, got);
      return REPLIED;
    }
    const have = got > 0 ? got : 0;
    if (got < 0 && got !== -E.EAGAIN && got !== -E.EOPNOTSUPP) throw new FsError(-got, 'read');
    return this.later(Op.READ, async () => {
      const n = await this.overlay.read(fh, out.subarray(OUT_HEADER + have), size - have, offset + have);
      return { b: out, n: have + n };
    });
  }

  private write(): number {
    const b = this.rbuf;
    const fh = u64(b, IN_HEADER);
    const offset = u64(b, IN_HEADER + 8);
    const size = b.readUInt32LE(IN_HEADER + 16);
    const data = Buffer.from(b.subarray(IN_HEADER + 40, IN_HEADER + 40 + size));
    this.stats.writes++;
    return this.later(Op.WRITE, async () => {
      const n = await this.overlay.write(fh, data, data.length, offset);
      const out = Buffer.allocUnsafe(OUT_HEADER + 8);
      out.writeUInt32LE(n, OUT_HEADER);
      out.writeUInt32LE(0, OUT_HEADER + 4);
      return { b: out, n: 8 };
    });
  }

  private fsync(): number {
    const fh = u64(this.rbuf, IN_HEADER);
    const datasync = (this.rbuf.readUInt32LE(IN_HEADER + 8) & 1) !== 0;
    const fd = this.overlay.handle(fh).fd;
    return this.later(Op.FSYNC, () => new Promise((resolve, reject) => {
      const done = (err: NodeJS.ErrnoException | null): void => (err ? reject(err) : resolve({ b: Buffer.allocUnsafe(OUT_HEADER), n: 0 }));
      if (datasync) fs.fdatasync(fd, done);
      else fs.fsync(fd, done);
    }));
  }

  private statfs(): number {
    const s = this.overlay.statfs();
    const b = this.room(STATFS_OUT);
    b.fill(0, OUT_HEADER, OUT_HEADER + STATFS_OUT);
    putU64(b, OUT_HEADER, s.blocks);
    putU64(b, OUT_HEADER + 8, s.bfree);
    putU64(b, OUT_HEADER + 16, s.bavail);
    putU64(b, OUT_HEADER + 24, s.files);
    putU64(b, OUT_HEADER + 32, s.ffree);
    b.writeUInt32LE(s.bsize, OUT_HEADER + 40);
    b.writeUInt32LE(s.namemax, OUT_HEADER + 44);
    b.writeUInt32LE(s.frsize, OUT_HEADER + 48);
    return STATFS_OUT;
  }

  private setxattr(): number {
    const b = this.rbuf;
    const node = this.node();
    const path = this.pathOf(node);
    const size = b.readUInt32LE(IN_HEADER);
    const flags = b.readUInt32LE(IN_HEADER + 4);
    const [name, next] = cstring(b, IN_HEADER + 8, this.len);
    const value = Buffer.from(b.subarray(next, Math.min(next + size, this.len)));
    this.overlay.setxattr(path, name, value, flags);
    // An ACL written as an xattr also sets the mode (and the kernel refreshes only the ctime).
    this.invalAttr(node);
    return 0;
  }

  private getxattr(list: boolean): number {
    const b = this.rbuf;
    const path = this.pathOf(this.node());
    const size = b.readUInt32LE(IN_HEADER);
    let value: Buffer;
    if (list) {
      const names = this.overlay.listxattr(path, callerCapable(this.pid, this.uid, CAP_SYS_ADMIN));
      value = Buffer.from(names.map((n) => n + '\0').join(''), 'latin1');
    } else {
      value = this.overlay.getxattr(path, this.name(IN_HEADER + 8));
    }
    if (size === 0) {
      const o = this.room(8);
      o.writeUInt32LE(value.length, OUT_HEADER);
      o.writeUInt32LE(0, OUT_HEADER + 4);
      return 8;
    }
    if (value.length > size) throw new FsError(E.ERANGE, list ? 'listxattr' : 'getxattr', path);
    value.copy(this.room(value.length), OUT_HEADER);
    return value.length;
  }

  private removexattr(): number {
    const node = this.node();
    this.overlay.removexattr(this.pathOf(node), this.name(IN_HEADER));
    this.invalAttr(node);
    return 0;
  }

  private access(): number {
    this.overlay.access(this.pathOf(this.node()), this.rbuf.readUInt32LE(IN_HEADER));
    return 0;
  }

  private opendir(): number {
    const node = this.node();
    if (!node.dir) throw new FsError(E.ENOTDIR, 'opendir', this.pathOf(node));
    const fh = this.nextDir++;
    this.dirs.set(fh, { node, entries: undefined, listedAt: -1 });
    this.room(OPEN_OUT);
    // The kernel keeps listings while the directory's mtime and change count stay (every entry
    // change comes through this mount and bumps the count); not when asked to cache nothing.
    this.openOut(OUT_HEADER, fh, this.cacheListings ? FOPEN.CACHE_DIR | FOPEN.KEEP_CACHE : 0, 0);
    return OPEN_OUT;
  }

  private readdir(plus: boolean): number {
    const b = this.rbuf;
    const fh = u64(b, IN_HEADER);
    const offset = u64(b, IN_HEADER + 8);
    const size = b.readUInt32LE(IN_HEADER + 16);
    const d = this.dirs.get(fh);
    if (!d) throw new FsError(E.EBADF, 'readdir', String(fh));
    const path = this.pathOf(d.node);
    if (offset === 0 || d.entries === undefined) {
      d.listedAt = this.overlay.generation;
      d.entries = plus ? this.overlay.readdirNames(path) : this.overlay.readdir(path);
    }
    if (offset < 2 && d.self === undefined) {
      d.self = d.node.ino ?? this.attrOf(d.node).ino;
      const up = d.node.parent;
      try { d.parent = up ? up.ino ?? this.attrOf(up).ino : d.self; } catch { d.parent = d.self; }
    }
    const out = this.room(size);
    let pos = OUT_HEADER;
    const end = OUT_HEADER + size;
    const total = d.entries.length + 2;
    for (let i = offset; i < total; i++) {
      const e = i >= 2 ? d.entries[i - 2] : undefined;
      const name = e ? e.name : i === 0 ? '.' : '..';
      const nameLen = name.length; // a binary string: one char per byte
      const rec = direntSize(nameLen) + (plus ? ENTRY_OUT : 0);
      if (pos + rec > end) break;
      // A file the kernel already holds a node for has its entry and attributes (kept exact by
      // invalidations), so the listing names it without them (node id 0), for free. Not a
      // directory: the kernel marks those stale itself whenever an entry inside changes, and
      // whoever lists this one is likely to descend into them next.
      const child = e ? this.table.child(d.node, name) : undefined;
      const held = child && !child.dir && !child.retired && child.ino !== undefined ? child : undefined;
      if (e && held) e.ino = held.ino;
      let attr: Attr | undefined;
      if (e && held === undefined && (plus || e.ino === undefined)) {
        // Never d_ino 0 (readdir(3) callers take it for a deleted entry): a name gone since the
        // listing is left out, as ovl_cache_update marks it stale; another failure ends this
        // batch, or fails the call that would return nothing (getdents does the same).
        try {
          if (plus) attr = this.overlay.getattrListed(path, e, d.listedAt);
          else e.ino = this.overlay.listedIno(path, e, d.listedAt);
        } catch (err) {
          if (errnoOf(err) === E.ENOENT) continue;
          this.log.warn({ path: joinPath(path, name), err: String(err) }, 'readdir: a listed entry cannot be looked up');
          if (pos > OUT_HEADER) break;
          throw err;
        }
      }
      let ino = (e ? e.ino : i === 0 ? d.self : d.parent) ?? 0n;
      let type = e ? e.type : DT_DIR;
      let at = pos;
      if (plus) {
        if (attr && e) {
          const node = this.table.entry(d.node, name, attr);
          putEntry(out, at, node.id, attr, this.entryValid, this.attrValid);
          node.lookups++;
          ino = e.ino = attr.ino;
          type = (attr.mode & S_IFMT) >> 12;
        } else {
          putEntry(out, at, 0, undefined, { sec: 0, nsec: 0 }, { sec: 0, nsec: 0 });
        }
        at += ENTRY_OUT;
      }
      out.writeBigUInt64LE(ino, at);
      putU64(out, at + 8, i + 1);
      out.writeUInt32LE(nameLen, at + 16);
      out.writeUInt32LE(type, at + 20);
      out.write(name, at + DIRENT_BASE, 'latin1');
      const padded = at + direntSize(nameLen);
      out.fill(0, at + DIRENT_BASE + nameLen, padded);
      pos = padded;
    }
    return pos - OUT_HEADER;
  }

  private fsyncdir(): number {
    const fh = u64(this.rbuf, IN_HEADER);
    const datasync = (this.rbuf.readUInt32LE(IN_HEADER + 8) & 1) !== 0;
    const d = this.dirs.get(fh);
    if (!d) throw new FsError(E.EBADF, 'fsyncdir', String(fh));
    // A directory removed since opendir has no name left to sync it by, and nothing in it to keep.
    const path = this.table.pathOf(d.node);
    const fd = path === undefined ? undefined : this.overlay.dirToSync(path);
    if (fd === undefined) return 0;
    return this.later(Op.FSYNCDIR, () => new Promise((resolve, reject) => {
      const done = (err: NodeJS.ErrnoException | null): void => {
        sys.close(fd);
        if (err) reject(err);
        else resolve({ b: Buffer.allocUnsafe(OUT_HEADER), n: 0 });
      };
      if (datasync) fs.fdatasync(fd, done);
      else fs.fsync(fd, done);
    }));
  }

  private fallocate(): number {
    const b = this.rbuf;
    const fh = u64(b, IN_HEADER);
    this.overlay.fallocate(fh, b.readUInt32LE(IN_HEADER + 24), u64(b, IN_HEADER + 8), u64(b, IN_HEADER + 16));
    return 0;
  }

  private lseek(): number {
    const b = this.rbuf;
    const fh = u64(b, IN_HEADER);
    const r = sys.lseek(this.overlay.readFd(fh), u64(b, IN_HEADER + 8), b.readUInt32LE(IN_HEADER + 16));
    if (r < 0) throw new FsError(-r, 'lseek', this.overlay.handle(fh).path);
    putU64(this.room(8), OUT_HEADER, r);
    return 8;
  }

  private copyFileRange(): number {
    const b = this.rbuf;
    const inFd = this.overlay.readFd(u64(b, IN_HEADER));
    const hout = this.overlay.handle(u64(b, IN_HEADER + 24));
    if (!hout.writable) throw new FsError(E.EBADF, 'copy_file_range', hout.path);
    const len = Math.min(u64(b, IN_HEADER + 40), COPY_CHUNK);
    const r = sys.copyFileRange(inFd, u64(b, IN_HEADER + 8), hout.fd, u64(b, IN_HEADER + 32), len);
    if (r < 0) throw new FsError(-r, 'copy_file_range', hout.path);
    const o = this.room(8);
    o.writeUInt32LE(r, OUT_HEADER);
    o.writeUInt32LE(0, OUT_HEADER + 4);
    return 8;
  }

  describe(): string {
    return `kernel (${this.viaFusermount ? 'fusermount3' : 'mount(2)'})`;
  }

  counters(): TransportCounters {
    return { nodes: this.table.size, fuseOpenFiles: this.files.size, openDirs: this.dirs.size, backingIds: this.stats.backingIds, backedNodes: this.table.backedNodes() };
  }
}
