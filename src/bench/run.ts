// `npm run bench`: times each workload on overlayd, fuse-overlayfs and kernel overlayfs over
// the same layers, several repetitions each, interleaving the systems, and writes a Markdown
// table and JSON to bench-results/. Runs itself in a private mount namespace, so nothing it
// mounts is seen outside or outlives it.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_PACKAGE, FULL, QUICK, prepareFixtures, type Sizes } from './fixtures';
import { BUSYBOX } from './podman';
import { DEFAULT_SYSTEMS, EXTRA_SYSTEMS, baseSpec, daemonCpu, mountSystem, transportOf, unmountAll, versionOf, type SystemName, type SystemSpec } from './systems';
import { ENGINE_WORKLOADS, WORKLOADS, type Context, type Metric } from './workloads';
import { argsOrExit, eachFlag, fmtRatio, fmtValue, loadAverage, mountedPoints, progress, run, summarize, type Summary } from './util';

const REPO = path.resolve(__dirname, '..', '..');

const USAGE = `usage: npm run bench -- [options]
  --quick               small sizes, 3 repetitions: for validating the benchmark, not for numbers
  --only A,B            workloads: ${[...WORKLOADS, ...ENGINE_WORKLOADS].map((w) => w.name).join(', ')}
                        (podman: needs podman, runc and busybox-static; skipped without them;
                        mounts: exec-to-serving and RSS of 1 and 20 mounts, as engines mount)
  --reps N              repetitions per workload and system (default 5, quick 3)
  --systems A,B         systems: ${DEFAULT_SYSTEMS.join(', ')}, ${Object.keys(EXTRA_SYSTEMS).join(', ')} (overlayd's
                        transport with no-op handlers: runs the per-op probes only) and any --variant;
                        default: all of these, and overlayd-fuse-native (-o transport=fuse-native)
                        when overlayd's default transport is another, and overlayd-uring (-o uring=on:
                        FUSE over io_uring) where the kernel has it (enable_uring is set to Y for the
                        run, then back)
  --compare FILE        compare with an earlier results JSON
  --label NAME          name this run (default: a timestamp)
  --dir DIR             where layers and mounts live (default /var/tmp/overlayd-bench)
  --out DIR             where results go (default bench-results/ in the repo)
  --package SPEC        npm package whose tarball the real job extracts (default ${DEFAULT_PACKAGE})
  --opt SYS:O           extra -o option for a system (repeatable), e.g. overlayd:attr_timeout=60
  --env SYS:K=V         extra environment for an overlayd daemon (repeatable), e.g. overlayd:UV_THREADPOOL_SIZE=8
  --node-arg SYS:A      extra node argument for an overlayd daemon (repeatable), e.g. overlayd:--cpu-prof
  --variant NAME[:O,O]  one more system: overlayd under another name with these -o options
                        (e.g. cached:attr_timeout=3600,entry_timeout=3600, or k:transport=kernel);
                        --opt/--env/--node-arg/--bin NAME:... refine it
  --bin NAME:PATH       run this variant from another build's bin/overlayd (see scripts/bench-snapshot.sh)`;

interface Args {
  quick: boolean;
  only?: string[];
  reps?: number;
  systems: SystemSpec[];
  compare?: string;
  label?: string;
  dir: string;
  out: string;
  pkg: string;
  /** No --systems: add overlayd on its other transport (fuse-native) when that is not the default. */
  bothTransports: boolean;
}

const ENABLE_URING = '/sys/module/fuse/parameters/enable_uring';
/** overlayd on the kernel transport with FUSE over io_uring, against its /dev/fuse reads. */
const URING: SystemSpec = { ...baseSpec('overlayd'), name: 'overlayd-uring', opts: ['uring=on'] };

/** Lets FUSE over io_uring be used where the kernel has it; the undo, or undefined where it has not. */
function enableUring(): (() => void) | undefined {
  let was: string;
  try { was = fs.readFileSync(ENABLE_URING, 'utf8').trim(); } catch { return undefined; }
  if (was !== 'Y') fs.writeFileSync(ENABLE_URING, 'Y');
  return () => { if (was !== 'Y') fs.writeFileSync(ENABLE_URING, was); };
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    quick: false, systems: [], dir: '/var/tmp/overlayd-bench', out: path.join(REPO, 'bench-results'), pkg: DEFAULT_PACKAGE, bothTransports: false,
  };
  const specs = new Map<SystemName, SystemSpec>([...DEFAULT_SYSTEMS, ...Object.keys(EXTRA_SYSTEMS)].map((n) => [n, baseSpec(n)]));
  specs.set(URING.name, { ...URING, opts: [...URING.opts], env: {}, nodeArgs: [...URING.nodeArgs] });
  let chosen: SystemName[] | undefined;
  const variants: SystemName[] = [];
  const refine: [string, string][] = [];
  eachFlag(argv, (k, v) => {
    switch (k) {
      case '--quick': a.quick = true; break;
      case '--only': a.only = v().split(',').filter(Boolean); break;
      case '--reps': a.reps = Number(v()); if (!(a.reps >= 1)) throw new Error('--reps needs a number >= 1'); break;
      case '--systems': chosen = v().split(',').filter(Boolean); break;
      case '--compare': a.compare = path.resolve(v()); break;
      case '--label': a.label = v(); break;
      case '--dir': a.dir = path.resolve(v()); break;
      case '--out': a.out = path.resolve(v()); break;
      case '--package': a.pkg = v(); break;
      case '--variant': {
        const x = v();
        const c = x.indexOf(':');
        const name = c < 0 ? x : x.slice(0, c);
        if (!/^[A-Za-z0-9._+-]+$/.test(name) || specs.has(name)) throw new Error(`--variant: bad or taken name "${name}"`);
        specs.set(name, { ...baseSpec('overlayd'), name, opts: c < 0 ? [] : x.slice(c + 1).split(',').filter(Boolean) });
        variants.push(name);
        break;
      }
      case '--opt': case '--env': case '--node-arg': case '--bin': refine.push([k, v()]); break;
      case '-h': case '--help': process.stdout.write(USAGE + '\n'); process.exit(0); break;
      default: throw new Error(`unknown argument ${k}\n${USAGE}`);
    }
  });
  for (const [k, x] of refine) {
    const c = x.indexOf(':');
    const spec = specs.get(x.slice(0, Math.max(c, 0)));
    if (c < 0 || !spec) throw new Error(`${k} ${x}: expected SYSTEM:VALUE with a known system`);
    const val = x.slice(c + 1);
    if (k === '--opt') spec.opts.push(val);
    else if (spec.kind !== 'overlayd') throw new Error(`${k} applies to overlayd systems only`);
    else if (k === '--env') { const e = val.indexOf('='); if (e < 1) throw new Error(`--env ${x}: expected K=V`); spec.env[val.slice(0, e)] = val.slice(e + 1); }
    else if (k === '--node-arg') spec.nodeArgs.push(val);
    else spec.bin = path.resolve(val);
  }
  // The no-op transport runs only the per-op probes: cheap, and it shows the floor under overlayd.
  const names = chosen ?? [...DEFAULT_SYSTEMS, ...variants, ...Object.keys(EXTRA_SYSTEMS)];
  a.bothTransports = chosen === undefined;
  for (const n of names) {
    const spec = specs.get(n);
    if (!spec) throw new Error(`unknown system ${n}`);
    a.systems.push(spec);
  }
  for (const w of a.only ?? []) if (![...WORKLOADS, ...ENGINE_WORKLOADS].some((x) => x.name === w)) throw new Error(`unknown workload ${w}`);
  return a;
}

/**
 * A private copy of this checkout's build (dist/, bin/, native addons) for the run: others may
 * rebuild dist/ meanwhile, and a benchmark must not measure half of one build and half of another.
 */
function snapshotBuild(cacheDir: string): string {
  const root = path.join(cacheDir, 'builds', `run-${process.pid}`);
  const newest = (dir: string): number => Math.max(0, ...fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile()).map((e) => fs.statSync(path.join(e.parentPath, e.name)).mtimeMs));
  const loads = (): boolean => spawnSync(process.execPath, ['-e', `
    const fs = require('fs'), path = require('path');
    const walk = (d) => fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]);
    for (const f of walk(${JSON.stringify(path.join(root, 'dist'))})) if (f.endsWith('.js') && !f.includes('/bench/')) require(f);`], { stdio: 'ignore' }).status === 0;
  for (let attempt = 0; ; attempt++) {
    // Not while someone's tsc is writing dist/: wait until it has been quiet for a while.
    while (Date.now() - newest(path.join(REPO, 'dist')) < 3000) spawnSync('sleep', ['1']);
    fs.rmSync(root, { recursive: true, force: true });
    fs.mkdirSync(path.join(root, 'native'), { recursive: true });
    for (const d of ['dist', 'bin', 'package.json']) fs.cpSync(path.join(REPO, d), path.join(root, d), { recursive: true });
    fs.cpSync(path.join(REPO, 'native', 'build'), path.join(root, 'native', 'build'), { recursive: true });
    fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(root, 'node_modules'));
    const bin = path.join(root, 'bin', 'overlayd');
    if (loads() && spawnSync(process.execPath, [bin, '--help'], { stdio: 'ignore' }).status === 0) return bin;
    if (attempt === 4) throw new Error(`the build in ${REPO}/dist does not start (node bin/overlayd --help fails): run npx tsc -p .`);
    spawnSync('sleep', ['2']);
  }
}

/** The C driver, compiled once per source version into the cache dir. */
function buildDriver(cacheDir: string): string {
  const src = path.join(REPO, 'src', 'bench', 'driver.c');
  const hash = crypto.createHash('sha256').update(fs.readFileSync(src)).digest('hex').slice(0, 12);
  const bin = path.join(cacheDir, `driver-${hash}`);
  if (!fs.existsSync(bin)) {
    const cc = ['cc', 'gcc', 'clang'].find((c) => spawnSync(c, ['--version']).status === 0);
    if (!cc) throw new Error('no C compiler (cc) found: install gcc (Debian: apt-get install gcc)');
    progress('compiling the I/O driver');
    run(cc, ['-O2', '-Wall', '-o', bin, src]);
  }
  return bin;
}

function machine(dir: string): Record<string, unknown> {
  const cpu = os.cpus();
  let fsType = '';
  try { fsType = run('findmnt', ['-n', '-o', 'FSTYPE,SOURCE', '-T', dir]).trim().replace(/\s+/, ' on '); } catch { /* unknown */ }
  return {
    cpu: `${cpu[0]?.model ?? 'unknown'} × ${cpu.length}`,
    memory: `${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    kernel: os.release(),
    os: (() => { try { return /PRETTY_NAME="([^"]+)"/.exec(fs.readFileSync('/etc/os-release', 'utf8'))?.[1] ?? ''; } catch { return ''; } })(),
    filesystem: fsType,
  };
}

interface ResultFile {
  format: 1;
  label: string;
  date: string;
  quick: boolean;
  reps: number;
  sizes: Sizes;
  machine: Record<string, unknown>;
  load: { before: number[]; after: number[] };
  systems: SystemSpec[];
  versions: Record<SystemName, string>;
  package: string;
  metrics: (Metric & { results: Record<SystemName, Summary> })[];
  /** Daemon CPU seconds (user + system) per workload and system, over the whole workload. */
  daemonCpu: Record<string, Record<SystemName, Summary>>;
  /** Whether the kernel's FUSE over io_uring was on for the run (overlayd-uring takes it). */
  uring?: string;
}

function cell(s: Summary | undefined, unit: string): string {
  if (!s || !Number.isFinite(s.median)) return '–';
  const v = unit === 'us' ? `${s.median.toFixed(s.median < 10 ? 1 : 0)} µs` : fmtValue(s.median, unit);
  return s.n > 1 && s.spread > 0 ? `${v} ±${(s.spread * 100).toFixed(0)}%` : v;
}

function ratio(a: Summary | undefined, b: Summary | undefined): number {
  return a && b && b.median > 0 ? a.median / b.median : NaN;
}

const esc = (s: string): string => s.replace(/\|/g, '\\|');

export function markdown(r: ResultFile, old?: ResultFile): string {
  const lines: string[] = [];
  const m = r.machine as Record<string, string>;
  const names = r.systems.map((x) => x.name);
  const ours = r.systems.filter((x) => x.kind === 'overlayd').map((x) => x.name);
  const peers = names.filter((n) => n === 'fuse-overlayfs' || n === 'kernel');
  lines.push(`Run ${r.label}, ${r.date}${r.quick ? ' (--quick sizes: not for comparison)' : ''}: median of ${r.reps} runs, ±half the range.`);
  lines.push(`Machine: ${m.cpu}, ${m.memory}, ${m.os}, Linux ${m.kernel}, layers on ${m.filesystem}; load ${r.load.before.join(' ')} before, ${r.load.after.join(' ')} after.`);
  lines.push(`Versions: ${Object.entries(r.versions).map(([k, v]) => `${k} ${v}`).join('; ')}.`);
  if (r.uring) lines.push(`FUSE over io_uring: ${r.uring}.`);
  for (const x of r.systems) {
    const extra = [...x.opts.map((o) => `-o ${o}`), ...Object.entries(x.env).map(([k, v]) => `${k}=${v}`), ...x.nodeArgs];
    if (extra.length) lines.push(`${x.name}: ${extra.join(' ')}.`);
  }
  // Each overlayd system against the peers; a variant also against plain overlayd. The
  // workloads and the per-op probes (where the transport's no-op floor is a column) apart.
  const row = (cells: string[]): string => `| ${cells.join(' | ')} |`;
  const table = (mets: ResultFile['metrics'], first: string): void => {
    if (!mets.length) return;
    const cols = names.filter((n) => mets.some((x) => x.results[n]));
    const mine = ours.filter((o) => cols.includes(o));
    const ratioCols = mine.flatMap((o) => [...(o !== 'overlayd' && mine.includes('overlayd') ? ['overlayd'] : []), ...peers].map((p) => [o, p] as const));
    lines.push('');
    lines.push(row([first, ...cols, ...ratioCols.map(([o, p]) => `${o} / ${p}`)]));
    lines.push(row(['---', ...cols.map(() => '---:'), ...ratioCols.map(() => '---:')]));
    for (const met of mets) {
      const cells = cols.map((n) => cell(met.results[n], met.unit));
      const ratios = ratioCols.map(([o, p]) => fmtRatio(ratio(met.results[o], met.results[p])));
      lines.push(row([esc(met.title), ...cells, ...ratios]));
    }
  };
  table(r.metrics.filter((x) => x.unit !== 'us'), 'workload');
  table(r.metrics.filter((x) => x.unit === 'us'), 'probe (every kernel cache off)');
  const cpuRows = Object.entries(r.daemonCpu ?? {});
  const daemons = names.filter((n) => cpuRows.some(([, bySys]) => bySys[n]));
  if (cpuRows.length && daemons.length) {
    lines.push('');
    lines.push('Daemon CPU time (user + system, all threads) over each whole workload, median:');
    lines.push('');
    lines.push(row(['workload', ...daemons]));
    lines.push(row(['---', ...daemons.map(() => '---:')]));
    for (const [w, bySys] of cpuRows) lines.push(row([w, ...daemons.map((n) => cell(bySys[n], 's'))]));
  }
  if (old) {
    const both = names.filter((n) => old.metrics.some((x) => x.results[n]));
    lines.push('');
    lines.push(`Compared with ${old.label} (${old.date}): old → new median (new / old), per system.`);
    lines.push('');
    lines.push(row(['workload', ...both]));
    lines.push(row(['---', ...both.map(() => '---:')]));
    for (const met of r.metrics) {
      const before = old.metrics.find((x) => x.key === met.key);
      if (!before) continue;
      const col = (s: SystemName): string => {
        const a = met.results[s];
        const b = before.results[s];
        if (!a || !b || !Number.isFinite(a.median) || !Number.isFinite(b.median)) return '–';
        return `${cell(b, met.unit)} → ${cell(a, met.unit)} (${fmtRatio(ratio(a, b))})`;
      };
      lines.push(row([esc(met.title), ...both.map(col)]));
    }
  }
  return lines.join('\n') + '\n';
}

let interrupted = false;

async function bench(a: Args): Promise<void> {
  const sizes = a.quick ? QUICK : FULL;
  const reps = a.reps ?? (a.quick ? 3 : 5);
  const label = a.label ?? new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d+Z$/, 'Z');
  fs.mkdirSync(a.dir, { recursive: true });
  const driver = buildDriver(a.dir);
  const snapshot = a.systems.some((x) => x.kind === 'overlayd' && !x.bin) ? snapshotBuild(a.dir) : undefined;
  for (const x of a.systems) if (x.kind === 'overlayd' && !x.bin) x.build = snapshot;
  // overlayd has two transports; by default both are measured (the default one as "overlayd").
  const plain = a.systems.find((x) => x.name === 'overlayd');
  if (a.bothTransports && plain && transportOf(plain) !== 'fuse-native' && !a.systems.some((x) => x.name === 'overlayd-fuse-native')) {
    a.systems.splice(a.systems.indexOf(plain) + 1, 0, { ...plain, name: 'overlayd-fuse-native', opts: [...plain.opts, 'transport=fuse-native'], env: { ...plain.env }, nodeArgs: [...plain.nodeArgs] });
  }
  // And on the kernel transport, FUSE over io_uring against /dev/fuse reads (overlayd),
  // interleaved like any two systems.
  if (a.bothTransports && plain && transportOf(plain) === 'kernel' && fs.existsSync(ENABLE_URING) && !a.systems.some((x) => x.name === URING.name)) {
    a.systems.splice(a.systems.indexOf(plain) + 1, 0, { ...plain, name: URING.name, opts: [...plain.opts, ...URING.opts], env: { ...plain.env }, nodeArgs: [...plain.nodeArgs] });
  }
  const workloads = WORKLOADS.filter((w) => (a.only ? a.only.includes(w.name) : true));
  const engineMissing = ['podman', 'runc'].find((c) => spawnSync('sh', ['-c', `command -v ${c}`]).status !== 0) ?? (fs.existsSync(BUSYBOX) ? undefined : BUSYBOX);
  const engines = ENGINE_WORKLOADS.filter((w) => (a.only ? a.only.includes(w.name) : true)).filter((w) => {
    if (w.noEngine) return true;
    if (engineMissing !== undefined) progress(`skipping ${w.name}: ${engineMissing} is missing (scripts/setup.sh installs it)`);
    return engineMissing === undefined;
  });
  let uringState: string | undefined;
  try { uringState = `enable_uring=${fs.readFileSync(ENABLE_URING, 'utf8').trim()} (overlayd-uring: -o uring=on; overlayd: /dev/fuse reads)`; } catch { /* a kernel without it */ }
  const samples = new Map<string, Map<SystemName, number[]>>();
  const cpu = new Map<string, Map<SystemName, number[]>>();
  const loadBefore = loadAverage();
  progress(`${a.quick ? 'quick' : 'full'} run "${label}": ${[...workloads, ...engines].map((w) => w.name).join(', ')} × ${reps} on ${a.systems.map((x) => x.name).join(', ')} (load ${loadBefore.join(' ')})`);

  // The layers only the mount workloads use (the podman job makes its own).
  const ctx: Context | undefined = workloads.length > 0 ? { fx: prepareFixtures(a.dir, sizes, a.quick ? 'quick' : 'full', a.pkg), sizes, driver } : undefined;
  for (const w of workloads) {
    if (!ctx) break; // (never: ctx exists when workloads do; narrows its type)
    w.prepare?.(ctx);
    for (let rep = 0; rep < reps; rep++) {
      // Rotate the order so no system always runs first (or right after another's writeback).
      const kinds = w.kinds ?? ['overlayd', 'fuse-overlayfs', 'kernel'];
      const here = a.systems.filter((x) => kinds.includes(x.kind));
      const order = here.map((_, i) => here[(i + rep) % here.length]);
      for (const spec of order) {
        if (interrupted) throw new Error('interrupted');
        const system = spec.name;
        const runDir = path.join(a.dir, 'run', system);
        const m = await mountSystem(spec, ctx.fx.lowers, runDir, w.mountOpts?.[spec.kind] ?? []);
        let res: Record<string, number>;
        const cpu0 = daemonCpu(m);
        try {
          res = await w.run(m, ctx);
          const used = daemonCpu(m);
          if (cpu0 !== undefined && used !== undefined) {
            if (!cpu.has(w.name)) cpu.set(w.name, new Map());
            const bySys = cpu.get(w.name) as Map<SystemName, number[]>;
            bySys.set(system, [...(bySys.get(system) ?? []), used - cpu0]);
          }
        } finally {
          await m.unmount();
          fs.rmSync(runDir, { recursive: true, force: true });
        }
        const shown: string[] = [];
        for (const met of w.metrics) {
          if (met.skip?.includes(spec.kind)) continue;
          const v = res[met.key];
          if (!samples.has(met.key)) samples.set(met.key, new Map());
          const bySys = samples.get(met.key) as Map<SystemName, number[]>;
          bySys.set(system, [...(bySys.get(system) ?? []), v]);
          shown.push(`${met.key} ${met.unit === 'us' ? `${v.toFixed(1)} µs` : fmtValue(v, met.unit)}`);
        }
        progress(`[${w.name} ${rep + 1}/${reps}] ${system}: ${shown.join(', ')}`);
      }
    }
  }

  for (const w of engines) {
    for (let rep = 0; rep < reps; rep++) {
      const here = a.systems.filter((x) => w.kinds.includes(x.kind));
      for (const spec of here.map((_, i) => here[(i + rep) % here.length])) {
        if (interrupted) throw new Error('interrupted');
        // A short path of its own, whatever --dir is: see MAX_STORAGE_DIR.
        const runDir = fs.mkdtempSync('/var/tmp/overlayd-pj-');
        let res: Record<string, number>;
        try {
          res = await w.engine(spec, runDir);
        } finally {
          const left = [...mountedPoints()].filter((p) => p.startsWith(runDir + '/'));
          for (const p of left.sort((x, y) => y.length - x.length)) spawnSync('umount', ['-l', p]);
          fs.rmSync(runDir, { recursive: true, force: true });
        }
        const mets = w.metrics.filter((met) => !met.skip?.includes(spec.kind));
        for (const met of mets) {
          if (!samples.has(met.key)) samples.set(met.key, new Map());
          const bySys = samples.get(met.key) as Map<SystemName, number[]>;
          bySys.set(spec.name, [...(bySys.get(spec.name) ?? []), res[met.key]]);
        }
        progress(`[${w.name} ${rep + 1}/${reps}] ${spec.name}: ${mets.map((met) => `${met.key} ${fmtValue(res[met.key], met.unit)}`).join(', ')}`);
      }
    }
  }

  const result: ResultFile = {
    format: 1, label, date: new Date().toISOString(), quick: a.quick, reps, sizes,
    machine: machine(a.dir), load: { before: loadBefore, after: loadAverage() },
    uring: uringState,
    systems: a.systems, versions: Object.fromEntries(a.systems.map((s) => [s.name, versionOf(s)])), package: a.pkg,
    metrics: [...workloads, ...engines].flatMap((w) => w.metrics).map((met) => ({
      ...met,
      results: Object.fromEntries([...(samples.get(met.key) ?? new Map<SystemName, number[]>())].map(([s, v]) => [s, summarize(v)])),
    })),
    daemonCpu: Object.fromEntries([...cpu].map(([w, bySys]) => [w, Object.fromEntries([...bySys].map(([s, v]) => [s, summarize(v)]))])),
  };
  const old = a.compare ? (JSON.parse(fs.readFileSync(a.compare, 'utf8')) as ResultFile) : undefined;
  const md = markdown(result, old);
  fs.mkdirSync(a.out, { recursive: true });
  const base = path.join(a.out, label);
  fs.writeFileSync(`${base}.json`, JSON.stringify(result, null, 2) + '\n');
  fs.writeFileSync(`${base}.md`, md);
  fs.copyFileSync(`${base}.json`, path.join(a.out, 'latest.json'));
  fs.copyFileSync(`${base}.md`, path.join(a.out, 'latest.md'));
  process.stdout.write('\n' + md);
  progress(`wrote ${base}.json and ${base}.md`);
}

async function main(): Promise<void> {
  const a = argsOrExit('bench', () => parseArgs(process.argv.slice(2)));
  if (process.getuid?.() !== 0) {
    process.stderr.write('bench: must run as root (it mounts, and drops caches)\n');
    process.exit(1);
  }
  if (process.env.OVERLAYD_BENCH_NS !== String(process.pid)) {
    // Into a private mount namespace: whatever is mounted there disappears with it. unshare
    // execs node in place, so the pid stays the same; the marker is the pid itself.
    const r = spawnSync('unshare', ['--mount', '--propagation', 'private', '--', 'bash', '-c',
      'export OVERLAYD_BENCH_NS=$$; exec "$@"', 'bench', process.execPath, __filename, ...process.argv.slice(2)], { stdio: 'inherit' });
    process.exit(r.status ?? 1);
  }
  const onSignal = (): void => { interrupted = true; };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // Off again afterwards, as it was: only root sets it, and only this run asked for it.
  const restoreUring = enableUring();
  try {
    await bench(a);
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exitCode = 1;
  } finally {
    await unmountAll();
    restoreUring?.();
    fs.rmSync(path.join(a.dir, 'builds', `run-${process.pid}`), { recursive: true, force: true });
    const left = [...mountedPoints()].filter((p) => p.startsWith(a.dir));
    if (left.length) process.stderr.write(`bench: still mounted: ${left.join(' ')}\n`);
  }
}

if (require.main === module) void main();
