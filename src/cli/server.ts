// The resident server: one process per (user namespace, mount namespace) serving every mount
// asked of it, each its own FUSE session on this one event loop (mount-session.ts). Started
// detached by the first client that finds none (`overlayd serve`, hidden); of two started at
// once the one holding the lock next to the socket serves, the other leaves. It answers a
// request once the mount serves, with the exit code and stderr text `overlayd mount` has, and
// leaves by itself IDLE_MS after its last mount is gone.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { FdPool } from '../core/fdshare';
import { sys } from '../host/native';
import { setDaemonProcess } from './daemon';
import { startMount, type ActiveMount, type RunOptions } from './mount-session';
import { daemonNodeArgs } from './node-flags';
import { makeRunDir } from './registry';
import {
  decodeReply, decodeRequest, encodeReply, encodeRequest, overlaydEnv, sameEnv, serverSocketPath,
  type ServerReply, type ServerRequest,
} from './server-protocol';

/**
 * How long a server with no mount waits for another before it leaves: engines unmount and
 * mount again between a build's steps, seconds apart, and each restart costs a node start
 * (podman build, 3 steps: 10.8 s with 3 s, 8.0 s with 30 s, fuse-overlayfs 7.6 s).
 */
const IDLE_MS = Number(process.env.OVERLAYD_SERVER_IDLE_MS ?? 30000);
/** How long a server that finds the lock held waits for its holder to leave (an idle one on its way out). */
const LOCK_WAIT_MS = 2000;
/** How long a client waits for a server it started to listen. */
const START_WAIT_MS = 15000;

/** What a server does with one request's argv: run the CLI on it with this host for the mount. */
export type RequestRunner = (req: ServerRequest, host: MountHost, err: (s: string) => void) => Promise<number>;

/** Where the CLI starts a mount when it runs inside a server. */
export interface MountHost {
  start(run: RunOptions): Promise<void>;
  /**
   * The first of `paths` that reaches into a mount this server serves, found without touching
   * one: this thread would wait on itself (a stat of the mountpoint, a layer on one of them).
   */
  reachesOwnMount(paths: string[]): string | undefined;
}

const under = (p: string, mp: string): boolean => p === mp || p.startsWith(mp === '/' ? '/' : `${mp}/`);

/**
 * Whether absolute path `p`, its symlinks followed, passes through one of `mountpoints`,
 * checking each component before it is looked at.
 */
export function reachesAny(p: string, mountpoints: string[]): boolean {
  let todo = path.resolve(p).split('/').filter((c) => c !== '');
  let at = '/';
  for (let hops = 0; todo.length > 0;) {
    const next = path.join(at, todo.shift() as string);
    if (mountpoints.some((mp) => under(next, mp))) return true;
    let target: string;
    try {
      if (!fs.lstatSync(next).isSymbolicLink()) { at = next; continue; }
      target = fs.readlinkSync(next);
    } catch {
      at = next; // missing: nothing further to follow, the mount itself says why
      continue;
    }
    if (++hops > 40) return false; // ELOOP is the mount's to report
    todo = [...target.split('/').filter((c) => c !== ''), ...todo];
    at = target.startsWith('/') ? '/' : at;
  }
  return mountpoints.some((mp) => under(at, mp));
}

/** Thrown by the CLI inside a server for a request it should not serve (see server-protocol.ts). */
export class Delegate extends Error {
  constructor(why: string) { super(why); }
}

/** Whether mounts go through a resident server (OVERLAYD_SERVER=0: a daemon of its own per mount, as before). */
export function serverMode(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.OVERLAYD_SERVER !== '0' && env.OVERLAYD_SERVER !== 'off';
}

function lockFor(sock: string): number | undefined {
  const fd = fs.openSync(`${sock}.lock`, 'a', 0o600);
  const deadline = Date.now() + LOCK_WAIT_MS;
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    if (sys.flock(fd, sys.constants.LOCK_EX | sys.constants.LOCK_NB) === 0) return fd;
    if (Date.now() > deadline) { fs.closeSync(fd); return undefined; }
    Atomics.wait(sleeper, 0, 0, 10);
  }
}

/** `overlayd serve`: runs until idle. Resolves with the exit code. */
export async function serverMain(runner: RequestRunner): Promise<number> {
  try {
    makeRunDir((process.getuid?.() ?? 0) === 0 ? 0o755 : 0o700);
  } catch (err) {
    // Our client then mounts with a daemon of its own (see askServer).
    process.stderr.write(`overlayd: ${(err as Error).message}\n`);
    return 1;
  }
  const sock = serverSocketPath();
  const lockFd = lockFor(sock);
  if (lockFd === undefined) return 0; // another server has it: our client connects to that one
  setDaemonProcess();
  // After setDaemonProcess: the limit it raised to the hard one.
  const fds = new FdPool(sys.nofileLimit(0));
  const env = overlaydEnv();
  const mounts = new Set<ActiveMount>();
  let starting = 0;
  let stopping = false;
  let seq = 0;
  let idle: NodeJS.Timeout | undefined;
  let exit: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => { exit = resolve; });
  const server = net.createServer({ allowHalfOpen: true });
  const leave = (): void => {
    // Stop listening and free the name before the lock: a client that finds no socket starts
    // the next server, which then gets the lock.
    server.close();
    try { fs.unlinkSync(sock); } catch { /* gone */ }
    fs.closeSync(lockFd);
    exit(0);
  };
  const checkIdle = (): void => {
    if (idle !== undefined) { clearTimeout(idle); idle = undefined; }
    if (mounts.size > 0 || starting > 0) return;
    if (stopping) { leave(); return; }
    idle = setTimeout(leave, IDLE_MS);
  };
  const host: MountHost = {
    async start(run: RunOptions): Promise<void> {
      const m = await startMount(run, { seq: ++seq, detached: true, interactive: false, fds });
      mounts.add(m);
      void m.ended.then(() => { mounts.delete(m); checkIdle(); });
      if (stopping) void m.stop('SIGTERM');
    },
    reachesOwnMount(paths: string[]): string | undefined {
      const mps = [...mounts].map((m) => m.mountpoint);
      return paths.find((p) => reachesAny(p, mps));
    },
  };
  const handle = async (raw: Buffer): Promise<ServerReply> => {
    const req = decodeRequest(raw);
    if (req instanceof Error) return { code: 2, stderr: `overlayd: ${req.message}\n` };
    if (!sameEnv(req.env, env) || stopping) return 'delegate';
    let stderr = '';
    try {
      const code = await runner(req, host, (s) => { stderr += s; });
      return { code, stderr };
    } catch (err) {
      if (err instanceof Delegate) return 'delegate';
      return { code: 1, stderr: `${stderr}overlayd: ${err instanceof Error ? err.message : String(err)}\n` };
    }
  };
  server.on('connection', (conn) => {
    // A request in progress keeps the server from leaving.
    starting++;
    checkIdle();
    let counted = true;
    let asked = false;
    const release = (): void => {
      if (!counted) return;
      counted = false;
      starting--;
      checkIdle();
    };
    const chunks: Buffer[] = [];
    conn.on('error', () => undefined); // a client that left: its mount stays, as a daemon's does
    conn.on('data', (d: Buffer) => chunks.push(d));
    conn.on('end', () => {
      asked = true;
      void handle(Buffer.concat(chunks)).then((reply) => {
        if (!conn.destroyed) conn.end(encodeReply(reply));
        release();
      });
    });
    conn.on('close', () => { if (!asked) release(); });
  });
  try { fs.unlinkSync(sock); } catch { /* none */ }
  const umask = process.umask(0o177); // the socket is the owner's alone: a request runs with our privileges
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(sock, resolve); });
  process.umask(umask);
  const onStop = (sig: NodeJS.Signals): void => {
    stopping = true;
    for (const m of mounts) void m.stop(sig);
    checkIdle();
  };
  process.on('SIGTERM', onStop);
  process.on('SIGINT', onStop);
  process.on('SIGHUP', () => undefined);
  process.on('SIGUSR1', () => { for (const m of mounts) m.refresh(); });
  // A failure no session owns (a session's own end their request or their mount, see
  // session.ts) must not take every mount down: each mount's log hears of it, all keep serving.
  const stray = (err: unknown): void => {
    for (const m of mounts) m.log.error({ err: err instanceof Error ? { message: err.message, stack: err.stack } : String(err) }, 'the server caught an error no mount owns; serving on');
  };
  process.on('uncaughtException', stray);
  process.on('unhandledRejection', stray);
  checkIdle();
  return done;
}

/**
 * The client's side, for the Node CLI (native/client.c is the other): send the request to this
 * namespace's server, starting one when none answers. Resolves with its reply.
 */
export async function askServer(argv: string[], cwd: string): Promise<ServerReply> {
  const sock = serverSocketPath();
  const req = encodeRequest({ cwd, argv, env: overlaydEnv() });
  let conn = await connect(sock);
  if (conn === undefined) {
    // Exit 0: another server won the lock, wait for it; otherwise it could not serve here (a
    // run dir it cannot write): a daemon of its own mounts.
    let failed = false;
    startServer().once('exit', (code) => { failed = code !== 0; });
    const deadline = Date.now() + START_WAIT_MS;
    while (conn === undefined && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
      conn = await connect(sock);
      if (conn === undefined && failed) return 'delegate';
    }
    if (conn === undefined) throw new Error(`no overlayd server answers on ${sock}`);
  }
  const c = conn;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    c.on('data', (d: Buffer) => chunks.push(d));
    c.on('error', reject);
    c.on('end', () => {
      const r = decodeReply(Buffer.concat(chunks));
      if (r instanceof Error) reject(r); else resolve(r);
    });
    c.end(req);
  });
}

function connect(sock: string): Promise<net.Socket | undefined> {
  return new Promise((resolve) => {
    const c = net.createConnection({ path: sock, allowHalfOpen: true });
    c.once('connect', () => { c.off('error', fail); resolve(c); });
    const fail = (): void => { c.destroy(); resolve(undefined); };
    c.once('error', fail);
  });
}

function startServer(): ChildProcess {
  const bin = path.join(__dirname, '..', '..', 'bin', 'overlayd');
  const child = spawn(process.execPath, [...daemonNodeArgs(), bin, 'serve'], { detached: true, stdio: 'ignore', cwd: '/' });
  child.unref();
  return child;
}
