// Running a mount: in the foreground, or detached with the parent waiting until the child
// reports that the kernel has sent INIT (or why it failed), so `overlayd mount` returns 0
// only once the mount serves.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { Overlay } from '../core/overlay';
import { FuseNativeTransport } from '../fuse/adapter';
import { createLogger, type LogLevel, type Logger } from '../log/logger';
import type { MountOptions } from './options';
import { validateLayout } from './validate';
import { registerMount, unregisterMount } from './registry';

export interface RunOptions {
  mountpoint: string;
  options: MountOptions;
  logLevel: LogLevel;
  logFile?: string;
  /** fd to report readiness on (set by the detaching parent). */
  readyFd?: number;
  /** The original -o strings, for status output. */
  optionStrings: string[];
}

const READY = 'ready\n';

/** Mounts and serves until unmounted or signalled. Resolves with the exit code. */
export async function serve(run: RunOptions): Promise<number> {
  const log = createLogger(run.logLevel, run.logFile);
  // Modes arrive already masked by the caller's umask (the kernel applies it before FUSE sees
  // the request); the daemon's own umask must not mask them a second time.
  process.umask(0);
  let overlay: Overlay;
  const mountpoint = validateLayout(run.options.overlay, run.mountpoint);
  try {
    overlay = new Overlay(run.options.overlay, {
      warn: (msg, detail) => log.warn(detail ?? {}, msg),
      error: (msg, detail) => log.error(detail ?? {}, msg),
    });
  } catch (err) {
    throw new Error(`cannot open layers: ${(err as Error).message}`);
  }
  const transport = new FuseNativeTransport(overlay, mountpoint, run.options.fuse, log);
  try {
    await transport.mount();
  } catch (err) {
    overlay.close();
    throw new Error(`cannot mount ${mountpoint}: ${(err as Error).message}`);
  }
  const record = { pid: process.pid, mountpoint, options: run.optionStrings, started: Date.now() };
  registerMount(record);
  log.info({ mountpoint, layers: overlay.stack.layers.map((l) => l.root) }, 'mounted');
  if (run.readyFd !== undefined) {
    try { fs.writeSync(run.readyFd, READY); fs.closeSync(run.readyFd); } catch { /* parent gone */ }
  }
  return waitForEnd(transport, overlay, mountpoint, log, () => registerMount({ ...record, counters: countersOf(transport, overlay) }));
}

function countersOf(transport: FuseNativeTransport, overlay: Overlay): Record<string, number> {
  const up = overlay.upperStats;
  return {
    ops: transport.ops,
    openFiles: overlay.handles.size,
    copyUps: up?.copyUps ?? 0,
    bytesCopiedUp: up?.bytesCopiedUp ?? 0,
    whiteouts: up?.whiteouts ?? 0,
    rssBytes: process.memoryUsage.rss(),
  };
}

function waitForEnd(transport: FuseNativeTransport, overlay: Overlay, mountpoint: string, log: Logger, refresh: () => void): Promise<number> {
  return new Promise((resolve) => {
    let finished = false;
    const finish = (code: number): void => {
      if (finished) return;
      finished = true;
      clearInterval(watch);
      unregisterMount(process.pid);
      transport.close();
      overlay.close();
      resolve(code);
    };
    const onSignal = (sig: NodeJS.Signals): void => {
      const r = transport.unmount(false);
      if (r === 0 || r === -22 /* EINVAL: no longer mounted */) {
        log.info({ sig }, 'unmounted on signal');
        finish(0);
        return;
      }
      // Busy: keep serving rather than leave a broken mount behind.
      log.warn({ sig, errno: -r }, `cannot unmount ${mountpoint}: it is busy; still serving`);
      process.stderr.write(`overlayd: ${mountpoint} is busy; still serving (unmount when it is free)\n`);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.on('SIGHUP', () => undefined);
    // fuse-native gives no event when someone else unmounts; notice it through mountinfo.
    let ticks = 0;
    const watch = setInterval(() => {
      if (!isMounted(mountpoint)) {
        log.info({ mountpoint }, 'unmounted externally');
        finish(0);
        return;
      }
      if (++ticks % 4 === 0) refresh();
    }, 500);
  });
}

function isMounted(mountpoint: string): boolean {
  let text = '';
  try { text = fs.readFileSync('/proc/self/mountinfo', 'utf8'); } catch { return false; }
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length > 4 && f[4].replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))) === mountpoint) {
      const dash = f.indexOf('-');
      if (dash > 0 && f[dash + 1] === 'fuse.overlayd') return true;
    }
  }
  return false;
}

/**
 * Starts this program again, detached, with --foreground and a pipe on fd 3; resolves with
 * the exit code the parent should return: 0 once the child says ready. The child's stdio is
 * closed: after this, it speaks only through its log.
 */
export function detach(argv: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...process.execArgv, ...argv, '--foreground', '--ready-fd', '3'], {
      detached: true,
      stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    });
    let said = '';
    const ready = child.stdio[3] as NodeJS.ReadableStream & { destroy(): void };
    ready.setEncoding('utf8');
    ready.on('data', (d: string) => { said += d; });
    ready.on('end', () => {
      ready.destroy();
      if (said === READY) {
        child.unref();
        resolve(0);
        return;
      }
      process.stderr.write(said.startsWith('overlayd: ') ? said : 'overlayd: mount failed before it was ready\n');
      const code = (c: number | null): void => resolve(c || 1);
      if (child.exitCode !== null) code(child.exitCode);
      else child.once('exit', code);
    });
  });
}

/** In the detached child: say why the mount failed to the waiting parent. */
export function reportFailure(readyFd: number | undefined, message: string): void {
  if (readyFd === undefined) return;
  try { fs.writeSync(readyFd, `overlayd: ${message}\n`); fs.closeSync(readyFd); } catch { /* parent gone */ }
}
