// The stress run's served side (see stress.ts): the `overlayd` CLI it runs, the counters it reads
// from `status --json`, and with --mounts N > 1 the N mounts one resident `overlayd serve`
// process serves (README "One server, many mounts"), in a run dir of the run's own so that the
// server is the run's alone and leaves when the run unmounts.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Counters } from '../cli/registry';
import { alive } from './util';

const BIN = path.join(path.resolve(__dirname, '..', '..'), 'bin', 'overlayd');

/**
 * How long the run's server waits for another mount once the last is gone: short, since the
 * run checks that it leaves, and nothing mounts again.
 */
export const SERVER_IDLE_MS = 2000;

/** Per-process counters: every mount of one server reports the same process's, so not summed. */
const PROCESS_WIDE = new Set<keyof Counters>(['rssBytes', 'fds', 'heapUsedBytes', 'externalBytes']);

export function run(args: string[], timeoutMs = 30000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException & { code?: unknown }).code === 'number' ? (err as unknown as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

interface StatusEntry { pid: number; mountpoint: string; state?: string; counters?: Counters }

async function statusEntries(target?: string): Promise<StatusEntry[] | undefined> {
  const r = await run(['status', '--json', ...(target === undefined ? [] : [target])], 15000);
  if (r.code !== 0) return undefined;
  try { return JSON.parse(r.stdout) as StatusEntry[]; } catch { return undefined; }
}

export async function statusCounters(merged: string): Promise<Counters | undefined> {
  return (await statusEntries(merged))?.[0]?.counters;
}

/** One merged view of the serving process: per-mount counters summed, per-process ones as they are. */
export function sumCounters(cs: Counters[]): Counters | undefined {
  if (cs.length === 0) return undefined;
  const out: Record<string, number> = {};
  for (const c of cs) {
    for (const [k, v] of Object.entries(c) as [keyof Counters, number | undefined][]) {
      if (typeof v !== 'number') continue;
      out[k] = PROCESS_WIDE.has(k) ? Math.max(out[k] ?? 0, v) : (out[k] ?? 0) + v;
    }
  }
  return out as unknown as Counters;
}

export interface ServedMount { merged: string; upper: string; work: string; log: string }

/** The run's server and its mounts. */
export class Server {
  pid: number | undefined;

  constructor(readonly mounts: ServedMount[]) {}

  /**
   * The environment every `overlayd` the run starts inherits: the server's socket and records
   * in the run's own run dir (so a server of the host is never used, nor ours left to it).
   */
  static environment(runDir: string): void {
    fs.mkdirSync(runDir, { recursive: true, mode: 0o700 });
    process.env.OVERLAYD_RUN_DIR = runDir;
    process.env.OVERLAYD_SERVER_IDLE_MS = String(SERVER_IDLE_MS);
    delete process.env.OVERLAYD_SERVER;
  }

  /** Mounts each in turn through the server (the first starts it); throws with the CLI's words. */
  async mountAll(opts: (m: ServedMount) => string, say: (msg: string) => void): Promise<void> {
    const t = Date.now();
    for (const m of this.mounts) {
      const r = await run(['mount', '--log-file', m.log, '-o', opts(m), m.merged], 60000);
      // Known from the first mount on: a run that fails half-way still unmounts and kills it.
      this.pid ??= (await statusEntries(m.merged))?.[0]?.pid;
      if (r.code !== 0) throw new Error(`overlayd mount ${m.merged} exited ${r.code}: ${r.stderr.trim()}`);
    }
    const es = await statusEntries();
    const pids = new Set((es ?? []).filter((e) => this.has(e.mountpoint)).map((e) => e.pid));
    if (pids.size !== 1 || !pids.has(this.pid ?? 0)) throw new Error(`the ${this.mounts.length} mounts are served by ${pids.size} processes (${[...pids].join(' ')}), not one server`);
    say(`${this.mounts.length} mounts in ${((Date.now() - t) / 1000).toFixed(1)} s, served by pid ${this.pid}`);
  }

  private has(mp: string): boolean {
    return this.mounts.some((m) => m.merged === mp);
  }

  /** The sum over the run's mounts; undefined unless every one of them answers. */
  async counters(): Promise<Counters | undefined> {
    const es = (await statusEntries())?.filter((e) => this.has(e.mountpoint) && e.pid === this.pid);
    const cs = (es ?? []).map((e) => e.counters).filter((c): c is Counters => c !== undefined);
    return cs.length === this.mounts.length ? sumCounters(cs) : undefined;
  }

  gone(): boolean {
    return this.pid === undefined || !alive(this.pid);
  }

  /** `overlayd umount` of each; the first failure, if any. */
  async unmountAll(): Promise<{ code: number; stdout: string; stderr: string }> {
    let first = { code: 0, stdout: '', stderr: '' };
    for (const m of this.mounts) {
      const r = await run(['umount', m.merged], 60000);
      if (r.code !== 0 && first.code === 0) first = { ...r, stderr: `${m.merged}: ${r.stderr}` };
    }
    return first;
  }
}
