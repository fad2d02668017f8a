// What the engine suites share: a scratch directory that takes everything with it at teardown
// (the processes started in it, the mounts beneath it, then the tree), and tar listings to
// compare what two mount programs produced; the base image and podman's and buildah's config
// files come from src/bench/podman.ts, which the benchmark's podman job uses too. The suites
// run once, on the default transport, inside the private mount namespace scripts/test.sh makes.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BUSYBOX, MAX_STORAGE_DIR, busyboxRootfs, podmanEnv } from '../../src/bench/podman';
import { CLIENT } from './mounts';
import { run, type Ran } from './proc';
import { removeTree } from './stack';

export { BUSYBOX, busyboxRootfs, podmanEnv };
/** The mount program the engines run, as the README tells them: the mount client (a mount starts no node). */
export const BIN = CLIENT;
export const FUSE_OVERLAYFS = '/usr/bin/fuse-overlayfs';

export function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    const p = path.join(dir, cmd);
    try { fs.accessSync(p, fs.constants.X_OK); return p; } catch { /* next */ }
  }
  return undefined;
}

/** Why a suite cannot run here, naming what is missing; undefined when it can. */
export function missing(needs: [cmd: string, debianPackage: string][]): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root';
  for (const [cmd, pkg] of needs) {
    if (cmd.startsWith('/') ? !fs.existsSync(cmd) : which(cmd) === undefined) return `needs ${cmd} (Debian: ${pkg}; scripts/setup.sh installs it)`;
  }
  return undefined;
}

/** The mount points under `dir`, deepest first (mountinfo escapes blanks as octal). */
export function mountsUnder(dir: string): string[] {
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
    .map((l) => unescape(l.split(' ')[4] ?? ''))
    .filter((m) => m === dir || m.startsWith(dir + '/'))
    .sort((a, b) => b.length - a.length);
}

/** Processes whose command line names `dir`: what the engines started for this suite and left. */
function processesNaming(dir: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(dir)) out.push(Number(e));
    } catch { /* gone */ }
  }
  return out;
}

/** Where a suite keeps the storage of each mount program: short, see MAX_STORAGE_DIR. */
export const STORAGE = { overlayd: 'od', 'fuse-overlayfs': 'fo' } as const;

/**
 * A fresh directory /tmp/overlayd-engines-NAME-*; at teardown the processes started with it in
 * their command line are killed, the mounts beneath it detached, and the tree removed.
 */
export function scratch(t: { teardown(fn: () => void | Promise<void>): void }, name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `overlayd-engines-${name}-`));
  if (path.join(dir, 'fo').length > MAX_STORAGE_DIR) throw new Error(`${dir}: too long a path for podman's storage (TMPDIR?)`);
  fs.chmodSync(dir, 0o755); // other uids (--user 1000, rootless podman) walk through it
  t.teardown(() => {
    for (const pid of processesNaming(dir)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    for (const m of mountsUnder(dir)) spawnSync('umount', ['-l', m]);
    removeTree(dir);
  });
  return dir;
}

/** Runs a command with `env` added; rejects with its output unless it exits 0. */
export async function must(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, opts: { cwd?: string } = {}): Promise<string> {
  const r: Ran = await run(cmd, args, { env, cwd: opts.cwd });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

export interface TarEntry { name: string; type: string; mode: string; uid: number; gid: number; size?: number; sha256?: string; link?: string; dev?: number[]; xattrs?: Record<string, string> }

/** test/lib/tarlist.py: the entries of a tar, or each layer's of a docker-archive. */
export async function tarEntries(file: string): Promise<TarEntry[]> {
  return JSON.parse(await must('python3', [path.join(__dirname, 'tarlist.py'), file])) as TarEntry[];
}

export async function layerEntries(file: string): Promise<TarEntry[][]> {
  return JSON.parse(await must('python3', [path.join(__dirname, 'tarlist.py'), '--layers', file])) as TarEntry[][];
}
