// The systems under test, mounted the same way over the same layers: overlayd and
// fuse-overlayfs as foreground daemons we start (so we know their pid, for memory), kernel
// overlayfs with mount(8). Every mount is recorded and torn down by `unmountAll` whatever happens.
// Besides the default three, overlayd variants (other -o options, environment, or another
// build of overlayd) run as extra systems, so A/B comparisons share one noisy machine fairly.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { DAEMON_NODE_FLAGS } from '../cli/node-flags';
import { alive, isMounted, memoryOf, run, sleep } from './util';

/** noop: a do-nothing fuse-native file system (noopfs.ts), the transport's floor; probes only. */
export type SystemKind = 'overlayd' | 'fuse-overlayfs' | 'kernel' | 'noop';
export type SystemName = string;

export interface SystemSpec {
  name: SystemName;
  kind: SystemKind;
  /** Extra -o options (overlayd, fuse-overlayfs). */
  opts: string[];
  /** overlayd only: extra environment, extra node arguments, another bin/overlayd. */
  env: Record<string, string>;
  nodeArgs: string[];
  /** Another build's bin/overlayd (a --bin snapshot), reported as such. */
  bin?: string;
  /** This checkout's build, copied for the run (see run.ts); reported as the checkout's version. */
  build?: string;
}

export const DEFAULT_SYSTEMS: SystemName[] = ['overlayd', 'fuse-overlayfs', 'kernel'];

/** Systems known by name besides the default three. */
export const EXTRA_SYSTEMS: Record<string, SystemKind> = { 'fuse-native-noop': 'noop' };

export function baseSpec(name: SystemName): SystemSpec {
  const kind = (DEFAULT_SYSTEMS.includes(name) ? name : EXTRA_SYSTEMS[name]) as SystemKind | undefined;
  if (!kind) throw new Error(`unknown system ${name}`);
  return { name, kind, opts: [], env: {}, nodeArgs: kind === 'overlayd' ? [...DAEMON_NODE_FLAGS] : [] };
}

export interface Mount {
  system: SystemName;
  kind: SystemKind;
  merged: string;
  upper: string;
  work: string;
  /** The serving daemon, for FUSE systems. */
  pid?: number;
  unmount(): Promise<void>;
}

const REPO = path.resolve(__dirname, '..', '..');
const OVERLAYD_BIN = path.join(REPO, 'bin', 'overlayd');

const live = new Set<Mount>();

async function waitMounted(mp: string, pid: number, logFile: string, exit: () => string): Promise<void> {
  const deadline = Date.now() + 30000;
  while (!isMounted(mp)) {
    if (!alive(pid)) throw new Error(`daemon for ${mp} exited (${exit()}) before mounting: ${tail(logFile)}`);
    if (Date.now() > deadline) throw new Error(`${mp} not mounted after 30 s: ${tail(logFile)}`);
    await sleep(10);
  }
}

function tail(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-5).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Unmounts, waits for the daemon to leave, and kills it (by pid) if it will not. */
async function teardown(m: Mount): Promise<void> {
  if (isMounted(m.merged)) {
    try {
      run('umount', [m.merged]);
    } catch {
      try { run('umount', ['-l', m.merged]); } catch { /* reported by the caller's mountinfo check */ }
    }
  }
  if (m.pid !== undefined) {
    const deadline = Date.now() + 5000;
    while (alive(m.pid) && Date.now() < deadline) await sleep(10);
    if (alive(m.pid)) {
      try { process.kill(m.pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
}

/**
 * Mounts `system` over `lowers` with a fresh upper and work dir under `runDir`.
 * The daemon is started with a parent-death signal, so it cannot outlive the benchmark.
 */
export async function mountSystem(spec: SystemSpec, lowers: string[], runDir: string, extraOpts: string[] = []): Promise<Mount> {
  const system = spec.name;
  fs.rmSync(runDir, { recursive: true, force: true });
  const upper = path.join(runDir, 'upper');
  const work = path.join(runDir, 'work');
  const merged = path.join(runDir, 'merged');
  for (const d of [upper, work, merged]) fs.mkdirSync(d, { recursive: true });
  const layerOpts = `lowerdir=${lowers.join(':')},upperdir=${upper},workdir=${work}`;
  const logFile = path.join(runDir, 'daemon.log');
  let pid: number | undefined;

  const m: Mount = {
    system, kind: spec.kind, merged, upper, work,
    async unmount() {
      live.delete(m);
      await teardown(m);
    },
  };

  if (spec.kind === 'kernel') {
    run('mount', ['-t', 'overlay', 'overlay', '-o', layerOpts, merged]);
    live.add(m);
    return m;
  }

  const log = fs.openSync(logFile, 'a');
  try {
    const o = [layerOpts, ...spec.opts, ...extraOpts].join(',');
    const argv = spec.kind === 'overlayd'
      ? [process.execPath, ...spec.nodeArgs, spec.bin ?? spec.build ?? OVERLAYD_BIN, 'mount', '-f', '-o', o, merged]
      : spec.kind === 'noop'
        ? [process.execPath, path.join(__dirname, 'noopfs.js'), '-o', [...spec.opts, ...extraOpts].join(','), merged]
        : ['fuse-overlayfs', '-f', '-o', o, merged];
    const env = { ...process.env, ...spec.env };
    const child = spawn('setpriv', ['--pdeathsig', 'TERM', '--', ...argv], {
      stdio: ['ignore', log, log], detached: true, env, cwd: runDir,
    });
    let how = 'still running';
    child.on('error', (err) => { how = String(err); });
    child.on('exit', (code, sig) => { how = sig ? `signal ${sig}` : `status ${code}`; });
    pid = child.pid;
    if (pid === undefined) throw new Error(`cannot start ${system}`);
    m.pid = pid;
    live.add(m);
    await waitMounted(merged, pid, logFile, () => how);
  } catch (err) {
    await m.unmount();
    throw err;
  } finally {
    fs.closeSync(log);
  }
  return m;
}

/**
 * The mount program an engine runs for this system, which takes no node arguments of its own:
 * for overlayd its mount client, or (other node arguments) a script in `dir` running its build
 * with them; fuse-overlayfs from
 * PATH; the kernel, none (the engine's native overlay).
 */
export function engineMountProgram(spec: SystemSpec, dir: string): string | undefined {
  if (spec.kind === 'kernel') return undefined;
  if (spec.kind !== 'overlayd') return run('sh', ['-c', `command -v ${spec.kind}`]).trim();
  // With the daemon's own node flags, the mount client (native/client.c) as installed for engines.
  const client = path.join(path.dirname(spec.bin ?? spec.build ?? OVERLAYD_BIN), '..', 'native', 'build', 'overlayd-client');
  if (spec.nodeArgs.join(' ') === DAEMON_NODE_FLAGS.join(' ') && fs.existsSync(client)) return client;
  fs.mkdirSync(dir, { recursive: true });
  const script = path.join(dir, 'overlayd');
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  fs.writeFileSync(script, `#!/bin/sh\nexec ${[process.execPath, ...spec.nodeArgs, spec.bin ?? spec.build ?? OVERLAYD_BIN].map(q).join(' ')} "$@"\n`, { mode: 0o755 });
  return script;
}

/** CPU time (user + system, seconds) the mount's daemon has used so far, all threads. */
export function daemonCpu(m: Mount): number | undefined {
  if (m.pid === undefined) return undefined;
  try {
    const f = fs.readFileSync(`/proc/${m.pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

const CLOCK_TICKS = (() => {
  try { return Number(run('getconf', ['CLK_TCK']).trim()) || 100; } catch { return 100; }
})();

/** Peak RSS of a mount's daemon so far (VmHWM), or undefined for the kernel. */
export function peakRss(m: Mount): number | undefined {
  return m.pid === undefined ? undefined : memoryOf(m.pid)?.peak;
}

export async function unmountAll(): Promise<void> {
  for (const m of [...live]) await m.unmount();
}

/**
 * The FUSE transport an overlayd system mounts with: its -o transport=, else what that build's
 * CLI picks by default in the daemon's environment (kernel as root since cbb4f21).
 */
export function transportOf(spec: SystemSpec): string {
  const given = [...spec.opts].reverse().find((o) => o.startsWith('transport='));
  if (given) return given.slice('transport='.length);
  const bin = spec.bin ?? spec.build ?? OVERLAYD_BIN;
  const options = path.join(path.dirname(bin), '..', 'dist', 'cli', 'options.js');
  const r = spawnSync(process.execPath, ['-e', `process.stdout.write(String(require(${JSON.stringify(options)}).defaultTransport?.() ?? 'fuse-native'))`], {
    encoding: 'utf8', env: { ...process.env, ...spec.env },
  });
  return r.status === 0 && r.stdout ? r.stdout : 'unknown';
}

export function versionOf(spec: SystemSpec): string {
  const system = spec.kind;
  try {
    if (system === 'overlayd') {
      const t = transportOf(spec);
      if (spec.bin) return `build at ${spec.bin}, transport ${t}`;
      const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string };
      let rev = '';
      try { rev = run('git', ['-C', REPO, 'rev-parse', '--short', 'HEAD']).trim(); } catch { /* not a checkout */ }
      const dirty = (() => { try { return run('git', ['-C', REPO, 'status', '--porcelain', '--', 'src']).trim() ? '+dirty' : ''; } catch { return ''; } })();
      return `${pkg.version}${rev ? ` (${rev}${dirty})` : ''}, transport ${t}, node ${process.version}`;
    }
    if (system === 'noop') return `fuse-native ${JSON.parse(fs.readFileSync(path.join(REPO, 'node_modules', 'fuse-native', 'package.json'), 'utf8')).version as string}, no-op handlers`;
    if (system === 'fuse-overlayfs') {
      const r = spawnSync('fuse-overlayfs', ['--version'], { encoding: 'utf8' });
      const text = `${r.stdout}\n${r.stderr}`;
      const v = /fuse-overlayfs: version (\S+)/.exec(text)?.[1] ?? 'unknown';
      const lib = /FUSE library version:? (\S+)/i.exec(text)?.[1] ?? /fusermount3 version: (\S+)/.exec(text)?.[1];
      return lib ? `${v} (libfuse ${lib})` : v;
    }
    return `Linux ${run('uname', ['-r']).trim()}`;
  } catch {
    return 'unknown';
  }
}
