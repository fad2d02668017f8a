// Running a mount: in the foreground, or detached (a new session, stdio closed or sent to the
// log file) with the parent waiting until the child reports that the kernel has sent INIT, or
// why it failed, so `overlayd mount` returns 0 only once the mount serves and otherwise says
// why with nothing left mounted.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { Overlay } from '../core/overlay';
import { FuseNativeTransport } from '../fuse/adapter';
import { KernelTransport } from '../fuse-kernel/transport';
import { shown } from '../host/bytes';
import { sys } from '../host/native';
import type { Transport } from '../transport';
import { createDaemonLogger, openLogFile, type LogLevel, type Logger, type SafeDestination } from '../log/logger';
import type { MountOptions } from './options';
import { lockUpperAndWork, type LayerLock } from './layer-lock';
import { mountAt, MountinfoReader, OVERLAYD_FSTYPE } from './mountinfo';
import { daemonNodeArgs } from './node-flags';
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

const READY = 'ready\n';
/** How often the daemon checks that its mount is still there, and refreshes its counters. */
const WATCH_MS = 500;
const REFRESH_EVERY = 4;

/** Mounts and serves until unmounted or signalled. Resolves with the exit code. */
export async function serve(run: RunOptions): Promise<number> {
  const { log, dest } = createDaemonLogger(run.logLevel, run.logFile);
  // Modes arrive already masked by the caller's umask (the kernel applies it before FUSE sees
  // the request); the daemon's own umask must not mask them a second time.
  process.umask(0);
  // A stop request while mounting is kept, and acted on once the mount serves: dying halfway
  // could leave a dead mount.
  const early: NodeJS.Signals[] = [];
  const onEarly = (sig: NodeJS.Signals): void => { early.push(sig); };
  process.on('SIGTERM', onEarly);
  process.on('SIGINT', onEarly);
  let mountpoint: string;
  let lock: LayerLock;
  try {
    mountpoint = validateLayout(run.options.overlay, run.mountpoint);
    lock = lockUpperAndWork(run.options.overlay); // held until the mount is gone
  } catch (err) {
    log.error({ mountpoint: run.mountpoint, err: (err as Error).message }, 'mount refused');
    throw err;
  }
  // A daemon holds no directory busy: every path it was given is absolute by now.
  process.chdir('/');
  // Each file a client holds open is an fd here, and the directory cache is sized from this
  // limit: take all we may (node does too at start, but that is node's choice, not a promise).
  const nofile = sys.nofileLimit(1);
  let overlay: Overlay;
  try {
    overlay = new Overlay(run.options.overlay, {
      warn: (msg, detail) => log.warn(readable(detail), msg),
      error: (msg, detail) => log.error(readable(detail), msg),
    });
  } catch (err) {
    lock.release();
    log.error({ err: (err as Error).message }, 'cannot open layers');
    throw new Error(`cannot open layers: ${(err as Error).message}`);
  }
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
    throw new Error(`cannot mount ${mountpoint}: ${(err as Error).message}${run.options.transport === 'kernel' ? '' : ' (libfuse says why above)'}`);
  }
  const mountId = mountAt(mountpoint)?.id;
  const cfg = run.options.overlay;
  const record: MountRecord = {
    pid: process.pid, mountpoint, source: run.options.fuse.fsname,
    lowerdirs: cfg.lowerdirs, upperdir: cfg.upperdir, workdir: cfg.workdir,
    options: run.optionStrings, started: Date.now(), updated: Date.now(), mntns: ownMountNamespace(),
    logFile: run.logFile ?? (run.readyFd === undefined ? 'stderr' : 'none (detached without --log-file)'), logLevel: run.logLevel, counters: countersOf(transport, overlay),
    transport: transport.describe(),
  };
  registerMount(record);
  log.info({ nofile, dirCacheFds: overlay.resolver.cache.maxFds }, 'fd limits');
  log.info({ mountpoint, transport: record.transport, source: record.source, lowerdirs: cfg.lowerdirs, upperdir: cfg.upperdir, workdir: cfg.workdir, fuse: transport.fuseOptions() }, 'mounted');
  if (run.readyFd !== undefined) {
    try { fs.writeSync(run.readyFd, READY); fs.closeSync(run.readyFd); } catch { /* parent gone */ }
    // The parent read our stderr until now and leaves: from here on only the log file hears us.
    if (run.logFile === undefined) dest.detach();
  }
  const refresh = (): void => {
    record.updated = Math.max(Date.now(), record.updated + 1);
    record.counters = countersOf(transport, overlay);
    registerMount(record);
  };
  process.off('SIGTERM', onEarly);
  process.off('SIGINT', onEarly);
  return waitForEnd({ transport, overlay, mountpoint, mountId, log, dest, refresh, interactive: run.readyFd === undefined, early, lock });
}

function countersOf(transport: Transport, overlay: Overlay): Counters {
  const up = overlay.upperStats;
  // Node reads /proc for these: out of fds they throw, and counters must never stop a mount.
  let mem = { rss: 0, heapUsed: 0, external: 0 };
  try { mem = process.memoryUsage(); } catch { /* EMFILE: zeros this once */ }
  const c: Counters = {
    ops: transport.ops,
    openFiles: overlay.handles.size,
    copyUps: up?.copyUps ?? 0,
    bytesCopiedUp: up?.bytesCopiedUp ?? 0,
    whiteouts: up?.whiteouts ?? 0,
    rssBytes: mem.rss,
    heapUsedBytes: mem.heapUsed,
    externalBytes: mem.external,
    dirCacheEntries: overlay.resolver.cache.size,
    dirCacheFds: overlay.resolver.cache.fdCount,
  };
  // Less the one readdir itself holds open while it lists.
  try { c.fds = fs.readdirSync('/proc/self/fd').length - 1; } catch { /* no /proc */ }
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
  /** Started with -f by a person (not detached): also say things on stderr. */
  interactive: boolean;
  /** Signals that came while mounting. */
  early: NodeJS.Signals[];
  /** upperdir and workdir: let go as soon as the mount is gone, for the next mount of them. */
  lock: LayerLock;
}

function waitForEnd(s: Serving): Promise<number> {
  const { transport, overlay, mountpoint, log } = s;
  return new Promise((resolve) => {
    let finished = false;
    const mountinfo = new MountinfoReader();
    const finish = (code: number): void => {
      if (finished) return;
      finished = true;
      clearInterval(watch);
      mountinfo.close();
      unregisterMount(process.pid);
      transport.close();
      overlay.close();
      s.lock.release();
      log.info({ mountpoint, code }, 'daemon exits');
      resolve(code);
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
    const onSignal = async (sig: NodeJS.Signals): Promise<void> => {
      // Async: a mount made through fusermount3 is unmounted by it, and it needs us to answer.
      const r = await transport.unmount(false);
      if (finished) return;
      if (r === 0 || !stillMounted()) {
        log.info({ sig, mountpoint }, 'unmounted on signal');
        finish(0);
        return;
      }
      // Busy: keep serving rather than leave a broken mount behind.
      const msg = r === -16 /* EBUSY */
        ? `cannot unmount ${mountpoint}: it is busy (a process uses it); still serving`
        : `cannot unmount ${mountpoint} (errno ${-r}); still serving`;
      log.warn({ sig, errno: -r, mountpoint }, msg);
      if (s.interactive) process.stderr.write(`overlayd: ${msg}\n`);
    };
    process.on('SIGTERM', (sig) => void onSignal(sig));
    process.on('SIGINT', (sig) => void onSignal(sig));
    process.on('SIGHUP', () => log.info('SIGHUP ignored'));
    process.on('SIGUSR1', () => s.refresh());
    // Whatever goes wrong unexpectedly, leave no dead mount behind: say why, unmount, exit.
    const fatal = (err: unknown): void => {
      log.fatal({ err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) }, 'daemon crashed; unmounting');
      if (s.interactive) process.stderr.write(`overlayd: crashed: ${err instanceof Error ? err.stack : String(err)}\n`);
      void (async () => {
        try {
          if ((await transport.unmount(false)) !== 0 && stillMounted()) await transport.unmount(true);
        } finally {
          finish(1);
        }
      })();
    };
    process.on('uncaughtException', fatal);
    process.on('unhandledRejection', fatal);
    if (s.early.length > 0) setImmediate(() => void onSignal(s.early[0]));
    // fuse-native gives no event when someone else unmounts; notice it through mountinfo.
    let ticks = 0;
    let lastOps = -1;
    const watch = setInterval(() => {
      if (!stillMounted()) {
        log.info({ mountpoint }, 'unmounted externally');
        finish(0);
        return;
      }
      if (++ticks % REFRESH_EVERY === 0 && transport.ops !== lastOps) {
        lastOps = transport.ops;
        s.refresh();
      }
    }, WATCH_MS);
  });
}

export interface DetachOptions {
  /** Arguments for node: the script and the `mount --foreground` command line of the child. */
  args: string[];
  logFile?: string;
  /** Give up (and stop the child) if it has said nothing by then. */
  timeoutMs?: number;
}

/**
 * Starts the daemon detached (setsid, stdin closed, stdout and stderr to the log file or, while
 * it starts, to us) with a pipe on fd 3; resolves with the exit code the parent should return:
 * 0 once the child says ready, else the child's, after printing why it failed.
 */
export function detach(opts: DetachOptions): Promise<number> {
  return new Promise((resolve) => {
    const logFd = opts.logFile !== undefined ? openLogFile(opts.logFile) : undefined;
    const out = logFd ?? 'ignore';
    const err = logFd ?? 'pipe';
    const child = spawn(process.execPath, [...daemonNodeArgs(), ...opts.args], {
      detached: true,
      cwd: process.cwd(),
      stdio: ['ignore', out, err, 'pipe'],
    });
    if (logFd !== undefined) fs.closeSync(logFd);
    let said = '';
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => { stderr += d; });
    const ready = child.stdio[3] as NodeJS.ReadableStream & { destroy(): void };
    ready.setEncoding('utf8');
    ready.on('data', (d: string) => { said += d; });
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      process.stderr.write(`overlayd: the mount did not come up within ${Math.round((opts.timeoutMs ?? 30000) / 1000)}s; stopping it\n`);
      child.kill('SIGTERM');
      ready.destroy();
      child.stderr?.destroy();
      resolve(1);
    }, opts.timeoutMs ?? 30000);
    const exited = new Promise<number>((res) => {
      if (child.exitCode !== null) res(child.exitCode);
      else child.once('exit', (c) => res(c ?? 1));
    });
    ready.on('end', () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      ready.destroy();
      if (said === READY) {
        child.stderr?.destroy();
        child.unref();
        resolve(0);
        return;
      }
      void exited.then((code) => {
        const reason = said.trim();
        const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '' && l !== reason && !l.startsWith('{'));
        for (const l of lines) process.stderr.write(l.startsWith('overlayd:') ? `${l}\n` : `overlayd: ${l}\n`);
        if (reason !== '') process.stderr.write(`${reason}\n`);
        else if (lines.length === 0) process.stderr.write(`overlayd: the daemon exited (code ${code}) before the mount was ready${opts.logFile ? `; see ${opts.logFile}` : ''}\n`);
        resolve(code || 1);
      });
    });
  });
}

/** In the detached child: say why the mount failed to the waiting parent. */
export function reportFailure(readyFd: number | undefined, message: string): void {
  if (readyFd === undefined) return;
  try { fs.writeSync(readyFd, `overlayd: ${message}\n`); fs.closeSync(readyFd); } catch { /* parent gone */ }
}

/** The core's event details with names (binary strings) as text. */
function readable(detail: Record<string, unknown> = {}): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(detail)) out[k] = typeof v === 'string' ? shown(v) : v;
  return out;
}
