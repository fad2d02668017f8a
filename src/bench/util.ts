// Small helpers for the benchmark: running commands, reading /proc, statistics, formatting.
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import fs from 'node:fs';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A tool's command line, parsed; a bad one is one line on stderr and exit 2. */
export function argsOrExit<T>(tool: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    process.stderr.write(`${tool}: ${(err as Error).message}\n`);
    process.exit(2);
  }
}

/**
 * Walks a command line flag by flag: `each(flag, value)`, where value() takes the next word as
 * the flag's value, or throws "FLAG needs a value" when there is none.
 */
export function eachFlag(argv: string[], each: (flag: string, value: () => string) => void): void {
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    each(k, () => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${k} needs a value`);
      return x;
    });
  }
}

export function progress(msg: string): void {
  process.stderr.write(`bench: ${msg}\n`);
}

/** Runs a command; throws with its stderr when it fails. Returns stdout. */
export function run(cmd: string, args: string[], opts: SpawnSyncOptions = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) {
    const err = String(r.stderr ?? '').trim().split('\n').slice(-5).join('\n');
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}: ${err}`);
  }
  return String(r.stdout ?? '');
}

/** Runs a shell command and returns its wall time in seconds (process start-up included). */
export function timeShell(script: string, cwd?: string): number {
  const t0 = process.hrtime.bigint();
  run('bash', ['-c', script], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

export function dropCaches(): void {
  run('sync', []);
  fs.writeFileSync('/proc/sys/vm/drop_caches', '3\n');
}

/** Mount points (as written in mountinfo, unescaped) currently mounted in this namespace. */
export function mountedPoints(): Set<string> {
  const out = new Set<string>();
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f.length > 4) out.add(f[4].replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))));
  }
  return out;
}

export function isMounted(mp: string): boolean {
  return mountedPoints().has(mp);
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie (exited child not yet reaped by Node) still answers kill(0).
  try {
    return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** Peak and current resident set of a process, in bytes (VmHWM, VmRSS). */
export function memoryOf(pid: number): { peak: number; rss: number } | undefined {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string): number => Number((new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s) ?? [])[1] ?? NaN) * 1024;
    return { peak: kb('VmHWM'), rss: kb('VmRSS') };
  } catch {
    return undefined;
  }
}

export function loadAverage(): number[] {
  return fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
}

export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
  /** Half the range relative to the median: the table's "±". */
  spread: number;
  samples: number[];
}

export function summarize(samples: number[]): Summary {
  const s = [...samples].sort((a, b) => a - b);
  const n = s.length;
  const median = n === 0 ? NaN : n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
  const min = s[0] ?? NaN;
  const max = s[n - 1] ?? NaN;
  return { n, median, min, max, spread: median > 0 ? (max - min) / 2 / median : 0, samples };
}

/** A value with its unit, to 3 significant digits. */
export function fmtValue(v: number, unit: string): string {
  if (!Number.isFinite(v)) return '–';
  if (unit === 's') {
    if (v < 1e-3) return `${sig(v * 1e6)} µs`;
    if (v < 1) return `${sig(v * 1e3)} ms`;
    return `${sig(v)} s`;
  }
  if (unit === 'B') {
    if (v >= 1 << 30) return `${sig(v / (1 << 30))} GiB`;
    if (v >= 1 << 20) return `${sig(v / (1 << 20))} MiB`;
    return `${sig(v / 1024)} KiB`;
  }
  return `${sig(v)} ${unit}`;
}

export function sig(v: number): string {
  if (v === 0) return '0';
  const digits = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(v))));
  return v.toFixed(Math.min(digits, 3));
}

export function fmtRatio(r: number): string {
  if (!Number.isFinite(r)) return '–';
  return `${r >= 10 ? r.toFixed(0) : r.toFixed(2)}×`;
}
