// One mount from its start to its end, with nothing process-wide in it: a daemon of its own runs
// one (daemon.ts), a resident server many on one event loop (server.ts). Each has its own layer
// lock, Overlay, FUSE session, logger, registry record and mountinfo watch; what ends one (an
// unmount, a fatal error in its session) ends only it.
import fs from 'node:fs';
import type { FdPool } from '../core/fdshare';
import { Overlay } from '../core/overlay';
import { FuseNativeTransport } from '../fuse/adapter';
import { KernelTransport } from '../fuse-kernel/transport';
import { shown } from '../host/bytes';
import type { Transport } from '../transport';
import { createDaemonLogger, type LogLevel, type Logger, type SafeDestination } from '../log/logger';
import type { MountOptions } from './options';
import { lockUpperAndWork, type LayerLock } from './layer-lock';
import { mountAt, MountinfoReader, OVERLAYD_FSTYPE } from './mountinfo';
import { validateLayout } from './validate';
import { ownMountNamespace, registerMount, unregisterMount, type Counters, type MountRecord } from './registry';

export interface RunOptions {
  /** Absolute. */
  mountpoint: string;
  source: string;
  options: MountOptions;
  logLevel: LogLevel;
  logFile?: string;
  /** fd to report readiness on (set by the detaching parent). */
  readyFd?: number;
  /** The original -o strings, for status output. */
  optionStrings: string[];
}

/** How often a mount checks that it is still there, and refreshes its counters. */
const WATCH_MS = 500;
const REFRESH_EVERY = 4;

export interface StartHow {
  /** The record's number among this process's mounts (registry.ts). */
  seq: number;
  /** Nobody reads our stderr once the mount serves (a detached daemon, a server). */
  detached: boolean;
  /** Also say things on stderr (a daemon a person started with -f). */
  interactive: boolean;
  /** The process serves other mounts too: this one's open files take a share of these fds. */
  fds?: FdPool;
}

/** A mount that serves, until `ended` resolves (with the exit code a daemon of its own would have). */
export interface ActiveMount {
  readonly mountpoint: string;
  readonly seq: number;
  readonly log: Logger;
  readonly ended: Promise<number>;
  /** Unmount unless busy (then keep serving, and say so). */
  stop(why: string): Promise<void>;
  /** Something went wrong serving it: say why, unmount (or abort), end. */
  crash(err: unknown): void;
  /** Write fresh counters to the record. */
  refresh(): void;
  /** Requests served so far. */
  readonly ops: number;
}

/**
 * Validates, locks the layers, opens them, mounts, and resolves once the kernel's INIT is
 * answered; throws (with nothing left mounted or locked) why it could not.
 */
export async function startMount(run: RunOptions, how: StartHow): Promise<ActiveMount> {
  const { log, dest } = createDaemonLogger(run.logLevel, run.logFile);
  let mountpoint: string;
  let lock: LayerLock;
  try {
    mountpoint = validateLayout(run.options.overlay, run.mountpoint);
    lock = lockUpperAndWork(run.options.overlay); // held until the mount is gone
  } catch (err) {
    log.error({ mountpoint: run.mountpoint, err: (err as Error).message }, 'mount refused');
    dest.close();
    throw err;
  }
  let overlay: Overlay;
  try {
    overlay = new Overlay(run.options.overlay, {
      warn: (msg, detail) => log.warn(readable(detail), msg),
      error: (msg, detail) => log.error(readable(detail), msg),
    });
  } catch (err) {
    lock.release();
    log.error({ err: (err as Error).message }, 'cannot open layers');
    dest.close();
    throw new Error(`cannot open layers: ${(err as Error).message}`);
  }
  // Layer roots and the work directory: fds the mount holds for its life.
  if (how.fds) overlay.handles.share = how.fds.join(overlay.stack.layers.length + 1);
  if (run.options.transportNote !== undefined) log.info(run.options.transportNote);
  for (const note of run.options.notes) log.info(note);
  const transport: Transport = run.options.transport === 'kernel'
    ? new KernelTransport(overlay, mountpoint, run.options.fuse, log)
    : new FuseNativeTransport(overlay, mountpoint, run.options.fuse, log);
  try {
    await transport.mount();
  } catch (err) {
    // fuse_new can fail after fuse_mount succeeded: never leave that half-mount behind.
    if (mountAt(mountpoint)?.fstype === OVERLAYD_FSTYPE) await transport.unmount(true);
    overlay.close();
    lock.release();
    log.error({ mountpoint, err: (err as Error).message }, 'mount failed');
    dest.close();
    throw new Error(`cannot mount ${mountpoint}: ${(err as Error).message}${run.options.transport === 'kernel' ? '' : ' (libfuse says why above)'}`);
  }
  const mountId = mountAt(mountpoint)?.id;
  const cfg = run.options.overlay;
  const record: MountRecord = {
    pid: process.pid, seq: how.seq, mountpoint, source: run.options.fuse.fsname,
    lowerdirs: cfg.lowerdirs, upperdir: cfg.upperdir, workdir: cfg.workdir,
    options: run.optionStrings, started: Date.now(), updated: Date.now(), mntns: ownMountNamespace(),
    logFile: run.logFile ?? (how.detached ? 'none (detached without --log-file)' : 'stderr'), logLevel: run.logLevel, counters: countersOf(transport, overlay),
    transport: transport.describe(),
  };
  registerMount(record);
  log.info({ mountpoint, transport: record.transport, source: record.source, lowerdirs: cfg.lowerdirs, upperdir: cfg.upperdir, workdir: cfg.workdir, fuse: transport.fuseOptions() }, 'mounted');
  // Whoever read our stderr until now leaves once the mount serves: from here on only the log file hears us.
  if (how.detached && run.logFile === undefined) dest.detach();
  const refresh = (): void => {
    record.updated = Math.max(Date.now(), record.updated + 1);
    record.counters = countersOf(transport, overlay);
    registerMount(record);
  };
  return watch({ transport, overlay, mountpoint, mountId, log, dest, refresh, lock, record, how });
}

/** A process's open fds, less the one readdir itself holds open while it lists. */
function fdCount(): number | undefined {
  try { return fs.readdirSync('/proc/self/fd').length - 1; } catch { return undefined; }
}

function countersOf(transport: Transport, overlay: Overlay): Counters {
  const up = overlay.upperStats;
  // Node reads /proc for these: out of fds they throw, and counters must never stop a mount.
  let mem = { rss: 0, heapUsed: 0, external: 0 };
  try { mem = process.memoryUsage(); } catch { /* EMFILE: zeros this once */ }
  const c: Counters = {
    ops: transport.ops,
    openFiles: overlay.handles.size,
    openFilesShare: overlay.handles.share?.limit,
    copyUps: up?.copyUps ?? 0,
    bytesCopiedUp: up?.bytesCopiedUp ?? 0,
    whiteouts: up?.whiteouts ?? 0,
    rssBytes: mem.rss,
    heapUsedBytes: mem.heapUsed,
    externalBytes: mem.external,
    dirCacheEntries: overlay.resolver.cache.size,
    dirCacheFds: overlay.resolver.cache.fdCount,
  };
  const fds = fdCount();
  if (fds !== undefined) c.fds = fds;
  return Object.assign(c, transport.counters());
}

interface Serving {
  transport: Transport;
  overlay: Overlay;
  mountpoint: string;
  mountId: number | undefined;
  log: Logger;
  dest: SafeDestination;
  refresh: () => void;
  /** upperdir and workdir: let go as soon as the mount is gone, for the next mount of them. */
  lock: LayerLock;
  record: MountRecord;
  how: StartHow;
}

function watch(s: Serving): ActiveMount {
  const { transport, overlay, mountpoint, log } = s;
  let finished = false;
  let resolveEnded: (code: number) => void = () => undefined;
  const ended = new Promise<number>((resolve) => { resolveEnded = resolve; });
  const mountinfo = new MountinfoReader();
  const finish = (code: number): void => {
    if (finished) return;
    finished = true;
    clearInterval(timer);
    mountinfo.close();
    transport.close();
    overlay.close();
    s.lock.release();
    log.info({ mountpoint, code }, 'daemon exits');
    // Last: `overlayd umount` returns once the record is gone, and the log is complete by then.
    unregisterMount(s.record.pid, s.record.seq);
    s.dest.close();
    resolveEnded(code);
  };
  let unreadable = false;
  /** Only a mount table we could read can say the mount is gone (EMFILE is not an unmount). */
  const stillMounted = (): boolean => {
    const mounts = mountinfo.read();
    if (mounts instanceof Error) {
      if (!unreadable) log.warn({ mountpoint, err: mounts.message }, 'cannot read mountinfo; taking the mount as still there');
      unreadable = true;
      return true;
    }
    unreadable = false;
    const m = mountAt(mountpoint, mounts);
    return m !== undefined && m.fstype === OVERLAYD_FSTYPE && (s.mountId === undefined || m.id === s.mountId);
  };
  const stop = async (why: string): Promise<void> => {
    // Async: a mount made through fusermount3 is unmounted by it, and it needs us to answer.
    const r = await transport.unmount(false);
    if (finished) return;
    if (r === 0 || !stillMounted()) {
      log.info({ sig: why, mountpoint }, 'unmounted on signal');
      finish(0);
      return;
    }
    // Busy: keep serving rather than leave a broken mount behind.
    const msg = r === -16 /* EBUSY */
      ? `cannot unmount ${mountpoint}: it is busy (a process uses it); still serving`
      : `cannot unmount ${mountpoint} (errno ${-r}); still serving`;
    log.warn({ sig: why, errno: -r, mountpoint }, msg);
    if (s.how.interactive) process.stderr.write(`overlayd: ${msg}\n`);
  };
  // Whatever goes wrong unexpectedly, leave no dead mount behind: say why, unmount, end.
  const crash = (err: unknown): void => {
    log.fatal({ mountpoint, err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) }, 'daemon crashed; unmounting');
    if (s.how.interactive) process.stderr.write(`overlayd: crashed: ${err instanceof Error ? err.stack : String(err)}\n`);
    void (async () => {
      try {
        if ((await transport.unmount(false)) !== 0 && stillMounted()) await transport.unmount(true);
      } finally {
        finish(1);
      }
    })();
  };
  // A session that ended while still mounted (its connection aborted, /dev/fuse failing) serves
  // nothing any more: let go of its layers, its record and (in a server) its place; the dead
  // mount is `overlayd umount`'s to clear, as after a daemon's death.
  transport.onSessionEnd(() => {
    if (finished) return;
    if (detached || !stillMounted()) {
      log.info({ mountpoint }, 'unmounted externally');
      finish(0);
      return;
    }
    log.error({ mountpoint }, 'the FUSE session ended while mounted; the mount is dead');
    finish(1);
  });
  // Gone from the mount table: unmounted, or detached (umount -l) with files still open in it,
  // which the kernel's overlay goes on serving until the last is closed. The kernel ends the
  // session then; until that, serve, but let go of the layers (a new mount may take them, as
  // the kernel allows) and of the record (the namespace has no such mount any more).
  // fuse-native gives no event when someone else unmounts: it ends here.
  let detached = false;
  const gone = (): void => {
    if (!transport.endsWithKernel) {
      log.info({ mountpoint }, 'unmounted externally');
      finish(0);
      return;
    }
    detached = true;
    clearInterval(timer);
    s.lock.release();
    unregisterMount(s.record.pid, s.record.seq);
    log.info({ mountpoint }, 'unmounted (detached): serving what is still open in it until the kernel lets go');
  };
  let ticks = 0;
  let lastOps = -1;
  const timer = setInterval(() => {
    if (!stillMounted()) {
      gone();
      return;
    }
    if (++ticks % REFRESH_EVERY === 0 && transport.ops !== lastOps) {
      lastOps = transport.ops;
      s.refresh();
    }
  }, WATCH_MS);
  return {
    mountpoint, seq: s.record.seq, log, ended, stop, crash, refresh: s.refresh,
    get ops() { return transport.ops; },
  };
}

/** The core's event details with names (binary strings) as text. */
function readable(detail: Record<string, unknown> = {}): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(detail)) out[k] = typeof v === 'string' ? shown(v) : v;
  return out;
}
