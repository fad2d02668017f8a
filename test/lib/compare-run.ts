// Runs the same shell steps on an overlayd mount and on kernel overlayfs over a clone of the
// same layers, and collects what a test compares: each step's output, the merged view, the
// upper layer on disk, the work directory, and the kernel's view of overlayd's upper layer.
// Every mount made here is unmounted before the function returns (or throws).
import { spawnSync } from 'node:child_process';
import type { Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { cloneLayout, layout, mountKernel, mountOverlayd, type Layout, type Mounted } from './mounts';
import { removeTree } from './stack';
import { build, snapshot, tmpdir, type Seen, type Tree } from './tree';

/** The kernel's modes without index/metacopy, and without making redirects unless a test asks. */
export const KERNEL_OPTS = ['redirect_dir=off', 'index=off', 'metacopy=off'];

/**
 * userxattr implies redirect_dir=nofollow, and the kernel refuses redirect_dir=off beside it;
 * a redirect_dir= in `extra` replaces the default one.
 */
export function kernelOpts(extra: string[]): string[] {
  const own = extra.some((x) => x.startsWith('redirect_dir='));
  const o = [...extra, ...KERNEL_OPTS.filter((x) => !own || !x.startsWith('redirect_dir='))];
  return extra.includes('userxattr') && !own ? o.filter((x) => !x.startsWith('redirect_dir=')) : o;
}

/**
 * Bookkeeping xattrs the kernel writes for features overlayd leaves out (impure dirs, for
 * index=on's readdir; the layer uuid; nlink, for index=on's hard links). The kernel does not
 * need them to read a layer. The origin xattr overlayd writes: it is compared (see originOf).
 */
const KERNEL_BOOKKEEPING = /^(trusted|user)\.overlay\.(impure|uuid|nlink)$/;
const ORIGIN = /^(trusted|user)\.overlay\.origin$/;

interface LowerObject { path: string; nlink: bigint }

/**
 * An origin xattr (struct ovl_fb: version, magic 0xfb, length, flags, handle type, the lower
 * filesystem's uuid, then the fid) as what it names: the two sides' layers are copies, so the
 * handles differ in their inode numbers; the header and the lower object named must not.
 * Undefined for the copy of a lower hard link: the kernel (index=off) writes no origin there,
 * overlayd does, to follow open readers across the copy-up (README, Semantics).
 */
function originOf(hex: string, lowerInos: Map<bigint, LowerObject>): string | undefined {
  const fb = Buffer.from(hex.replace(/^0x/, ''), 'hex');
  if (fb.length < 25 || fb[1] !== 0xfb) return `not an origin: ${hex}`;
  const head = `v${fb[0]} len ${fb[2]}/${fb.length} flags ${fb[3]} type ${fb[4]} uuid ${fb.subarray(5, 21).toString('hex')}`;
  const ino = fb[4] === 1 || fb[4] === 2 ? BigInt(fb.readUInt32LE(21)) : fb.length >= 29 ? fb.readBigUInt64LE(21) : -1n;
  const lower = lowerInos.get(ino);
  if (lower && lower.nlink > 1n && !lower.path.endsWith('/')) return undefined;
  return `${head} -> ${lower?.path ?? `ino ${ino}, in no lower layer`}`;
}

/** Every object of the lower layers by inode number: "l<i>/<path>" ("/" ends a directory's). */
function lowerInodes(lowers: string[]): Map<bigint, LowerObject> {
  const out = new Map<bigint, LowerObject>();
  lowers.forEach((root, i) => {
    const walk = (rel: string): void => {
      const p = rel ? path.join(root, rel) : root;
      const st = fs.lstatSync(p, { bigint: true });
      out.set(st.ino, { path: `l${i}/${rel}${st.isDirectory() ? '/' : ''}`, nlink: st.nlink });
      if (st.isDirectory()) for (const n of fs.readdirSync(p)) walk(rel ? path.join(rel, n) : n);
    };
    walk('');
  });
  return out;
}

/**
 * A step run as another user (`setpriv`, its own uid as gid, `groups` as supplementary groups or
 * none), with its output and exit status as the step's output: both sides must fail alike.
 */
export function stepAs(uid: number, cmd: string, groups = ''): string {
  return `setpriv --reuid=${uid} --regid=${uid} ${groups ? `--groups=${groups}` : '--clear-groups'} bash -c '${cmd.replace(/'/g, "'\\''")}' 2>&1; echo "status $?"`;
}

export interface StepResult { status: number | null; out: string; err: string }

export interface Side {
  steps: StepResult[];
  merged: Record<string, Seen>;
  upper: Record<string, Seen>;
  /** Names left in workdir/work after unmount. */
  work: string[];
}

export interface Compared {
  ours: Side;
  kern: Side;
  /** Kernel overlayfs mounted over overlayd's upper layer with the same lowers. */
  remount: Record<string, Seen>;
}

export interface CompareOptions {
  /** Mount options for both (e.g. userxattr). */
  extra?: string[];
  /** Options for overlayd only (FUSE ones, e.g. allow_other). */
  oursExtra?: string[];
  /** Make the layout's base dirs traversable (0755), for steps run as another user. */
  openBase?: boolean;
  /** Compare xattrs (default true) and non-directory mtimes (default false). */
  xattrs?: boolean;
  mtime?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Merged-relative paths whose content is not compared (e.g. git's index, full of inode numbers). */
  ignoreContent?: string[];
  /** Runs before the steps (same for both sides), given the fresh layout. */
  prepare?: (l: Layout) => void;
}

function runSteps(cwd: string, steps: string[], env: NodeJS.ProcessEnv): StepResult[] {
  // A separate process against a mount served by another process: no deadlock.
  return steps.map((s) => {
    const r = spawnSync('bash', ['-c', s], { cwd, encoding: 'utf8', env: { ...process.env, LC_ALL: 'C', ...env }, timeout: 60000 });
    return { status: r.status, out: r.stdout, err: r.stderr };
  });
}

function normalize(snap: Record<string, Seen>, opts: CompareOptions, lowerInos?: Map<bigint, LowerObject>): Record<string, Seen> {
  for (const [p, s] of Object.entries(snap)) {
    for (const k of Object.keys(s.xattrs ?? {})) {
      const x = s.xattrs as Record<string, string>;
      const origin = ORIGIN.test(k) && lowerInos ? originOf(x[k], lowerInos) : x[k];
      if (KERNEL_BOOKKEEPING.test(k) || origin === undefined) delete x[k];
      else x[k] = origin;
    }
    if (opts.ignoreContent?.some((i) => p === i || p.startsWith(i + '/'))) { delete s.content; delete s.size; delete s.mtimeMs; }
  }
  return snap;
}

/** A snapshot of `root`; for an upper layer, with `lowers` to read its origin xattrs against. */
function see(root: string, opts: CompareOptions, lowers?: string[]): Record<string, Seen> {
  return normalize(snapshot(root, { xattrs: opts.xattrs ?? true, mtime: opts.mtime ?? false }), opts, lowers && lowerInodes(lowers));
}

async function side(l: Layout, m: Mounted, steps: string[], opts: CompareOptions): Promise<Side> {
  let ran: StepResult[];
  let merged: Record<string, Seen>;
  try {
    ran = runSteps(m.merged, steps, opts.env ?? {});
    merged = see(m.merged, opts);
  } finally {
    await m.unmount();
  }
  const work = fs.readdirSync(path.join(l.work as string, 'work'));
  return { steps: ran, merged, upper: see(l.upper as string, opts, l.lowers), work };
}

/**
 * Builds `layers` (top first), runs `steps` (bash, cwd = the mount) on both, and collects what
 * to compare. All mounts are gone and all dirs removed when it returns.
 */
export async function compareRun(layers: Tree[], steps: string[], opts: CompareOptions = {}): Promise<Compared> {
  const l = layout(layers.length);
  const dirs = [path.dirname(l.merged)];
  try {
    layers.forEach((tree, i) => build(l.lowers[i], tree));
    opts.prepare?.(l);
    const k = cloneLayout(l);
    dirs.push(path.dirname(k.merged));
    return await compareOn(l, k, steps, opts, dirs);
  } finally {
    for (const d of dirs) removeTree(d);
  }
}

async function compareOn(l: Layout, k: Layout, steps: string[], opts: CompareOptions, dirs: string[]): Promise<Compared> {
  if (opts.openBase) for (const x of [l, k]) fs.chmodSync(path.dirname(x.merged), 0o755);
  const extra = opts.extra ?? [];
  const ours = await side(l, await mountOverlayd(l, [...extra, ...(opts.oursExtra ?? [])]), steps, opts);
  const kern = await side(k, mountKernel(k, kernelOpts(extra)), steps, opts);
  // The format check: kernel overlayfs reading the upper layer overlayd wrote.
  const again: Layout = { ...l, work: tmpdir('overlayd-work-') };
  dirs.push(again.work as string);
  const m = mountKernel(again, kernelOpts(extra));
  let remount: Record<string, Seen>;
  try {
    remount = see(m.merged, opts);
  } finally {
    await m.unmount();
  }
  return { ours, kern, remount };
}

/** Paths whose entries differ between two snapshots, each with the fields that differ: readable failures. */
export function differences(a: Record<string, Seen>, b: Record<string, Seen>): string[] {
  const out: string[] = [];
  for (const p of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (!(p in a) || !(p in b)) { out.push(`${p}: only in ${p in a ? 'overlayd' : 'kernel'} (${(a[p] ?? b[p]).type})`); continue; }
    for (const k of new Set([...Object.keys(a[p]), ...Object.keys(b[p])]) as Set<keyof Seen>) {
      const x = JSON.stringify(a[p][k]);
      const y = JSON.stringify(b[p][k]);
      if (x !== y) out.push(`${p}: ${k} ${(x ?? '-').slice(0, 80)} (overlayd) != ${(y ?? '-').slice(0, 80)} (kernel)`);
    }
  }
  return out.sort();
}

/**
 * The whole comparison: step outputs, merged view, upper on disk, an empty workdir/work, and
 * the kernel's view of our upper. `allSucceed`: every step must also exit 0 on the kernel,
 * so that two equal failures cannot pass for a test.
 */
export function sameAsKernel(t: Test, c: Compared, allSucceed = false): void {
  if (allSucceed) t.same(c.kern.steps.map((s) => s.status), c.kern.steps.map(() => 0), 'every step succeeds on the kernel');
  t.same(c.ours.steps, c.kern.steps, 'each step prints and exits as on the kernel');
  t.same(differences(c.ours.merged, c.kern.merged), [], 'merged view as the kernel');
  t.same(differences(c.ours.upper, c.kern.upper), [], 'upper layer on disk as the kernel');
  t.same(c.ours.work, [], 'nothing left in workdir/work');
  t.same(differences(c.remount, c.kern.merged), [], 'kernel overlayfs reads our upper layer as its own');
}
