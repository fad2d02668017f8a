// Mounting overlayd and kernel overlayfs for integration tests. Tests run inside a private
// mount namespace (scripts/test.sh), and every mount made here is also torn down by `t.teardown`.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { tmpdir } from './tree';

// A server of its own for each test file (src/cli/server.ts serves every mount of a run dir and
// mount namespace): the files run in parallel in one namespace, and a test that stops or kills
// the process serving its mount must not take another file's mounts with it. Idle, it leaves
// soon after the file's last mount.
if (!process.env.OVERLAYD_RUN_DIR) process.env.OVERLAYD_RUN_DIR = tmpdir('overlayd-run-');
process.env.OVERLAYD_SERVER_IDLE_MS ??= '300';

export const ROOT = path.resolve(__dirname, '..', '..');
export const BIN = path.join(ROOT, 'bin', 'overlayd');
/** The mount client (native/client.c): what engines are told to run. */
export const CLIENT = path.join(ROOT, 'native', 'build', 'overlayd-client');

export interface Layout {
  lowers: string[];
  upper?: string;
  work?: string;
  merged: string;
}

/** Fresh empty dirs: n lowers, upper, work, merged. */
export function layout(n: number, withUpper = true): Layout {
  return layoutIn(tmpdir(), n, withUpper);
}

/** The same, under `base`. */
export function layoutIn(base: string, n: number, withUpper = true): Layout {
  const lowers = Array.from({ length: n }, (_, i) => path.join(base, `l${i}`));
  for (const l of lowers) fs.mkdirSync(l);
  const l: Layout = { lowers, merged: path.join(base, 'merged') };
  fs.mkdirSync(l.merged);
  if (withUpper) {
    l.upper = path.join(base, 'upper');
    l.work = path.join(base, 'work');
    fs.mkdirSync(l.upper);
    fs.mkdirSync(l.work);
  }
  return l;
}

export function optionString(l: Layout, extra: string[] = []): string {
  const esc = (p: string): string => p.replace(/\\/g, '\\\\').replace(/:/g, '\\:').replace(/,/g, '\\,');
  const o = [`lowerdir=${l.lowers.map(esc).join(':')}`];
  if (l.upper) o.push(`upperdir=${esc(l.upper)}`, `workdir=${esc(l.work as string)}`);
  return [...o, ...extra].join(',');
}

export function isMounted(mp: string): boolean {
  const text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  return text.split('\n').some((line) => line.split(' ')[4] === mp);
}

export interface Mounted {
  merged: string;
  daemon?: ChildProcess;
  unmount(): Promise<void>;
}

/** How overlayd speaks FUSE (its -o transport=). */
export type TransportName = 'fuse-native' | 'kernel';

/**
 * The transport tests mount overlayd with unless they say: env OVERLAYD_TRANSPORT, else the
 * daemon's default. `OVERLAYD_TRANSPORT=kernel tap test/integration` runs the suite on it.
 */
export const TRANSPORT: TransportName | undefined = ((): TransportName | undefined => {
  const t = process.env.OVERLAYD_TRANSPORT;
  if (t === undefined || t === '') return undefined;
  if (t !== 'fuse-native' && t !== 'kernel') throw new Error(`OVERLAYD_TRANSPORT=${t}: not a transport (fuse-native, kernel)`);
  return t;
})();

/** Whether overlayd mounts through fuse-native here (TRANSPORT, else root's default, kernel): its limits are todo. */
export const ON_FUSE_NATIVE = (TRANSPORT ?? 'kernel') === 'fuse-native';

/**
 * Starts `overlayd mount -f` as a child process and resolves once the mount serves. `transport`
 * (default TRANSPORT) is added as -o transport= unless `extra` already names one.
 */
export async function mountOverlayd(l: Layout, extra: string[] = [], env: NodeJS.ProcessEnv = {}, transport: TransportName | undefined = TRANSPORT): Promise<Mounted> {
  if (transport !== undefined && !extra.some((o) => o.startsWith('transport='))) extra = [...extra, `transport=${transport}`];
  // fuse-native cannot tell who lists xattrs, so it shows trusted.* only on a mount no one but
  // root may use (README, fuse-native); tests that let other users in say allow_other.
  const named = extra.find((o) => o.startsWith('transport='));
  if ((named ? named === 'transport=fuse-native' : ON_FUSE_NATIVE) && !extra.some((o) => /^(no)?allow_other$/.test(o))) extra = [...extra, 'noallow_other'];
  const daemon = spawn(process.execPath, [BIN, 'mount', '-f', '-o', optionString(l, extra), l.merged], {
    stdio: ['ignore', 'inherit', 'pipe'],
    env: { ...process.env, ...env },
  });
  let stderr = '';
  daemon.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); process.stderr.write(d); });
  const exited = new Promise<number | null>((resolve) => daemon.once('exit', resolve));
  const deadline = Date.now() + 20000;
  while (!isMounted(l.merged)) {
    if (daemon.exitCode !== null) throw new Error(`overlayd exited ${daemon.exitCode}: ${stderr}`);
    if (Date.now() > deadline) { daemon.kill('SIGKILL'); throw new Error(`overlayd did not mount in time: ${stderr}`); }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    merged: l.merged,
    daemon,
    async unmount() {
      if (daemon.exitCode === null) {
        spawnSync('umount', [l.merged]);
        if (isMounted(l.merged)) spawnSync('umount', ['-l', l.merged]);
        const timer = setTimeout(() => daemon.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      } else if (isMounted(l.merged)) {
        spawnSync('umount', ['-l', l.merged]);
      }
    },
  };
}

/** The kernel's overlayfs over the same kind of layout: the oracle. */
export function mountKernel(l: Layout, extra: string[] = []): Mounted {
  const r = spawnSync('mount', ['-t', 'overlay', 'overlay', '-o', optionString(l, extra), l.merged], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`kernel overlay mount failed: ${r.stderr}`);
  return {
    merged: l.merged,
    async unmount() {
      spawnSync('umount', [l.merged]);
      if (isMounted(l.merged)) spawnSync('umount', ['-l', l.merged]);
    },
  };
}

/** Copies a layout's layer dirs (cp -a keeps whiteouts, xattrs, times) to a fresh layout. */
export function cloneLayout(src: Layout): Layout {
  const dst = layout(src.lowers.length, src.upper !== undefined);
  const copy = (a: string, b: string): void => {
    fs.rmSync(b, { recursive: true, force: true });
    const r = spawnSync('cp', ['-a', '--', a, b]);
    if (r.status !== 0) throw new Error(`cp -a ${a} ${b} failed`);
  };
  src.lowers.forEach((l, i) => copy(l, dst.lowers[i]));
  if (src.upper && dst.upper) copy(src.upper, dst.upper);
  return dst;
}
