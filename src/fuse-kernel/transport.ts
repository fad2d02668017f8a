// The kernel transport: overlayd speaks the FUSE protocol on /dev/fuse itself, so everything
// the kernel says reaches the core (caller uid/gid/pid and umask, ns times, 64-bit inode
// numbers, create and rename flags, fallocate, lseek, readdirplus) and reads and writes of
// regular files bypass the daemon entirely where the kernel offers passthrough.
//
// Its parts: mount.ts mounts (mount(2) or fusermount3); device.ts is the open /dev/fuse;
// session.ts reads requests and sends replies and notifications; abi.ts is the wire format;
// ops.ts and ops-*.ts answer each request with a call of the union over its node tree
// (core/union.ts, core/nodes.ts); passthrough.ts,
// setuid.ts and readdirplus.ts are the policies those answers follow.
import fs from 'node:fs';
import { toBinary } from '../host/bytes';
import { C, fuseDevice, sys, type FuseDeviceAddon } from '../host/native';
import type { Overlay } from '../core/overlay';
import type { FuseMountOptions } from '../fuse/adapter';
import type { Logger } from '../log/logger';
import type { Transport, TransportCounters } from '../transport';
import { validity } from './abi';
import { hasCapSysAdmin, inInitUserNs } from './caller';
import { DevFuse, type FuseDevice, type FuseRing } from './device';
import { errnoName } from '../core/errors';
import { FuseMount } from './mount';
import { KernelOps, type OpsConfig } from './ops';
import { Passthrough, type PassthroughMode } from './passthrough';
import { MAX_WRITE, Session } from './session';

/**
 * Microseconds to keep asking for the next request after a batch (-o spin=): a waiting caller
 * usually sends it within that, and waking an idle CPU costs more (see native/spin.h).
 */
const SPIN_US = 100;
/**
 * Default entry, attribute and negative timeouts (seconds). Every change to the layers comes
 * through this mount, and the kernel updates its own caches for each request it sends; where
 * one of ours changes what another name or inode shows, we tell it (notifications), so the
 * caches stay exact however long they live. (Changing the layers behind a mounted overlay is
 * undefined, as with the kernel's overlay.)
 */
const CACHE_TIMEOUT = 86400;

/**
 * FUSE over io_uring: entries per queue (one queue per possible CPU). A request answered later
 * (a read from disk, a copy-up) holds its entry until then; beyond these the kernel queues them.
 */
const RING_DEPTH = 8;
const ENABLE_URING = '/sys/module/fuse/parameters/enable_uring';

const OVERLAYFS_MAGIC = 0x794c7630;
const FUSE_MAGIC = 0x65735546;

/** A session serving `overlay` on `dev`, its ops, and the passthrough policy they share (also for tests). */
export function serveDevice(
  overlay: Overlay, dev: FuseDevice, opts: FuseMountOptions, log: Logger, passthrough: PassthroughMode, stackDepth: number,
  ring?: { ring?: FuseRing; note: string },
): KernelOps {
  const session = new Session(dev, log, (opts.spin ?? SPIN_US) * 1000, ring?.ring, ring?.note);
  const cfg: OpsConfig = {
    entryValid: validity(opts.entryTimeout ?? CACHE_TIMEOUT),
    attrValid: validity(opts.attrTimeout ?? CACHE_TIMEOUT),
    negValid: validity(opts.negativeTimeout ?? CACHE_TIMEOUT),
    cacheListings: (opts.attrTimeout ?? CACHE_TIMEOUT) > 0,
    allowRoot: opts.allowRoot,
    writeback: opts.writeback !== false && process.env.OVERLAYD_WRITEBACK !== 'off',
    stackDepth,
    acl: opts.defaultPermissions,
  };
  const ops = new KernelOps(overlay, session, new Passthrough(passthrough, dev, log), cfg, log);
  session.start(ops);
  return ops;
}

export class KernelTransport implements Transport {
  private readonly addon: FuseDeviceAddon;
  private readonly mounter: FuseMount;
  private kernel: KernelOps | undefined;
  /**
   * -o passthrough= (else env OVERLAYD_PASSTHROUGH): `off`; `all` also binds readers of lower
   * files on a writable mount (faster, but such a reader keeps reading the lower file after
   * another fd copies it up, where the kernel's overlay follows the copy); by default (`upper`)
   * they go through the daemon.
   */
  private readonly passthroughAsked: PassthroughMode;
  /**
   * FUSE_DEV_IOC_BACKING_OPEN takes CAP_SYS_ADMIN in the initial user namespace: without it no
   * backing file can be registered, so passthrough is not even asked for.
   */
  private readonly passthroughMode: PassthroughMode;

  constructor(private readonly overlay: Overlay, private readonly mountpoint: string, private readonly opts: FuseMountOptions, private readonly log: Logger) {
    this.addon = fuseDevice();
    const privileged = hasCapSysAdmin();
    this.mounter = new FuseMount(this.addon, mountpoint, opts, overlay.readonly, privileged, log);
    const env = process.env.OVERLAYD_PASSTHROUGH;
    this.passthroughAsked = opts.passthrough ?? (env === '0' || env === 'off' ? 'off' : env === 'all' ? 'all' : 'upper');
    this.passthroughMode = privileged && inInitUserNs() ? this.passthroughAsked : 'off';
  }

  get ops(): number {
    return this.kernel?.session.ops ?? 0;
  }

  /**
   * Mounts, and resolves once the kernel's INIT is answered, i.e. the mount serves; the device
   * is served the same way whether mount(2) or fusermount3 made the mount.
   */
  async mount(): Promise<void> {
    if (this.passthroughMode === 'off' && this.passthroughAsked !== 'off') {
      this.log.info('no CAP_SYS_ADMIN (in the initial user namespace): FUSE passthrough is off, file data goes through the daemon');
    }
    const fd = await this.mounter.mount();
    const dev = new DevFuse(this.addon, fd);
    let ops: KernelOps;
    try {
      ops = serveDevice(this.overlay, dev, this.opts, this.log, this.passthroughMode, this.layerStackDepth(), ringFor(dev, this.opts));
    } catch (err) {
      if (this.mounter.viaFusermount) await this.mounter.unmount(true);
      else sys.umount2(toBinary(this.mountpoint), C.MNT_DETACH);
      fs.closeSync(fd);
      throw err;
    }
    this.kernel = ops;
    return new Promise((resolve, reject) => {
      let initialised = false;
      ops.onInit = () => {
        initialised = true;
        this.mounter.raiseReadahead(MAX_WRITE / 1024);
        resolve();
      };
      ops.session.onEnd(() => {
        if (!initialised) reject(new Error('the kernel ended the session before INIT'));
      });
    });
  }

  unmount(lazy = false): Promise<number> {
    return this.mounter.unmount(lazy);
  }

  onSessionEnd(hook: () => void): void {
    this.kernel?.session.onEnd(hook);
  }

  readonly endsWithKernel = true;

  /** Stops serving and closes the device (after unmount, or to give up). */
  close(): void {
    this.kernel?.session.end();
  }

  /** The mount(2) data string and flags, for logs and status. */
  fuseOptions(): string[] {
    return this.mounter.options();
  }

  describe(): string {
    return `kernel (${this.mounter.viaFusermount ? 'fusermount3' : 'mount(2)'}${this.kernel?.session.viaRing ? ', io_uring' : ''})`;
  }

  counters(): TransportCounters {
    const o = this.kernel;
    if (!o) return {};
    return { ringOps: o.session.ringOps, nodes: 1 + o.union.table.heldByClients(), fuseOpenFiles: o.files.size, openDirs: o.dirs.size, backingIds: o.passthrough.stats.backingIds, backedNodes: o.passthrough.backedNodes };
  }

  /** 1 + the deepest stacking under any layer (a layer on overlayfs or FUSE is itself stacked). */
  private layerStackDepth(): number {
    const o = new Float64Array(10);
    for (const l of this.overlay.stack.layers) {
      if (sys.fstatfs(l.fd, o) === 0 && (o[8] === OVERLAYFS_MAGIC || o[8] === FUSE_MAGIC)) return 2;
    }
    return 1;
  }
}

/**
 * -o uring= (else env OVERLAYD_URING): `on` takes FUSE over io_uring where the kernel allows it
 * (enable_uring=Y, which only root sets); by default (`off`) requests come through /dev/fuse
 * reads: the ring measured no faster on the workloads (README, Performance).
 */
export function uringMode(opts: FuseMountOptions, env: NodeJS.ProcessEnv = process.env): 'on' | 'off' {
  if (opts.uring) return opts.uring;
  const e = env.OVERLAYD_URING;
  return e === '1' || e === 'on' ? 'on' : 'off';
}

/** The ring to offer at INIT, or why there is none. */
function ringFor(dev: DevFuse, opts: FuseMountOptions): { ring?: FuseRing; note: string } {
  if (uringMode(opts) === 'off') return { note: 'not asked for (-o uring=on)' };
  let enabled = '';
  try { enabled = fs.readFileSync(ENABLE_URING, 'utf8').trim(); } catch { /* a kernel without it */ }
  if (enabled !== 'Y') return { note: enabled === '' ? 'the kernel has no FUSE over io_uring' : `${ENABLE_URING} is ${enabled}` };
  // The payload buffer takes the largest request and reply: max_write, also max_pages of 4 KiB.
  const r = dev.ring(possibleCpus(), RING_DEPTH, MAX_WRITE);
  if (typeof r === 'number') return { note: `io_uring setup failed (${errnoName(-r)})` };
  return { ring: r, note: '' };
}

/** The kernel's queue count: one per possible CPU (num_possible_cpus). */
function possibleCpus(): number {
  let n = 0;
  try {
    for (const part of fs.readFileSync('/sys/devices/system/cpu/possible', 'utf8').trim().split(',')) {
      const [a, b] = part.split('-').map(Number);
      n += b === undefined ? 1 : b - a + 1;
    }
  } catch { /* fall through */ }
  return n > 0 ? n : 1;
}
