// podman and buildah pointed at a storage of their own, with a chosen mount program (overlayd,
// fuse-overlayfs) or none (the kernel's overlay), and a base image from Debian's static busybox
// (no registry). Used by the benchmark's podman job and by the engine tests (test/engines).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export const BUSYBOX = '/bin/busybox';
export const MAX_STORAGE_DIR = 44;

/** The hard limit of a resource of this process, from /proc/self/limits. */
function hardLimit(label: string): number {
  const line = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith(label)) ?? '';
  const hard = line.slice(label.length).trim().split(/\s+/)[1];
  return hard === undefined || hard === 'unlimited' ? Infinity : Number(hard);
}

/**
 * Writes storage.conf and containers.conf for one storage in `dir`: driver overlay with
 * `mountProgram` as its mount_program (undefined: the kernel's overlay), `mountOpts` as its
 * mountopt (none by default, as engines are configured), graphroot, runroot and every other
 * state directory inside `dir`; runc, cgroupfs, file events, no network. Returns the environment
 * that points podman and buildah there.
 */
export function podmanEnv(dir: string, mountProgram: string | undefined, mountOpts: string[] = []): Record<string, string> {
  // podman 4.3 with a runroot this long waits 20 s for every container's exit ("Exceeded
  // conmon timeout waiting for container to exit"), whatever the mount program: measured,
  // 46 characters for `dir` were fine, 48 were not.
  if (dir.length > MAX_STORAGE_DIR) throw new Error(`podman storage directory ${dir}: longer than ${MAX_STORAGE_DIR} characters`);
  fs.mkdirSync(dir, { recursive: true });
  const storage = path.join(dir, 'storage.conf');
  const overlay = [
    ...(mountProgram !== undefined ? [`mount_program = "${mountProgram}"`] : []),
    ...(mountOpts.length > 0 ? [`mountopt = "${mountOpts.join(',')}"`] : []),
  ];
  fs.writeFileSync(storage, [
    '[storage]',
    'driver = "overlay"',
    `graphroot = "${dir}/graph"`,
    `runroot = "${dir}/run"`,
    `rootless_storage_path = "${dir}/graph"`,
    ...(overlay.length > 0 ? ['[storage.options.overlay]', ...overlay] : []),
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

/**
 * A tar of a tiny root file system in `dir`: Debian's static busybox and its applets, /etc with
 * a few files to delete and change, /tmp for everyone, a home for uid 1000. Owners, order and
 * times are fixed, so two imports make the same image.
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
  fs.rmSync(root, { recursive: true, force: true });
  return tar;
}

/** The benchmark's build: a few hundred small files, a copy of /bin, deletions and chmods. */
export const BENCH_CONTAINERFILE = `FROM localhost/base
RUN mkdir /work && i=0 && while [ $i -lt 500 ]; do echo "file $i" > /work/f$i; i=$((i+1)); done
RUN cp -a /bin /work/bin && rm /work/f1* && chmod -R go-w /work
RUN rm -r /etc/keep && find /work -type f | wc -l > /count && echo done > /etc/done
`;

/**
 * A build as engines run many: 20 RUN steps, each a layer of its own (a mount, a container and a
 * commit per step), each changing a little: the per-step cost of the mount program dominates.
 */
export const BENCH_CONTAINERFILE_20 = ['FROM localhost/base', ...Array.from({ length: 20 }, (_, i) =>
  `RUN mkdir -p /steps/s${i} && echo ${i} > /steps/s${i}/f && ${i > 0 ? `rm /steps/s${i - 1}/f && ` : ''}echo ${i} >> /etc/motd`), ''].join('\n');

/** Runs `cmd` with the storage's environment; throws with its output unless it exits 0. */
function must(cmd: string, args: string[], env: Record<string, string>): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}: ${(r.stderr ?? '').trim().split('\n').slice(-5).join('\n')}`);
}

function seconds(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

/**
 * The benchmark's podman job on a fresh storage in `dir`: the time of a `podman build
 * --no-cache` of BENCH_CONTAINERFILE and of BENCH_CONTAINERFILE_20, and of `podman run --rm
 * true` (the mean of 3 after one untimed run).
 */
export function podmanJob(dir: string, mountProgram: string | undefined, mountOpts: string[], extraEnv: Record<string, string>): { build: number; build20: number; run: number } {
  const env = { ...podmanEnv(dir, mountProgram, mountOpts), ...extraEnv };
  must('podman', ['import', busyboxRootfs(dir), 'localhost/base'], env);
  const build = (name: string, containerfile: string): number => {
    const ctx = path.join(dir, `ctx-${name}`);
    fs.mkdirSync(ctx);
    fs.writeFileSync(path.join(ctx, 'Containerfile'), containerfile);
    return seconds(() => must('podman', ['build', '--no-cache', '--network', 'none', '-t', `localhost/${name}`, ctx], env));
  };
  const build3 = build('bench', BENCH_CONTAINERFILE);
  const build20 = build('bench20', BENCH_CONTAINERFILE_20);
  const runOnce = (): void => must('podman', ['run', '--rm', 'localhost/bench', 'true'], env);
  runOnce();
  const run = (seconds(runOnce) + seconds(runOnce) + seconds(runOnce)) / 3;
  return { build: build3, build20, run };
}
