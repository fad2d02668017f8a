// `npm run stress`: the leak stress run. Mounts overlayd (bin/overlayd mount, a daemon of its
// own) over three lower layers and an empty upper, runs mixed workers against it in separate
// processes (src/bench/stress-worker.py) for --minutes, samples the daemon every --interval
// seconds (fds, RSS, the transport's nodes, open files and passthrough backing ids, the work
// directory), and checks that once everything is closed and the kernel has forgotten its
// inodes, nothing is left over: fds and backing ids back at the baseline taken after warm-up,
// nodes back near the root alone, no unexpected errno seen by any worker, a clean unmount.
// Runs itself in a private mount namespace, so nothing it mounts outlives it.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { sys } from '../host/native';
import { DAEMON_NODE_FLAGS } from '../cli/node-flags';
import type { Counters } from '../cli/registry';
import { buildLayers } from './stress-layers';
import { run, Server, SERVER_IDLE_MS, statusCounters, type ServedMount } from './stress-server';
import { logErrors, markdown, rssTrend, type Phase, type Report, type Sample } from './stress-report';
import { argsOrExit, eachFlag, fmtValue, memoryOf, mountedPoints, sleep } from './util';

const REPO = path.resolve(__dirname, '..', '..');
const BIN = path.join(REPO, 'bin', 'overlayd');
const WORKER = path.join(REPO, 'src', 'bench', 'stress-worker.py');

const USAGE = `usage: npm run stress -- [options]
  --minutes N            how long the workers run, warm-up included (default 30; fractions allowed)
  --transport T          kernel | fuse-native (default: overlayd's default, kernel as root)
  --workers N            worker processes (default 4, or N of --mounts if more)
  --mounts N             with N > 1: N mounts (each its own upper and work directory over the
                         same lower layers) served by one resident overlayd server, the
                         workers spread over them round-robin (kernel transport; default 1:
                         one mount, a daemon of its own)
  --out FILE             results JSON (and FILE with .md: the Markdown summary);
                         default bench-results/stress-TRANSPORT-TIMESTAMP.json
  --interval S           seconds between samples (default 10)
  --warmup S             seconds before the baseline (default 10% of the run, 20 to 120)
  --dir DIR              where layers and the mount live (default /var/tmp/overlayd-stress)
  --keep                 keep the run's upper, work and log directories`;

/** The final quiescent node count may exceed the root alone by this much ("near"). */
const NODE_SLACK = 4;

export interface Args {
  minutes: number;
  transport?: string;
  workers: number;
  mounts: number;
  out?: string;
  interval: number;
  warmup?: number;
  dir: string;
  keep: boolean;
}

function parseArgs(argv: string[]): Args {
  let workersGiven = false;
  const a: Args = { minutes: 30, workers: 4, mounts: 1, interval: 10, dir: '/var/tmp/overlayd-stress', keep: false };
  eachFlag(argv, (k, v) => {
    const num = (min: number): number => {
      const n = Number(v());
      if (!Number.isFinite(n) || n < min) throw new Error(`${k} needs a number >= ${min}`);
      return n;
    };
    switch (k) {
      case '--minutes': a.minutes = num(0.1); break;
      case '--transport': a.transport = v(); if (!['kernel', 'fuse-native'].includes(a.transport)) throw new Error('--transport: kernel or fuse-native'); break;
      case '--workers': a.workers = Math.floor(num(1)); workersGiven = true; break;
      case '--mounts': a.mounts = Math.floor(num(1)); break;
      case '--out': a.out = path.resolve(v()); break;
      case '--interval': a.interval = num(1); break;
      case '--warmup': a.warmup = num(0); break;
      case '--dir': a.dir = path.resolve(v()); break;
      case '--keep': a.keep = true; break;
      case '-h': case '--help': process.stdout.write(USAGE + '\n'); process.exit(0); break;
      default: throw new Error(`unknown argument ${k}\n${USAGE}`);
    }
  });
  if (a.mounts > 1) {
    if (a.transport === 'fuse-native') throw new Error('--mounts N > 1 needs the kernel transport (the server serves only kernel mounts)');
    if (!workersGiven) a.workers = Math.max(a.workers, a.mounts);
    if (a.workers < a.mounts) throw new Error(`--workers ${a.workers} is fewer than --mounts ${a.mounts}: each mount needs a worker`);
  }
  return a;
}

const say = (msg: string): void => { process.stderr.write(`stress: ${msg}\n`); };

// ---- the daemon ----

interface Daemon {
  child: ChildProcess;
  pid: number;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exited: boolean;
}

function startDaemon(opts: string, merged: string, logFile: string): Daemon {
  const log = fs.openSync(logFile, 'a');
  // The daemon dies with us (and the namespace with both): never a mount left serving nobody.
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', process.execPath, ...DAEMON_NODE_FLAGS, BIN, 'mount', '-f', '--log-file', logFile, '-o', opts, merged], {
    stdio: ['ignore', log, log], detached: true, cwd: '/',
  });
  fs.closeSync(log);
  if (child.pid === undefined) throw new Error('cannot start overlayd');
  const d: Daemon = { child, pid: child.pid, exited: false, exit: undefined as never };
  d.exit = new Promise((resolve) => child.on('exit', (code, signal) => { d.exited = true; resolve({ code, signal }); }));
  return d;
}

function isMountedAt(mp: string): boolean {
  return mountedPoints().has(mp);
}

// ---- the workers ----

export interface Worker {
  slot: number;
  child: ChildProcess;
  total: number;
  ops: Record<string, number>;
  expected: Record<string, number>;
  unexpected: number;
  paused: boolean;
  resumed: boolean;
  final: boolean;
  exit?: { code: number | null; signal: NodeJS.Signals | null };
  stderr: string;
}

export interface WorkerError { slot: number; op: string; errno: string; msg: string; t: number }

function startWorker(slot: number, merged: string, seed: number, errors: WorkerError[], t0: number): Worker {
  const child = spawn('setpriv', ['--pdeathsig', 'KILL', '--', 'python3', WORKER, merged, String(slot), String(seed)], {
    stdio: ['ignore', 'pipe', 'pipe'], detached: true, cwd: '/',
  });
  const w: Worker = { slot, child, total: 0, ops: {}, expected: {}, unexpected: 0, paused: false, resumed: false, final: false, stderr: '' };
  readline.createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    let m: { t: string; total?: number; ops?: Record<string, number>; expected?: Record<string, number>; unexpected?: number; op?: string; errno?: string; msg?: string };
    try { m = JSON.parse(line) as typeof m; } catch { w.stderr += `stdout: ${line}\n`; return; }
    switch (m.t) {
      case 'stats': case 'final':
        w.total = m.total ?? w.total; w.ops = m.ops ?? w.ops; w.expected = m.expected ?? w.expected; w.unexpected = m.unexpected ?? w.unexpected;
        if (m.t === 'final') w.final = true;
        break;
      case 'error': {
        const e = { slot, op: m.op ?? '?', errno: m.errno ?? '?', msg: m.msg ?? '', t: (Date.now() - t0) / 1000 };
        errors.push(e);
        if (errors.length <= 20) say(`worker ${slot}: ${e.op}: ${e.errno}: ${e.msg}`);
        break;
      }
      case 'paused': w.paused = true; w.resumed = false; break;
      case 'resumed': w.resumed = true; w.paused = false; break;
      default: break;
    }
  });
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => { if (w.stderr.length < 20000) w.stderr += d; });
  child.on('exit', (code, signal) => { w.exit = { code, signal }; });
  return w;
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
  return true;
}

// ---- samples ----

function countFds(pid: number): number | undefined {
  try { return fs.readdirSync(`/proc/${pid}/fd`).length; } catch { return undefined; }
}

function countEntries(dir: string): number | undefined {
  try { return fs.readdirSync(dir).length; } catch { return undefined; }
}

// ---- the run ----

let stopping = false;
/** The run's server, for an aborted run to kill: detached, it would outlive us, serving its mounts in a namespace nobody sees. */
let activeServer: Server | undefined;

function killServer(): void {
  const pid = activeServer?.pid;
  if (pid !== undefined && !activeServer?.gone()) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
}
let stopWake: (() => void) | undefined;

/** Sleeps, but returns at once when the run is being stopped (Ctrl-C). */
function pause(ms: number): Promise<void> {
  if (stopping) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => { stopWake = undefined; resolve(); }, ms);
    stopWake = () => { clearTimeout(t); stopWake = undefined; resolve(); };
  });
}

async function stress(a: Args): Promise<Report> {
  const started = new Date();
  const slots = Math.max(8, a.workers);
  const lowers = buildLayers(a.dir, slots, say);
  const runDir = path.join(a.dir, `run-${process.pid}`);
  fs.rmSync(runDir, { recursive: true, force: true });
  // One mount: today's layout in runDir itself; N: runDir/mK/ each.
  const mounts: ServedMount[] = Array.from({ length: a.mounts }, (_, k) => {
    const base = a.mounts === 1 ? runDir : path.join(runDir, `m${k}`);
    return { merged: path.join(base, 'merged'), upper: path.join(base, 'upper'), work: path.join(base, 'work'), log: path.join(base, 'daemon.log') };
  });
  for (const m of mounts) for (const d of [m.upper, m.work, m.merged]) fs.mkdirSync(d, { recursive: true });
  const optsOf = (m: ServedMount): string => [`lowerdir=${lowers.join(':')}`, `upperdir=${m.upper}`, `workdir=${m.work}`, ...(a.transport ? [`transport=${a.transport}`] : [])].join(',');
  const merged = mounts[0].merged;
  const logFile = mounts[0].log;
  const server = a.mounts > 1 ? new Server(mounts) : undefined;
  if (server) Server.environment(path.join(runDir, 'run'));
  activeServer = server;

  const samples: Sample[] = [];
  const errors: WorkerError[] = [];
  const failures: string[] = [];
  const warnings: string[] = [];
  const workers: Worker[] = [];
  let daemon: Daemon | undefined;
  let umount = { code: -1, stdout: '', stderr: '' };
  let dirsInTree: number | undefined;
  let transport = a.transport ?? '?';
  const t0 = Date.now();
  const now = (): number => (Date.now() - t0) / 1000;

  // The serving process: the daemon of the one mount, or the server of them all.
  const servedPid = (): number => server?.pid ?? daemon?.pid ?? 0;
  const servedGone = (): boolean => (server ? server.gone() : daemon?.exited ?? true);
  const countersNow = (): Promise<Counters | undefined> => (server ? server.counters() : statusCounters(merged));
  const workEntriesNow = (): number | undefined => {
    const n = mounts.map((m) => countEntries(path.join(m.work, 'work')));
    return n.some((x) => x === undefined) ? undefined : n.reduce((x: number, y) => x + (y ?? 0), 0);
  };

  const sample = async (phase: Phase): Promise<Sample> => {
    const pid = servedPid();
    const counters = await countersNow();
    const mem = memoryOf(pid);
    const s: Sample = {
      t: Math.round(now() * 10) / 10, phase, fds: countFds(pid), rss: mem?.rss, hwm: mem?.peak, counters,
      workEntries: workEntriesNow(), workerOps: workers.reduce((x, w) => x + w.total, 0),
    };
    // Against the sample before, whatever its phase: paused workers count nothing meanwhile.
    const prev = samples[samples.length - 1];
    if (prev && (phase === 'load' || phase === 'warmup') && s.t > prev.t) {
      s.opsPerSec = Math.round((s.workerOps - prev.workerOps) / (s.t - prev.t));
      if (counters && prev.counters) s.fuseOpsPerSec = Math.round((counters.ops - prev.counters.ops) / (s.t - prev.t));
    }
    samples.push(s);
    const c = s.counters;
    say(`${String(s.t).padStart(6)} s ${phase.padEnd(13)} fds ${s.fds ?? '?'}, rss ${s.rss ? fmtValue(s.rss, 'B') : '?'}` +
      (c?.nodes !== undefined ? `, nodes ${c.nodes}, backing ids ${c.backingIds}, open ${c.fuseOpenFiles}/${c.openFiles}` : c ? `, open ${c.openFiles}` : '') +
      `, work/ ${s.workEntries ?? '?'}, dir cache ${c?.dirCacheEntries ?? '?'}` + (s.opsPerSec !== undefined ? `, ${s.opsPerSec} ops/s (FUSE ${s.fuseOpsPerSec ?? '?'}/s)` : ''));
    return s;
  };

  /**
   * Everything closed: count the tree's directories (which also fills the directory cache
   * alike both times), let the kernel forget what it can, then sample twice (before and after).
   */
  const quiesce = async (phase: 'baseline' | 'final'): Promise<void> => {
    // Each mount walked: the summed directory caches then compare with the summed trees.
    let walked: number | undefined = 0;
    for (const m of mounts) { const n = await walkCount(m.merged); walked = n === undefined || walked === undefined ? undefined : walked + n; }
    if (phase === 'final') dirsInTree = walked;
    await sleep(3000);
    await sample(phase === 'baseline' ? 'baseline-busy' : 'final-busy');
    let last = -1;
    for (let i = 0; i < 8; i++) {
      fs.writeFileSync('/proc/sys/vm/drop_caches', '2\n');
      await sleep(1500);
      const c = await countersNow();
      const nodes = c?.nodes ?? c?.fds ?? 0;
      if (i >= 1 && nodes === last) break;
      last = nodes;
    }
    await sample(phase);
  };

  const pauseWorkers = async (): Promise<boolean> => {
    for (const w of workers) { w.paused = false; try { w.child.kill('SIGUSR1'); } catch { /* gone */ } }
    return waitFor(() => workers.every((w) => w.paused || w.exit), 60000);
  };
  const resumeWorkers = async (): Promise<boolean> => {
    for (const w of workers) { w.resumed = false; try { w.child.kill('SIGUSR2'); } catch { /* gone */ } }
    return waitFor(() => workers.every((w) => w.resumed || w.exit), 60000);
  };

  let interrupted = false;
  try {
    if (server) {
      say(`mounting ${a.mounts} overlays under ${runDir} through one server (run dir ${process.env.OVERLAYD_RUN_DIR})`);
      await server.mountAll(optsOf, say);
    } else {
      say(`mounting ${merged}${a.transport ? ` (transport ${a.transport})` : ''}`);
      const d = daemon = startDaemon(optsOf(mounts[0]), merged, logFile);
      if (!await waitFor(() => isMountedAt(merged) || d.exited, 30000) || !isMountedAt(merged)) {
        throw new Error(`overlayd did not mount ${merged}: ${tail(logFile)}`);
      }
    }
    const first = await countersNow();
    if (!first) throw new Error('overlayd status --json shows no counters for the mounts');
    transport = a.transport ?? (first.nodes !== undefined ? 'kernel' : 'fuse-native');
    const total = a.minutes * 60;
    const warm = Math.min(a.warmup ?? Math.min(120, Math.max(20, total * 0.1)), total / 3);
    say(`transport ${transport}, ${a.mounts} mount${a.mounts > 1 ? 's' : ''}, ${a.workers} workers, ${a.minutes} min (warm-up ${Math.round(warm)} s), sampling every ${a.interval} s`);
    await sample('idle');
    const seed = Date.now() % 1000000;
    // Round-robin: worker k on mount k mod N, so each mount has at least one.
    for (let k = 0; k < a.workers; k++) workers.push(startWorker(k, mounts[k % mounts.length].merged, seed + k, errors, t0));
    const end = t0 + total * 1000;
    const warmEnd = Date.now() + warm * 1000;
    while (!stopping && Date.now() < warmEnd) {
      await pause(Math.min(a.interval * 1000, warmEnd - Date.now()));
      if (!stopping) await sample('warmup');
    }
    if (!stopping) {
      say('baseline: pausing the workers (every fd closed), dropping the kernel\'s dentries and inodes');
      if (!await pauseWorkers()) failures.push('workers did not pause for the baseline within 60 s');
      await quiesce('baseline');
      if (!await resumeWorkers()) failures.push('workers did not resume within 60 s');
    }
    while (!stopping && Date.now() < end) {
      await pause(Math.min(a.interval * 1000, Math.max(0, end - Date.now())));
      if (!stopping || Date.now() >= end) await sample('load');
      if (servedGone()) break;
      if (workers.some((w) => w.exit)) { failures.push(`a worker exited during the run (slot ${workers.find((w) => w.exit)?.slot})`); break; }
    }
    if (servedGone()) failures.push(`the ${server ? 'server' : 'daemon'} exited during the run`);
    interrupted = stopping;
    say(interrupted ? 'interrupted: stopping the workers' : 'stopping the workers');
    for (const w of workers) { try { w.child.kill('SIGTERM'); } catch { /* gone */ } }
    if (!await waitFor(() => workers.every((w) => w.exit), 60000)) {
      failures.push('workers did not stop within 60 s of SIGTERM');
      for (const w of workers) { try { w.child.kill('SIGKILL'); } catch { /* gone */ } }
      await waitFor(() => workers.every((w) => w.exit), 5000);
    }
    if (!servedGone()) {
      await quiesce('final');
      say('unmounting with overlayd umount');
      umount = server ? await server.unmountAll() : await run(['umount', merged], 60000);
    }
    if (server) {
      // Its exit code is not ours to see (it is no child of ours): it must leave, and its mounts' logs stay clean.
      if (!await waitFor(() => server.gone(), SERVER_IDLE_MS + 15000)) failures.push(`the server did not leave within ${(SERVER_IDLE_MS + 15000) / 1000} s of the last unmount`);
    } else if (daemon) {
      const ex = await Promise.race([daemon.exit, sleep(15000).then(() => undefined)]);
      if (!ex) failures.push('the daemon did not exit within 15 s of overlayd umount');
    }
  } catch (err) {
    failures.push(`run aborted: ${(err as Error).message}`);
  } finally {
    for (const w of workers) { if (!w.exit) { try { w.child.kill('SIGKILL'); } catch { /* gone */ } } }
    await waitFor(() => workers.every((w) => w.exit), 5000);
    for (const m of mounts) {
      if (!isMountedAt(m.merged)) continue;
      failures.push(`${m.merged} still mounted after the run: forcing it off`);
      await run(['umount', '--force', m.merged], 30000);
      if (isMountedAt(m.merged)) sys.umount2(m.merged, 2 /* MNT_DETACH */);
    }
    if (daemon && !daemon.exited) { try { process.kill(daemon.pid, 'SIGKILL'); } catch { /* gone */ } await Promise.race([daemon.exit, sleep(5000)]); }
    killServer();
  }

  // ---- the verdict ----
  const d = daemon;
  const dexit = d?.exited ? await d.exit : { code: null, signal: null };
  const leftMounted = [...mountedPoints()].filter((p) => p.startsWith(runDir));
  const workEntriesAfter = workEntriesNow();
  const logProblems = mounts.flatMap((m) => logErrors(m.log));
  const base = samples.find((s) => s.phase === 'baseline');
  const fin = samples.find((s) => s.phase === 'final');
  const load = samples.filter((s) => s.phase === 'load');
  const rss = rssTrend(load.length >= 4 ? load : samples.filter((s) => s.phase === 'load' || s.phase === 'warmup'));
  const kernel = transport === 'kernel';

  if (errors.length > 0) failures.push(`${errors.length} unexpected errors in the workers (${[...new Set(errors.map((e) => `${e.op}: ${e.errno}`))].slice(0, 8).join('; ')})`);
  const unexpectedCount = workers.reduce((x, w) => x + w.unexpected, 0);
  if (unexpectedCount > errors.length) failures.push(`${unexpectedCount} unexpected errors counted by the workers (${errors.length} reported)`);
  for (const w of workers) {
    if (w.exit && (w.exit.code !== 0 || !w.final) && !interrupted) failures.push(`worker ${w.slot} exited ${w.exit.signal ?? w.exit.code}${w.final ? '' : ' without its final report'}`);
    if (w.stderr.trim()) failures.push(`worker ${w.slot} wrote to stderr: ${w.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  }
  if (d && !server && dexit.code !== 0) failures.push(`the daemon exited ${dexit.signal ?? dexit.code}, not 0`);
  if (umount.code !== 0 && umount.code !== -1) failures.push(`overlayd umount exited ${umount.code}: ${umount.stderr.trim()}`);
  if (leftMounted.length) failures.push(`still mounted: ${leftMounted.join(' ')}`);
  if (logProblems.length) failures.push(`${logProblems.length} error lines in the daemon's log (first: ${logProblems[0].slice(0, 300)})`);
  if (workEntriesAfter !== undefined && workEntriesAfter > 0) failures.push(`${workEntriesAfter} entries left in workdir/work after unmount`);
  if (base && fin) {
    const bc = base.counters, fc = fin.counters;
    if (base.fds !== undefined && fin.fds !== undefined) {
      const outside = (s: Sample): number => (s.fds ?? 0) - (s.counters?.dirCacheFds ?? 0);
      if (outside(fin) > outside(base)) failures.push(`fds outside the directory cache grew: ${outside(base)} at the baseline, ${outside(fin)} at the end`);
      if (fin.fds > base.fds) warnings.push(`fds ${base.fds} → ${fin.fds}: the directory cache holds ${fc?.dirCacheFds ?? '?'} (was ${bc?.dirCacheFds ?? '?'}), for ${fc?.dirCacheEntries ?? '?'} directories`);
    }
    if (fc && dirsInTree !== undefined && (fc.dirCacheEntries ?? 0) > dirsInTree) failures.push(`the directory cache holds ${fc.dirCacheEntries} directories, the tree has ${dirsInTree}: stale entries`);
    if (fc && fc.openFiles > 0) failures.push(`${fc.openFiles} files still open in the core at the end`);
    if (kernel && fc) {
      if ((fc.backingIds ?? 0) > (bc?.backingIds ?? 0) || (fc.backingIds ?? 0) > 0) failures.push(`${fc.backingIds} passthrough backing ids live at the end (baseline ${bc?.backingIds})`);
      if (fc.backedNodes !== fc.backingIds) failures.push(`backing ids (${fc.backingIds}) and nodes bound to one (${fc.backedNodes}) disagree`);
      if ((fc.fuseOpenFiles ?? 0) > 0 || (fc.openDirs ?? 0) > 0) failures.push(`kernel handles still open at the end: ${fc.fuseOpenFiles} files, ${fc.openDirs} dirs`);
      if ((fc.nodes ?? 0) > mounts.length * (1 + NODE_SLACK)) failures.push(`${fc.nodes} nodes held after the kernel dropped its inodes (roots alone: ${mounts.length})`);
    }
    if (fc?.hiddenFiles) failures.push(`${fc.hiddenFiles} unlinked-but-open files still named .fuse_hidden* at the end`);
    if (fin.workEntries !== undefined && fin.workEntries > (base.workEntries ?? 0)) failures.push(`workdir/work holds ${fin.workEntries} entries at the end (baseline ${base.workEntries})`);
  } else if (!interrupted) {
    failures.push('no baseline or no final quiescent sample');
  }
  if (rss.suspicious) warnings.push(`RSS grew ${(rss.growth * 100).toFixed(0)}% from the first to the last quartile of the run (suspicious; V8's heap is noisy)`);
  if (interrupted) failures.push('interrupted before the end');

  return {
    args: a, started: started.toISOString(), transport, kernel: fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), node: process.version,
    layers: lowers, durationSeconds: now(), interrupted, samples,
    workers: workers.map((w) => ({ slot: w.slot, total: w.total, ops: w.ops, expected: w.expected, unexpected: w.unexpected, exit: w.exit, stderr: w.stderr })),
    errors,
    daemon: { pid: servedPid(), exitCode: dexit.code, signal: dexit.signal, umountCode: umount.code, umountStderr: umount.stderr, logProblems, leftMounted, workEntriesAfter },
    dirsInTree, rss, failures, warnings, verdict: failures.length ? 'fail' : 'pass',
  };
}

function tail(file: string): string {
  try { return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-5).join('\n'); } catch { return '(no log)'; }
}

/** Directories in the merged tree, counted by a process of its own (never by us on the mount). */
function walkCount(merged: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    execFile('python3', ['-c', 'import os,sys\nn=0\nfor _,ds,_ in os.walk(sys.argv[1]): n+=len(ds)\nprint(n)', merged], { timeout: 120000 }, (err, stdout) => {
      resolve(err ? undefined : Number(stdout.trim()));
    });
  });
}

async function main(): Promise<void> {
  const a = argsOrExit('stress', () => parseArgs(process.argv.slice(2)));
  if (process.getuid?.() !== 0) { say('must run as root (it mounts, and drops the kernel\'s caches)'); process.exit(2); }
  if (process.env.OVERLAYD_STRESS_NS !== String(process.pid)) {
    // Into a private mount namespace: whatever is mounted there disappears with it. unshare
    // and bash exec node in place, so the pid stays the same; the marker is the pid itself.
    const child = spawn('unshare', ['--mount', '--propagation', 'private', '--', 'bash', '-c',
      'export OVERLAYD_STRESS_NS=$$; exec "$@"', 'stress', process.execPath, __filename, ...process.argv.slice(2)], { stdio: 'inherit' });
    // Ctrl-C reaches the child from the terminal; it stops cleanly and we wait for it.
    process.on('SIGINT', () => undefined);
    process.on('SIGTERM', () => child.kill('SIGTERM'));
    child.on('exit', (code, sig) => process.exit(code ?? (sig ? 128 + 2 : 1)));
    return;
  }
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals === 1) {
      say(`${sig}: stopping cleanly (again to abort at once)`);
      stopping = true;
      stopWake?.();
    } else {
      say(`${sig} again: aborting; the namespace takes the mounts with it`);
      killServer();
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  fs.mkdirSync(a.dir, { recursive: true });
  let r: Report;
  try {
    r = await stress(a);
  } catch (err) {
    say(`failed: ${(err as Error).stack ?? String(err)}`);
    process.exit(1);
  }
  const stamp = r.started.replace(/[:]/g, '-').replace(/\..*/, '');
  const out = a.out ?? path.join(REPO, 'bench-results', `stress-${r.transport}-${stamp}.json`);
  const md = out.endsWith('.json') ? out.slice(0, -5) + '.md' : out + '.md';
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(r, null, 2) + '\n');
  const text = markdown(r);
  fs.writeFileSync(md, text);
  process.stdout.write('\n' + text);
  say(`results: ${out}, ${md}`);
  const runDir = path.join(a.dir, `run-${process.pid}`);
  if (a.keep || r.verdict === 'fail') {
    if (r.verdict === 'fail' && !a.keep) {
      // Keep the log, drop the (possibly large) layers.
      for (const d of ['upper', 'work']) fs.rmSync(path.join(runDir, d), { recursive: true, force: true });
    }
    say(`kept ${runDir}`);
  } else {
    fs.rmSync(runDir, { recursive: true, force: true });
  }
  process.exit(r.verdict === 'pass' ? 0 : 1);
}

if (require.main === module) void main();
