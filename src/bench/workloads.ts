// The workloads. Each runs on a fresh mount (fresh upper) of one system, drives it from
// separate processes (the C driver, or ordinary tools), and returns its measurements.
import fs from 'node:fs';
import path from 'node:path';
import type { Fixtures, Sizes } from './fixtures';
import { mountsJob } from './mounts';
import { podmanJob } from './podman';
import { daemonCpu, engineMountProgram, peakRss, type Mount, type SystemKind, type SystemSpec } from './systems';
import { dropCaches, run, timeShell } from './util';

export interface Metric {
  key: string;
  title: string;
  /** 's' seconds (lower is better), 'B' bytes, 'us' microseconds per op. */
  unit: 's' | 'B' | 'us';
  /** Not measured on this kind of system (e.g. daemon memory of the kernel). */
  skip?: SystemKind[];
}

export interface Context {
  fx: Fixtures;
  sizes: Sizes;
  driver: string;
}

export interface Workload {
  name: string;
  metrics: Metric[];
  /** Kinds of system it runs on (default: all but the no-op file system). */
  kinds?: SystemKind[];
  /** Mount options this workload needs beyond the run's (per-op probes turn caching off). */
  mountOpts?: Partial<Record<SystemKind, string[]>>;
  /** Once per workload, before any mount: puts host caches in the state the workload assumes. */
  prepare?(ctx: Context): void;
  run(m: Mount, ctx: Context): Promise<Record<string, number>>;
}

/**
 * A job that mounts through a container engine rather than on a mount of ours: it gets the
 * system and a fresh directory of its own, and does its own mounting and unmounting there.
 */
export interface EngineWorkload {
  name: string;
  metrics: Metric[];
  kinds: SystemKind[];
  /** Runs without a container engine (podman, runc, busybox). */
  noEngine?: boolean;
  engine(spec: SystemSpec, dir: string): Promise<Record<string, number>>;
}

interface DriverResult { ns: number; ops: number; bytes: number }

export function drive(ctx: Context, args: (string | number)[]): DriverResult {
  const out = run(ctx.driver, args.map(String), { stdio: ['ignore', 'pipe', 'pipe'] });
  return JSON.parse(out.trim().split('\n').pop() as string) as DriverResult;
}

function expect(what: string, got: number, want: number): void {
  if (got !== want) throw new Error(`${what}: expected ${want}, got ${got}`);
}

const MiB = 1 << 20;

export const WORKLOADS: Workload[] = [
  {
    name: 'stat',
    metrics: [
      { key: 'stat-cold', title: '(1) stat 50k files of a 3-layer tree, cold', unit: 's' },
      { key: 'stat-warm', title: '(1) stat them again, warm', unit: 's' },
      { key: 'rss-stat', title: '(9) daemon peak RSS in (1)', unit: 'B', skip: ['kernel'] },
    ],
    async run(m, ctx) {
      dropCaches();
      const cold = drive(ctx, ['statlist', m.merged, ctx.fx.statList]);
      expect('files stat-ed', cold.ops, ctx.fx.statCount);
      const warm = drive(ctx, ['statlist', m.merged, ctx.fx.statList]);
      return { 'stat-cold': cold.ns / 1e9, 'stat-warm': warm.ns / 1e9, 'rss-stat': peakRss(m) ?? NaN };
    },
  },
  {
    name: 'readdir',
    metrics: [{ key: 'readdir', title: '(2) list a 10k-entry dir merged from 3 layers, ×10', unit: 's' }],
    prepare(ctx) {
      for (const l of ctx.fx.lowers) drive(ctx, ['readdir', path.join(l, ctx.fx.readdirDir), 1]);
    },
    async run(m, ctx) {
      const passes = ctx.sizes.readdirPasses;
      const r = drive(ctx, ['readdir', path.join(m.merged, ctx.fx.readdirDir), passes]);
      expect('entries listed', r.ops, passes * (ctx.fx.readdirVisible + 2));
      return { readdir: r.ns / 1e9 };
    },
  },
  {
    name: 'create',
    metrics: [{ key: 'create', title: '(3) create + write 4 KiB + close, 10k files', unit: 's' }],
    async run(m, ctx) {
      const dir = path.join(m.merged, 'new');
      fs.mkdirSync(dir);
      run('sync', []);
      const r = drive(ctx, ['create', dir, ctx.sizes.createFiles, 4096]);
      return { create: r.ns / 1e9 };
    },
  },
  {
    name: 'delete',
    metrics: [{ key: 'delete', title: '(4) rm -rf a lower tree of 10k files', unit: 's' }],
    prepare(ctx) {
      for (const l of ctx.fx.lowers) run('find', [path.join(l, ctx.fx.deleteDir)], { stdio: 'ignore' });
    },
    async run(m, ctx) {
      const target = path.join(m.merged, ctx.fx.deleteDir);
      run('sync', []);
      const t = timeShell(`rm -rf -- '${target}'`);
      if (fs.existsSync(target)) throw new Error(`${target} still exists after rm -rf`);
      return { delete: t };
    },
  },
  {
    name: 'seqread',
    metrics: [
      { key: 'seqread-first', title: '(5) read a 1 GiB lower file, first time', unit: 's' },
      { key: 'seqread', title: '(5) read it again, warm', unit: 's' },
    ],
    prepare(ctx) {
      drive(ctx, ['seqread', ctx.fx.bigLowerPath, MiB]);
    },
    async run(m, ctx) {
      const file = path.join(m.merged, ctx.fx.bigFile);
      const first = drive(ctx, ['seqread', file, MiB]);
      expect('bytes read', first.bytes, ctx.sizes.bigBytes);
      const again = drive(ctx, ['seqread', file, MiB]);
      return { 'seqread-first': first.ns / 1e9, seqread: again.ns / 1e9 };
    },
  },
  {
    name: 'seqwrite',
    metrics: [{ key: 'seqwrite', title: '(5) write a new 1 GiB file', unit: 's' }],
    async run(m, ctx) {
      run('sync', []);
      const r = drive(ctx, ['seqwrite', path.join(m.merged, 'out.bin'), ctx.sizes.bigBytes, MiB]);
      return { seqwrite: r.ns / 1e9 };
    },
  },
  {
    name: 'randread',
    metrics: [
      { key: 'randread-first', title: '(6) 20k random 4 KiB reads of it, first time', unit: 's' },
      { key: 'randread', title: '(6) the same reads again, warm', unit: 's' },
    ],
    prepare(ctx) {
      drive(ctx, ['seqread', ctx.fx.bigLowerPath, MiB]);
    },
    async run(m, ctx) {
      const file = path.join(m.merged, ctx.fx.bigFile);
      const first = drive(ctx, ['randread', file, ctx.sizes.randomReads, 4096, 42]);
      const again = drive(ctx, ['randread', file, ctx.sizes.randomReads, 4096, 42]);
      return { 'randread-first': first.ns / 1e9, randread: again.ns / 1e9 };
    },
  },
  {
    name: 'copyup',
    metrics: [{ key: 'copyup', title: '(7) copy-up: append 1 byte to it', unit: 's' }],
    prepare(ctx) {
      drive(ctx, ['seqread', ctx.fx.bigLowerPath, MiB]);
    },
    async run(m, ctx) {
      run('sync', []);
      const r = drive(ctx, ['append', path.join(m.merged, ctx.fx.bigFile)]);
      const st = fs.statSync(path.join(m.upper, ctx.fx.bigFile));
      expect('upper copy size', st.size, ctx.sizes.bigBytes + 1);
      return { copyup: r.ns / 1e9 };
    },
  },
  {
    name: 'job',
    metrics: [
      { key: 'job-extract', title: '(8) tar xzf a real source tarball', unit: 's' },
      { key: 'job-read', title: '(8) find | xargs cat over it', unit: 's' },
      { key: 'rss-job', title: '(9) daemon peak RSS in (8)', unit: 'B', skip: ['kernel'] },
    ],
    async run(m, ctx) {
      const dir = path.join(m.merged, 'job');
      run('sync', []);
      const extract = timeShell(`mkdir '${dir}' && tar xzf '${ctx.fx.tarball}' -C '${dir}'`);
      const read = timeShell(`find '${dir}' -type f -print0 | xargs -0 cat > /dev/null`);
      const n = run('find', [dir, '-type', 'f']).split('\n').filter(Boolean).length;
      expect('files extracted', n, ctx.fx.tarFiles);
      return { 'job-extract': extract, 'job-read': read, 'rss-job': peakRss(m) ?? NaN };
    },
  },
  {
    // Where the time goes: round trips with every kernel cache turned off, so each call
    // reaches the daemon. Not the systems' default configuration: a probe, not a workload.
    name: 'ops',
    metrics: [
      { key: 'op-fstat', title: 'fstat of an open file (one GETATTR)', unit: 'us' },
      { key: 'op-read', title: '4 KiB O_DIRECT pread (one READ)', unit: 'us', skip: ['kernel'] },
      { key: 'op-getattr', title: 'lstat of one name (LOOKUP, GETATTRs)', unit: 'us' },
      { key: 'op-open', title: 'open + close of one name', unit: 'us' },
      { key: 'cpu-fstat', title: 'daemon CPU per fstat', unit: 'us', skip: ['kernel'] },
      { key: 'cpu-read', title: 'daemon CPU per pread', unit: 'us', skip: ['kernel'] },
    ],
    kinds: ['overlayd', 'fuse-overlayfs', 'kernel', 'noop'],
    mountOpts: {
      overlayd: ['entry_timeout=0', 'attr_timeout=0', 'negative_timeout=0'],
      noop: ['entry_timeout=0', 'attr_timeout=0', 'negative_timeout=0'],
      'fuse-overlayfs': ['timeout=0'],
    },
    async run(m, ctx) {
      const file = path.join(m.merged, 'tree', 'd000', 'f00001');
      // A file larger than the reads: past its end the kernel asks for attributes first.
      const big = path.join(m.merged, ctx.fx.bigFile);
      const n = 20000;
      const perOp = (args: (string | number)[]): { us: number; cpu: number } => {
        const c0 = daemonCpu(m);
        const r = drive(ctx, args);
        const c1 = daemonCpu(m);
        return { us: r.ns / r.ops / 1e3, cpu: c0 === undefined || c1 === undefined ? NaN : ((c1 - c0) * 1e6) / r.ops };
      };
      drive(ctx, ['statloop', file, 1000]);
      const fst = perOp(['fstatloop', big, n]);
      const rd = m.kind === 'kernel' ? undefined : perOp(['readloop', big, n, 4096]);
      const st = perOp(['statloop', file, n]);
      const op = perOp(['openloop', file, n / 4]);
      return {
        'op-fstat': fst.us, 'op-read': rd?.us ?? NaN, 'op-getattr': st.us, 'op-open': op.us,
        'cpu-fstat': fst.cpu, 'cpu-read': rd?.cpu ?? NaN,
      };
    },
  },
];

export const ENGINE_WORKLOADS: EngineWorkload[] = [
  {
    // Mounts as engines make them, one per container and build step (mounts.ts).
    name: 'mounts',
    metrics: [
      { key: 'mount-cold', title: '(11) exec of the mount program to a serving mount, no overlayd server yet', unit: 's' },
      { key: 'mount-warm', title: '(11) the same, another mount being served', unit: 's' },
      { key: 'mount-rss-1', title: '(11) RSS of every process serving 1 mount', unit: 'B', skip: ['kernel'] },
      { key: 'mount-rss-20', title: '(11) RSS of every process serving 20 mounts', unit: 'B', skip: ['kernel'] },
    ],
    kinds: ['overlayd', 'fuse-overlayfs', 'kernel'],
    noEngine: true,
    engine: (spec, dir) => mountsJob(spec, dir),
  },
  {
    // podman (containers/storage's overlay driver) with the system as its mount_program, or,
    // for the kernel, none: native overlay, as podman runs as root by default.
    name: 'podman',
    metrics: [
      { key: 'podman-build', title: '(10) podman build --no-cache, 3 RUN steps', unit: 's' },
      { key: 'podman-build20', title: '(10) podman build --no-cache, 20 RUN steps', unit: 's' },
      { key: 'podman-run', title: '(10) podman run --rm true', unit: 's' },
    ],
    kinds: ['overlayd', 'fuse-overlayfs', 'kernel'],
    async engine(spec, dir) {
      const program = engineMountProgram(spec, dir);
      const r = podmanJob(dir, program, spec.kind === 'overlayd' ? spec.opts : [], spec.kind === 'overlayd' ? spec.env : {});
      return { 'podman-build': r.build, 'podman-build20': r.build20, 'podman-run': r.run };
    },
  },
];
