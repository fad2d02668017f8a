// One fuzz case: a seed gives layer trees and a sequence of operations; both are applied to an
// overlayd mount and to a kernel overlayfs mount of identical copies, and every reply and the
// final trees must agree. Then overlayd's upper layer, mounted by the kernel over the same
// lowers, must show what the kernel's own run left.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { TRANSPORT, layout, mountKernel, mountOverlayd, type Layout, type Mounted } from '../lib/mounts';
import { diffSnapshots, ownerDiffs, sameReply, type Snapshot } from './compare';
import { buildLayers, genLayers } from './layers';
import { OpGen, namesFor, weightsFor, ROOT_SECONDS, trackHandles, type FuzzMode, type OpKind, type View } from './ops';
import { Rng } from './prng';
import { HangError, Worker, type Op, type Reply } from './worker';

/** The kernel features overlayd implements, in the form it implements them. */
export const KERNEL_OPTIONS = ['redirect_dir=off', 'index=off', 'metacopy=off'];

/** The kernel's options for a mode: redirect_dir=on where the mode moves directories. */
export function kernelOptions(mode: FuzzMode): string[] {
  return mode.redirect ? ['redirect_dir=on', ...KERNEL_OPTIONS.filter((o) => !o.startsWith('redirect_dir='))] : KERNEL_OPTIONS;
}
/**
 * libfuse 2's high-level API gives each path its own node, so two hard links to one file are
 * two inodes to the FUSE kernel: a change through one leaves the other's cached attributes
 * stale for attr_timeout (README, "fuse-native limits"). The fuzzer compares the daemon's
 * semantics, so on fuse-native it mounts without an attribute cache; the kernel transport is
 * fuzzed with its default caches (a day, kept exact by invalidations).
 */
export function overlaydOptions(mode: FuzzMode): string[] {
  return [...(mode.byPath ? ['attr_timeout=0'] : []), ...(mode.user ? ['allow_other'] : []), ...(mode.redirect ? ['redirect_dir=on'] : [])];
}

/**
 * What the transport under test carries (README, "What is compared"): overlayd's own FUSE
 * transport (the daemon's default for root, as here) carries the caller's credentials and
 * nanosecond times, so the fuzzer acts as an unprivileged user too and compares mtimes to the
 * nanosecond; fuse-native does neither, and is compared in whole seconds, as root.
 */
export const KERNEL_MODE: FuzzMode = { ns: true, user: true, byPath: false, bytes: true };
export const DEFAULT_MODE: FuzzMode = (TRANSPORT ?? (process.getuid?.() === 0 ? 'kernel' : 'fuse-native')) === 'kernel' ? KERNEL_MODE : ROOT_SECONDS;

export interface FuzzOptions {
  /** Operations per case (ignored when replaying a given list). */
  ops: number;
  weights?: Record<OpKind, number>;
  /** Extra -o options for overlayd. */
  overlaydOptions?: string[];
  /** Count differences between the two upper layers on disk as divergences. */
  strictUpper?: boolean;
  /** Test hook: alter overlayd's copy of the layers after they are built. */
  tamper?: (l: Layout) => void;
  /** What to generate and compare; DEFAULT_MODE (from the transport) unless given. */
  mode?: FuzzMode;
  /** Called with every operation and both replies (`--trace`). */
  trace?: (i: number, op: Op, kernel: Reply, overlayd: Reply) => void;
  /**
   * Every layer on a tmpfs of its own (upper and work share one, as the kernel requires):
   * origins then name objects of other filesystems, whose file handles overlayd must not read.
   */
  tmpfs?: boolean;
}

/** Puts each layer of `l` on a fresh tmpfs (`--tmpfs`); returns their mount points, to unmount. */
function tmpfsLayers(l: Layout): string[] {
  const uw = path.join(path.dirname(l.merged), 'uw');
  fs.mkdirSync(uw);
  const points = [...l.lowers, uw];
  for (const p of points) {
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'overlayd-fuzz', p], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`mount tmpfs at ${p}: ${r.stderr}`);
  }
  fs.rmdirSync(l.upper as string);
  fs.rmdirSync(l.work as string);
  l.upper = path.join(uw, 'upper');
  l.work = path.join(uw, 'work');
  fs.mkdirSync(l.upper);
  fs.mkdirSync(l.work);
  return points;
}

export type Stage = 'initial' | 'op' | 'hang' | 'final' | 'daemon' | 'upper-owner' | 'kernel-remount' | 'upper';

export interface Divergence {
  stage: Stage;
  /** Index in `ops` of the operation whose replies differ. */
  index?: number;
  kernel?: Reply;
  overlayd?: Reply;
  diffs?: string[];
}

export interface SeedResult {
  seed: number;
  /** The operations performed, up to and including the one that diverged. */
  ops: Op[];
  divergence?: Divergence;
  /** Differences between the upper layers on disk (informational unless strictUpper). */
  upperDiffs: string[];
  /** Operations that succeeded in the kernel's view: how much the case exercised. */
  succeeded: number;
}

/** The kernel's own bookkeeping in an upper layer, which overlayd need not write alike. */
const KERNEL_PRIVATE = (n: string): boolean => n.startsWith('trusted.overlay.') && n !== 'trusted.overlay.opaque' && n !== 'trusted.overlay.redirect';

async function walk(w: Worker, p = '', raw = false): Promise<Snapshot> {
  return w.value<Snapshot>({ op: 'walk', p, raw });
}

async function viewOf(w: Worker, handles: number[]): Promise<View> {
  const list = await w.value<[string, string][]>({ op: 'paths' });
  return { paths: new Map([['', 'dir'], ...list]), handles };
}

/** Runs one case. With `replay`, performs exactly those operations instead of generating. */
export async function runSeed(seed: number, opts: FuzzOptions, replay?: Op[]): Promise<SeedResult> {
  const mode = opts.mode ?? DEFAULT_MODE;
  const ns = mode.ns;
  const rng = new Rng(seed);
  const layers = genLayers(rng, namesFor(mode));
  const ours = layout(layers.lowers.length);
  const theirs = layout(layers.lowers.length);
  const tmpfs: string[] = [];
  if (opts.tmpfs) for (const l of [ours, theirs]) tmpfs.push(...tmpfsLayers(l));
  buildLayers(layers, ours.lowers, ours.upper as string);
  buildLayers(layers, theirs.lowers, theirs.upper as string);
  // The user must reach both mounts: mkdtemp made their parent directories 0700.
  if (mode.user) for (const l of [ours, theirs]) fs.chmodSync(path.dirname(l.merged), 0o755);
  opts.tamper?.(ours);

  const result: SeedResult = { seed, ops: [], upperDiffs: [], succeeded: 0 };
  const mounts: Mounted[] = [];
  const workers: Worker[] = [];
  const finish = async (): Promise<void> => {
    await Promise.all(workers.splice(0).map((w) => w.close()));
    for (const m of mounts.splice(0).reverse()) await m.unmount();
  };
  try {
    // allow_other: without it the FUSE kernel refuses every process but the daemon's uid.
    const od = await mountOverlayd(ours, opts.overlaydOptions ?? overlaydOptions(mode));
    mounts.push(od);
    mounts.push(mountKernel(theirs, kernelOptions(mode)));
    const wo = new Worker(ours.merged);
    const wk = new Worker(theirs.merged);
    workers.push(wo, wk);

    // Inode numbers are overlayd's own only on its kernel transport (fuse-native: libfuse's).
    const links = !mode.byPath;
    const first = diffSnapshots(await walk(wk), await walk(wo), { ns, links });
    if (first.length) { result.divergence = { stage: 'initial', diffs: first }; return result; }

    const gen = new OpGen(rng, opts.weights ?? weightsFor(mode), mode);
    let view: View = { paths: new Map(), handles: [] };
    const total = replay ? replay.length : opts.ops;
    for (let i = 0; i < total; i++) {
      let op: Op;
      if (replay) op = replay[i];
      else {
        view = await viewOf(wk, view.handles);
        op = gen.next(view);
      }
      result.ops.push(op);
      let rk: Reply;
      let ro: Reply;
      try {
        [rk, ro] = await Promise.all([wk.call(op), wo.call(op)]);
      } catch (err) {
        if (!(err instanceof HangError)) throw err;
        result.divergence = { stage: 'hang', index: i, diffs: [err.message] };
        return result;
      }
      opts.trace?.(i, op, rk, ro);
      if (!sameReply(rk, ro, ns)) {
        result.divergence = { stage: 'op', index: i, kernel: rk, overlayd: ro };
        return result;
      }
      if ('r' in rk) result.succeeded++;
      trackHandles(view, op, 'r' in rk && rk.r === true);
    }
    await Promise.all([wk.call({ op: 'closeall' }), wo.call({ op: 'closeall' })]);
    const kernelFinal = await walk(wk);
    const final = diffSnapshots(kernelFinal, await walk(wo), { ns, links });
    if (final.length) { result.divergence = { stage: 'final', diffs: final }; return result; }
    const exited = od.daemon?.exitCode ?? null;
    if (exited !== null) { result.divergence = { stage: 'daemon', diffs: [`overlayd exited with ${exited}`] }; return result; }
    await finish();

    // The upper layers on disk, side by side (the kernel's bookkeeping xattrs aside).
    const host = new Worker('/');
    workers.push(host);
    const theirUpper = await walk(host, theirs.upper as string, true);
    const ourUpper = await walk(host, ours.upper as string, true);
    result.upperDiffs = diffSnapshots(theirUpper, ourUpper, { ignoreXattr: KERNEL_PRIVATE, sharedWhiteouts: true, ns });
    await finish();
    // What both wrote to disk, both wrote as the same owner.
    const owners = ownerDiffs(theirUpper, ourUpper);
    if (owners.length) { result.divergence = { stage: 'upper-owner', diffs: owners }; return result; }
    if (opts.strictUpper && result.upperDiffs.length) { result.divergence = { stage: 'upper', diffs: result.upperDiffs }; return result; }

    // overlayd's upper under the kernel: the view must be the kernel's own result.
    mounts.push(mountKernel(ours, kernelOptions(mode)));
    const again = new Worker(ours.merged);
    workers.push(again);
    const remount = diffSnapshots(kernelFinal, await walk(again), { ns, links: true }, ['kernel run', 'kernel over overlayd upper']);
    if (remount.length) result.divergence = { stage: 'kernel-remount', diffs: remount };
    return result;
  } finally {
    await finish();
    for (const p of tmpfs) if (spawnSync('umount', [p]).status !== 0) spawnSync('umount', ['-l', p]);
    for (const l of [ours, theirs]) fs.rmSync(path.dirname(l.merged), { recursive: true, force: true });
  }
}

/** What makes two failures "the same" while shrinking: the stage, and the kind of operation. */
function signature(r: SeedResult): string | undefined {
  const d = r.divergence;
  if (!d) return undefined;
  return d.stage === 'op' && d.index !== undefined ? `op:${r.ops[d.index].op}` : d.stage;
}

/**
 * Shrinks a failing case's operations (delta debugging, bounded by `budget` replays) to a
 * short sequence that still fails the same way. The layer trees stay those of the seed.
 */
export async function minimize(failed: SeedResult, opts: FuzzOptions, budget = 40, log: (s: string) => void = () => undefined): Promise<SeedResult> {
  const want = signature(failed);
  let best = failed;
  let ops = failed.ops;
  let tries = 0;
  const test = async (cand: Op[]): Promise<boolean> => {
    tries++;
    const r = await runSeed(failed.seed, opts, cand);
    if (signature(r) !== want) return false;
    best = r;
    ops = r.ops;
    log(`  shrunk to ${ops.length} operations`);
    return true;
  };
  let n = 2;
  while (ops.length >= 1 && tries < budget) {
    const size = Math.ceil(ops.length / n);
    let reduced = false;
    for (let i = 0; i < ops.length && tries < budget; i += size) {
      const cand = [...ops.slice(0, i), ...ops.slice(i + size)];
      if (await test(cand)) { n = Math.max(n - 1, 2); reduced = true; break; }
    }
    if (!reduced) {
      if (size <= 1) break;
      n = Math.min(n * 2, ops.length);
    }
  }
  return best;
}

export function formatResult(r: SeedResult): string {
  const d = r.divergence;
  if (!d) return `seed ${r.seed}: same (${r.ops.length} operations, ${r.succeeded} succeeded)`;
  const lines = [`seed ${r.seed}: DIVERGES at ${d.stage}${d.index !== undefined ? ` (operation ${d.index})` : ''}`];
  lines.push('operations:');
  r.ops.forEach((op, i) => lines.push(`  ${String(i).padStart(3)} ${JSON.stringify(op)}`));
  if (d.stage === 'op') {
    lines.push(`  kernel:   ${JSON.stringify(d.kernel)}`);
    lines.push(`  overlayd: ${JSON.stringify(d.overlayd)}`);
  }
  for (const x of (d.diffs ?? []).slice(0, 40)) lines.push(`  ${x}`);
  if ((d.diffs ?? []).length > 40) lines.push(`  ... ${(d.diffs ?? []).length - 40} more`);
  return lines.join('\n');
}
