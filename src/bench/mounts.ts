// The mounts job: what a mount costs an engine that starts one per container and build step.
// Exec of the mount program (as engines run it: `PROG -o OPTS MERGED`, or mount(8) for the
// kernel) to its exit with the mount serving, with no overlayd server yet (cold) and with one
// serving (warm); then the memory of every process serving 1 and 20 mounts.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { SystemSpec } from './systems';
import { alive, isMounted, memoryOf, sleep } from './util';

const MOUNTS = 20;

/** The program an engine runs for overlayd: the build's mount client (native/client.c). */
function overlaydClient(spec: SystemSpec): string {
  const bin = spec.bin ?? spec.build;
  if (bin === undefined) throw new Error('overlayd: no build to run');
  return path.join(path.dirname(bin), '..', 'native', 'build', 'overlayd-client');
}

/** Pids of the processes serving mounts under `dir`: overlayd's from its records, fuse-overlayfs' from their command lines. */
function servingPids(spec: SystemSpec, dir: string, runDir: string): number[] {
  if (spec.kind === 'overlayd') {
    const pids = fs.readdirSync(runDir).map((n) => /^(\d+)-\d+\.json$/.exec(n)?.[1]).filter((p): p is string => p !== undefined).map(Number);
    return [...new Set(pids)];
  }
  const out: number[] = [];
  for (const n of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = fs.readFileSync(`/proc/${n}/cmdline`, 'utf8').split('\0');
      if (path.basename(cmd[0]) === 'fuse-overlayfs' && cmd.some((a) => a.startsWith(dir + '/'))) out.push(Number(n));
    } catch { /* gone */ }
  }
  return out;
}

function rssOf(pids: number[]): number {
  return pids.reduce((sum, p) => sum + (memoryOf(p)?.rss ?? NaN), 0);
}

/** Mounts layout `i` under `dir`; resolves with the seconds from exec to the program's exit (serving). */
function mountOne(spec: SystemSpec, dir: string, runDir: string, i: number): number {
  const base = path.join(dir, `m${i}`);
  const [upper, work, merged] = ['upper', 'work', 'merged'].map((d) => path.join(base, d));
  for (const d of [upper, work, merged]) fs.mkdirSync(d, { recursive: true });
  const o = [`lowerdir=${path.join(dir, 'lower')}`, `upperdir=${upper}`, `workdir=${work}`, ...spec.opts].join(',');
  const [cmd, args] = spec.kind === 'kernel'
    ? ['mount', ['-t', 'overlay', 'overlay', '-o', o, merged]]
    : spec.kind === 'overlayd' ? [overlaydClient(spec), ['-o', o, merged]] : ['fuse-overlayfs', ['-o', o, merged]];
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...spec.env, OVERLAYD_RUN_DIR: runDir, OVERLAYD_SERVER_IDLE_MS: '200' }, stdio: ['ignore', 'ignore', 'pipe'] });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0 || !isMounted(merged)) throw new Error(`${spec.name}: mount ${i} failed (${r.status}): ${r.stderr}`);
  return s;
}

export async function mountsJob(spec: SystemSpec, dir: string): Promise<Record<string, number>> {
  const runDir = path.join(dir, 'run');
  fs.mkdirSync(path.join(dir, 'lower', 'etc'), { recursive: true });
  fs.mkdirSync(runDir);
  fs.writeFileSync(path.join(dir, 'lower', 'etc', 'hostname'), 'bench\n');
  const merged = (i: number): string => path.join(dir, `m${i}`, 'merged');
  const out: Record<string, number> = {};
  let pids: number[] = [];
  try {
    out['mount-cold'] = mountOne(spec, dir, runDir, 0);
    pids = servingPids(spec, dir, runDir);
    out['mount-rss-1'] = rssOf(pids);
    out['mount-warm'] = mountOne(spec, dir, runDir, 1);
    for (let i = 2; i < MOUNTS; i++) mountOne(spec, dir, runDir, i);
    // Every mount used a little, as a container's would be.
    for (let i = 0; i < MOUNTS; i++) fs.readFileSync(path.join(merged(i), 'etc', 'hostname'));
    pids = servingPids(spec, dir, runDir);
    out[`mount-rss-${MOUNTS}`] = rssOf(pids);
  } finally {
    pids = servingPids(spec, dir, runDir);
    for (let i = 0; i < MOUNTS; i++) if (isMounted(merged(i))) spawnSync('umount', [merged(i)]);
    const deadline = Date.now() + 10000;
    while (pids.some(alive) && Date.now() < deadline) await sleep(20);
    for (const p of pids.filter(alive)) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
  }
  return out;
}
