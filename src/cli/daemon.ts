// Running a mount: in the foreground, or detached (a new session, stdio closed or sent to the
// log file) with the parent waiting until the child reports that the kernel has sent INIT, or
// why it failed, so `overlayd mount` returns 0 only once the mount serves and otherwise says
// why with nothing left mounted.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { sys } from '../host/native';
import { openLogFile } from '../log/logger';
import { startMount, type RunOptions } from './mount-session';
import { daemonNodeArgs } from './node-flags';

export type { RunOptions } from './mount-session';

const READY = 'ready\n';

/**
 * A daemon of its own for one mount (-f, or detached by today's `overlayd mount`): the
 * process-wide settings, the signals, and a crash that unmounts. Resolves with the exit code.
 */
export async function serve(run: RunOptions): Promise<number> {
  setDaemonProcess();
  // A stop request while mounting is kept, and acted on once the mount serves: dying halfway
  // could leave a dead mount.
  const early: NodeJS.Signals[] = [];
  const onEarly = (sig: NodeJS.Signals): void => { early.push(sig); };
  process.on('SIGTERM', onEarly);
  process.on('SIGINT', onEarly);
  const mount = await startMount(run, { seq: 1, detached: run.readyFd !== undefined, interactive: run.readyFd === undefined });
  mount.log.info({ nofile: NOFILE }, 'fd limits');
  if (run.readyFd !== undefined) {
    try { fs.writeSync(run.readyFd, READY); fs.closeSync(run.readyFd); } catch { /* parent gone */ }
  }
  process.off('SIGTERM', onEarly);
  process.off('SIGINT', onEarly);
  process.on('SIGTERM', (sig) => void mount.stop(sig));
  process.on('SIGINT', (sig) => void mount.stop(sig));
  process.on('SIGHUP', () => mount.log.info('SIGHUP ignored'));
  process.on('SIGUSR1', () => mount.refresh());
  process.on('uncaughtException', (err) => mount.crash(err));
  process.on('unhandledRejection', (err) => mount.crash(err));
  if (early.length > 0) setImmediate(() => void mount.stop(early[0]));
  return mount.ended;
}

let NOFILE = 0;

/** What a process serving mounts sets once, for all of them. */
export function setDaemonProcess(): void {
  // Modes arrive already masked by the caller's umask (the kernel applies it before FUSE sees
  // the request); the daemon's own umask must not mask them a second time.
  process.umask(0);
  // A daemon holds no directory busy: every path it was given is absolute by now.
  process.chdir('/');
  // Each file a client holds open is an fd here, and the directory cache is sized from this
  // limit: take all we may (node does too at start, but that is node's choice, not a promise).
  NOFILE = sys.nofileLimit(1);
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

