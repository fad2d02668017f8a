// What the engine suites share: a scratch directory that takes everything with it at teardown
// (the processes started in it, the mounts beneath it, then the tree), a busybox rootfs as the
// base image (no registry), podman's and buildah's config files, and tar listings to compare
// what two mount programs produced. The suites run once, on the default transport, inside the
// private mount namespace scripts/test.sh makes.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BIN } from '../lib/mounts';
import { run, type Ran } from '../lib/proc';
import { removeTree } from '../lib/stack';

export { BIN };
export const FUSE_OVERLAYFS = '/usr/bin/fuse-overlayfs';
export const BUSYBOX = '/bin/busybox';

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

/**
 * A fresh directory /tmp/overlayd-engines-NAME-*; at teardown the processes started with it in
 * their command line are killed, the mounts beneath it detached, and the tree removed.
 */
export function scratch(t: { teardown(fn: () => void | Promise<void>): void }, name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `overlayd-engines-${name}-`));
  fs.chmodSync(dir, 0o755); // other uids (--user 1000, rootless podman) walk through it
  t.teardown(() => {
    for (const pid of processesNaming(dir)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    for (const m of mountsUnder(dir)) spawnSync('umount', ['-l', m]);
    removeTree(dir);
  });
  return dir;
}

/**
 * A tar of a tiny root file system: Debian's static busybox and its applets, /etc with a few
 * files to delete and change, /tmp for everyone. Owners, order and times are fixed, so two
 * imports are the same image.
 */
export function busyboxRootfs(dir: string): string {
  const root = path.join(dir, 'rootfs');
  for (const d of ['bin', 'etc/keep', 'tmp', 'root', 'home/user']) fs.mkdirSync(path.join(root, d), { recursive: true });
  fs.copyFileSync(BUSYBOX, path.join(root, 'bin/busybox'));
  fs.chmodSync(path.join(root, 'bin/busybox'), 0o755);
  const applets = spawnSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).stdout.split('\n').filter((a) => a !== '' && a !== 'busybox');
  for (const a of applets) fs.symlinkSync('busybox', path.join(root, 'bin', a));
  fs.writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n');
  fs.writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\nuser:x:1000:\n');
  fs.writeFileSync(path.join(root, 'etc/motd'), 'hello from the lower layer\n');
  fs.writeFileSync(path.join(root, 'etc/keep/a'), 'a\n');
  fs.writeFileSync(path.join(root, 'etc/keep/b'), 'b\n');
  fs.chmodSync(path.join(root, 'tmp'), 0o1777);
  fs.chownSync(path.join(root, 'home/user'), 1000, 1000);
  const tar = path.join(dir, 'rootfs.tar');
  const r = spawnSync('tar', ['-C', root, '--sort=name', '--numeric-owner', '--mtime=@0', '-cf', tar, '.'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tar of the rootfs: ${r.stderr}`);
  removeTree(root);
  return tar;
}

/** The hard limit of a resource of this process, from /proc/self/limits. */
function hardLimit(label: string): number {
  const line = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith(label)) ?? '';
  const hard = line.slice(label.length).trim().split(/\s+/)[1];
  return hard === undefined || hard === 'unlimited' ? Infinity : Number(hard);
}

/**
 * podman's and buildah's configuration for one storage in `dir`: driver overlay with
 * `mountProgram` as its mount_program (none: the kernel's overlay), no mountopt, graphroot and
 * runroot and every other state directory inside `dir`; runc, cgroupfs, file events, no
 * network. Returns the environment that points them there.
 */
export function podmanEnv(dir: string, mountProgram: string | undefined): NodeJS.ProcessEnv {
  fs.mkdirSync(dir, { recursive: true });
  const storage = path.join(dir, 'storage.conf');
  fs.writeFileSync(storage, [
    '[storage]',
    'driver = "overlay"',
    `graphroot = "${dir}/graph"`,
    `runroot = "${dir}/run"`,
    `rootless_storage_path = "${dir}/graph"`,
    ...(mountProgram !== undefined ? ['[storage.options.overlay]', `mount_program = "${mountProgram}"`] : []),
    '',
  ].join('\n'));
  // podman raises RLIMIT_NOFILE and RLIMIT_NPROC to 1048576 in its containers, which fails
  // without CAP_SYS_RESOURCE (some sandboxes drop it): ask for what this process may give.
  const nofile = Math.min(hardLimit('Max open files'), 1048576);
  const conf = path.join(dir, 'containers.conf');
  fs.writeFileSync(conf, [
    '[containers]',
    'netns = "none"',
    `default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=4096:4096"]`,
    '[engine]',
    'runtime = "runc"',
    'cgroup_manager = "cgroupfs"',
    'events_logger = "file"',
    `events_logfile_path = "${dir}/events.log"`,
    `tmp_dir = "${dir}/libpod-tmp"`,
    `volume_path = "${dir}/volumes"`,
    '[network]',
    `network_config_dir = "${dir}/networks"`,
    '',
  ].join('\n'));
  return { CONTAINERS_STORAGE_CONF: storage, CONTAINERS_CONF: conf, TMPDIR: dir };
}

/** Runs a command with `env` added; rejects with its output unless it exits 0. */
export async function must(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, opts: { cwd?: string } = {}): Promise<string> {
  const r: Ran = await run(cmd, args, { env, cwd: opts.cwd });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  return r.stdout;
}

export interface TarEntry { name: string; type: string; mode: string; uid: number; gid: number; size?: number; sha256?: string; link?: string; dev?: number[]; xattrs?: Record<string, string> }

/** test/engines/tarlist.py: the entries of a tar, or each layer's of a docker-archive. */
export async function tarEntries(file: string): Promise<TarEntry[]> {
  return JSON.parse(await must('python3', [path.join(__dirname, 'tarlist.py'), file])) as TarEntry[];
}

export async function layerEntries(file: string): Promise<TarEntry[][]> {
  return JSON.parse(await must('python3', [path.join(__dirname, 'tarlist.py'), '--layers', file])) as TarEntry[][];
}
