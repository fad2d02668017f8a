// `npm run fuzz -- [--seeds N] [--start S] [--seed S] [--ops N] [--replay FILE] ...`:
// the long differential run against kernel overlayfs. scripts/fuzz.sh runs this in a private
// mount namespace. Exit status 1 when any seed diverges; each failing case is shrunk and
// written to --out as JSON ({seed, ops}) for --replay.
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_WEIGHTS, weightsFor, type FuzzMode, type OpKind } from './ops';
import { DEFAULT_MODE, formatResult, minimize, runSeed, type FuzzOptions, type SeedResult } from './run';
import type { Op } from './worker';

interface Args {
  seeds: number[];
  ops: number;
  replay?: { seed: number; ops: Op[]; mode?: FuzzMode };
  minimize: boolean;
  out: string;
  opts: FuzzOptions;
}

function usage(msg: string): never {
  process.stderr.write(`fuzz: ${msg}\nusage: npm run fuzz -- [--seeds N] [--start S] [--seed S] [--ops N] [--replay FILE] [--no-minimize] [--strict-upper] [--known-limits] [--weights op=w,...] [--seconds] [--root-only] [--utf8-names] [--ns] [--as-user] [--byte-names] [--redirect-dir] [--trace] [--tmpfs] [--out DIR]\n`);
  process.exit(2);
}

function parse(argv: string[]): Args {
  let count = 20;
  let start = 1;
  let single: number | undefined;
  const a: Args = { seeds: [], ops: 40, minimize: true, out: '/tmp/overlayd-fuzz', opts: { ops: 40 } };
  const weights: Partial<Record<OpKind, number>> = {};
  const mode: FuzzMode = { ...DEFAULT_MODE };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = (): string => argv[++i] ?? usage(`${k} needs a value`);
    const n = (): number => { const x = Number(v()); if (!Number.isInteger(x) || x < 0) usage(`${k} needs a whole number`); return x; };
    switch (k) {
      case '--seeds': count = n(); break;
      case '--start': start = n(); break;
      case '--seed': single = n(); break;
      case '--ops': a.ops = n(); break;
      case '--replay': a.replay = JSON.parse(fs.readFileSync(v(), 'utf8')) as { seed: number; ops: Op[]; mode?: FuzzMode }; break;
      case '--seconds': mode.ns = false; break;
      case '--root-only': mode.user = false; break;
      case '--utf8-names': mode.bytes = false; break;
      // The other way: hold fuse-native to what it cannot carry, to see its limits (README).
      case '--ns': mode.ns = true; break;
      case '--as-user': mode.user = true; break;
      case '--byte-names': mode.bytes = true; break;
      case '--redirect-dir': mode.redirect = true; break;
      case '--trace': a.opts.trace = (i, op, rk, ro) => process.stdout.write(`  ${String(i).padStart(3)} ${JSON.stringify(op)}\n      kernel ${JSON.stringify(rk)}${JSON.stringify(rk) === JSON.stringify(ro) ? '' : `, overlayd ${JSON.stringify(ro)}`}\n`); break;
      case '--no-minimize': a.minimize = false; break;
      case '--strict-upper': a.opts.strictUpper = true; break;
      case '--known-limits': weights.utime2 = 3; weights.renameat2 = 3; weights.ulistxattr = 2; break;
      case '--weights':
        for (const kv of v().split(',')) {
          const [op, w] = kv.split('=');
          if (!(op in DEFAULT_WEIGHTS) || !Number.isFinite(Number(w))) usage(`bad weight ${kv}`);
          weights[op as OpKind] = Number(w);
        }
        break;
      case '--out': a.out = v(); break;
      case '--tmpfs': a.opts.tmpfs = true; break;
      default: usage(`unknown argument ${k}`);
    }
  }
  a.opts.ops = a.ops;
  // A replay runs in the mode it was found in (its operations may name the user).
  a.opts.mode = a.replay?.mode ?? mode;
  a.opts.weights = { ...weightsFor(a.opts.mode), ...weights };
  a.seeds = single !== undefined ? [single] : Array.from({ length: count }, (_, i) => start + i);
  return a;
}

async function main(): Promise<void> {
  const args = parse(process.argv.slice(2));
  const say = (s: string): void => { process.stdout.write(s + '\n'); };
  const m = args.opts.mode ?? DEFAULT_MODE;
  say(`fuzz: mtimes compared ${m.ns ? 'to the nanosecond' : 'in whole seconds'}, operations as ${m.user ? 'root and an unprivileged user (allow_other)' : 'root'}`);
  if (args.replay) {
    let r = await runSeed(args.replay.seed, args.opts, args.replay.ops);
    if (r.divergence && args.minimize) r = await minimize(r, args.opts, 40, (s) => say(s));
    say(formatResult(r));
    process.exit(r.divergence ? 1 : 0);
  }
  const failed: SeedResult[] = [];
  let ops = 0;
  let succeeded = 0;
  let upperDiffSeeds = 0;
  for (const seed of args.seeds) {
    let r = await runSeed(seed, args.opts);
    ops += r.ops.length;
    succeeded += r.succeeded;
    if (r.upperDiffs.length) {
      upperDiffSeeds++;
      say(`seed ${seed}: upper layers differ on disk (view is what counts):\n  ${r.upperDiffs.slice(0, 10).join('\n  ')}`);
    }
    if (!r.divergence) { say(formatResult(r)); continue; }
    if (args.minimize) r = await minimize(r, args.opts, 40, (s) => say(s));
    say(formatResult(r));
    fs.mkdirSync(args.out, { recursive: true });
    const file = path.join(args.out, `seed-${seed}.json`);
    fs.writeFileSync(file, JSON.stringify({ seed, ops: r.ops, mode: args.opts.mode }) + '\n');
    say(`  written to ${file} (replay: npm run fuzz -- --replay ${file})`);
    failed.push(r);
  }
  say(`fuzz: ${args.seeds.length} seeds, ${ops} operations (${succeeded} succeeded in the kernel's view), ` +
    `${failed.length} diverged${failed.length ? ` (${failed.map((f) => f.seed).join(', ')})` : ''}, ` +
    `${upperDiffSeeds} with on-disk upper differences`);
  say(`${args.seeds.length - failed.length} passed, ${failed.length} failed`);
  process.exit(failed.length ? 1 : 0);
}

main().catch((err: unknown) => {
  process.stderr.write(`fuzz: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
