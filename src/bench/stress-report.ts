// The stress run's samples and its report (see stress.ts): the JSON kept, and its Markdown summary.
import fs from 'node:fs';
import type { Counters } from '../cli/registry';
import type { Args, Worker, WorkerError } from './stress';
import { fmtValue } from './util';

/** RSS growth from the first to the last quartile of the run flagged as suspicious. */
const RSS_SUSPICIOUS = 0.25;

export type Phase = 'idle' | 'warmup' | 'load' | 'baseline-busy' | 'baseline' | 'final-busy' | 'final';

export interface Sample {
  t: number;
  phase: Phase;
  fds?: number;
  rss?: number;
  hwm?: number;
  counters?: Counters;
  workEntries?: number;
  workerOps: number;
  opsPerSec?: number;
  fuseOpsPerSec?: number;
}

export interface Report {
  args: Args;
  started: string;
  transport: string;
  kernel: string;
  node: string;
  layers: string[];
  durationSeconds: number;
  interrupted: boolean;
  samples: Sample[];
  workers: { slot: number; total: number; ops: Record<string, number>; expected: Record<string, number>; unexpected: number; exit?: Worker['exit']; stderr: string }[];
  errors: WorkerError[];
  daemon: { pid: number; exitCode: number | null; signal: string | null; umountCode: number; umountStderr: string; logProblems: string[]; leftMounted: string[]; workEntriesAfter?: number };
  dirsInTree?: number;
  rss: { firstQuartileAvg: number; lastQuartileAvg: number; growth: number; suspicious: boolean };
  failures: string[];
  warnings: string[];
  verdict: 'pass' | 'fail';
}

/** pino lines at error (50) or fatal (60). */
export function logErrors(file: string): string[] {
  let text = '';
  try { text = fs.readFileSync(file, 'utf8'); } catch { return []; }
  return text.split('\n').filter((l) => { try { return (JSON.parse(l) as { level?: number }).level! >= 50; } catch { return false; } });
}

export function rssTrend(s: Sample[]): Report['rss'] {
  const v = s.map((x) => x.rss).filter((x): x is number => x !== undefined);
  const q = Math.max(1, Math.floor(v.length / 4));
  const avg = (xs: number[]): number => xs.reduce((x, y) => x + y, 0) / Math.max(1, xs.length);
  const first = avg(v.slice(0, q));
  const last = avg(v.slice(-q));
  const growth = first > 0 ? last / first - 1 : 0;
  return { firstQuartileAvg: first, lastQuartileAvg: last, growth, suspicious: growth > RSS_SUSPICIOUS };
}

export function markdown(r: Report): string {
  const by = (p: Phase): Sample | undefined => r.samples.find((s) => s.phase === p);
  const load = r.samples.filter((s) => s.phase === 'load');
  const cols: [string, Sample | undefined][] = [
    ['baseline (quiescent, after warm-up)', by('baseline')], ['first under load', load[0]], ['last under load', load[load.length - 1]],
    ['end, workers stopped', by('final-busy')], ['final (quiescent)', by('final')],
  ];
  const kernel = r.transport === 'kernel';
  const many = (r.args.mounts ?? 1) > 1;
  const peak = (f: (s: Sample) => number | undefined): number | undefined => {
    const v = r.samples.map(f).filter((x): x is number => x !== undefined);
    return v.length ? Math.max(...v) : undefined;
  };
  const rows: [string, (s: Sample) => number | undefined, string][] = [
    [many ? 'server fds' : 'daemon fds', (s) => s.fds, ''],
    ['  of which the directory cache', (s) => s.counters?.dirCacheFds, ''],
    ['directory cache entries', (s) => s.counters?.dirCacheEntries, ''],
    ['RSS', (s) => s.rss, 'B'],
    ['V8 heap used', (s) => s.counters?.heapUsedBytes, 'B'],
    ['memory held by Buffers (external)', (s) => s.counters?.externalBytes, 'B'],
    ['open files (core handles)', (s) => s.counters?.openFiles, ''],
    ...(kernel ? [
      ['kernel nodes', (s: Sample) => s.counters?.nodes, ''],
      ['kernel file handles', (s: Sample) => s.counters?.fuseOpenFiles, ''],
      ['kernel directory handles', (s: Sample) => s.counters?.openDirs, ''],
      ['passthrough backing ids', (s: Sample) => s.counters?.backingIds, ''],
      ['nodes bound to a backing id', (s: Sample) => s.counters?.backedNodes, ''],
    ] as [string, (s: Sample) => number | undefined, string][] : [
      ['unlinked-but-open files still named .fuse_hidden*', (s: Sample) => s.counters?.hiddenFiles, ''],
    ] as [string, (s: Sample) => number | undefined, string][]),
    ['entries in workdir/work', (s) => s.workEntries, ''],
  ];
  const fmt = (v: number | undefined, unit: string): string => (v === undefined ? '–' : unit === 'B' ? fmtValue(v, 'B') : String(v));
  const out: string[] = [];
  const opsTotal = r.workers.reduce((x, w) => x + w.total, 0);
  const loadRates = load.map((s) => s.opsPerSec).filter((x): x is number => x !== undefined);
  const fuseRates = load.map((s) => s.fuseOpsPerSec).filter((x): x is number => x !== undefined);
  const avg = (xs: number[]): number => Math.round(xs.reduce((x, y) => x + y, 0) / Math.max(1, xs.length));
  out.push(`# overlayd stress run: ${r.transport} transport, ${r.args.minutes} min, ${many ? `${r.args.mounts} mounts served by one server, ` : ''}${r.args.workers} workers`);
  out.push('');
  out.push(`${r.started}, Linux ${r.kernel}, node ${r.node}; ${Math.round(r.durationSeconds)} s in all. **Verdict: ${r.verdict.toUpperCase()}**${r.interrupted ? ' (interrupted)' : ''}`);
  out.push('');
  for (const f of r.failures) out.push(`- FAIL: ${f}`);
  for (const w of r.warnings) out.push(`- note: ${w}`);
  if (r.failures.length || r.warnings.length) out.push('');
  out.push(`| | ${cols.map((c) => c[0]).join(' | ')} | peak |`);
  out.push(`| --- | ${cols.map(() => '---:').join(' | ')} | ---: |`);
  for (const [label, f, unit] of rows) {
    out.push(`| ${label} | ${cols.map((c) => (c[1] ? fmt(f(c[1]), unit) : '–')).join(' | ')} | ${fmt(peak(f), unit)} |`);
  }
  const hwm = peak((s) => s.hwm);
  out.push('');
  out.push(`- RSS trend under load: first quartile ${fmtValue(r.rss.firstQuartileAvg, 'B')}, last quartile ${fmtValue(r.rss.lastQuartileAvg, 'B')} (${r.rss.growth >= 0 ? '+' : ''}${(r.rss.growth * 100).toFixed(1)}%${r.rss.suspicious ? ', suspicious' : ''}); peak (VmHWM) ${hwm !== undefined ? fmtValue(hwm, 'B') : '–'}`);
  out.push(`- throughput: ${opsTotal} worker operations (${avg(loadRates)}/s under load), ${avg(fuseRates)} FUSE requests/s served`);
  out.push(`- directories in the tree at the end: ${r.dirsInTree ?? '?'}; ${many ? `server pid ${r.daemon.pid} left: ${r.failures.some((f) => f.startsWith('the server did not leave')) ? 'no' : 'yes'}` : `daemon exit ${r.daemon.signal ?? r.daemon.exitCode}`}, overlayd umount exit ${r.daemon.umountCode}, left mounted: ${r.daemon.leftMounted.length ? r.daemon.leftMounted.join(' ') : 'nothing'}, workdir/work after unmount: ${r.daemon.workEntriesAfter ?? '?'} entries`);
  const ops: Record<string, number> = {};
  const expected: Record<string, number> = {};
  for (const w of r.workers) {
    for (const [k, v] of Object.entries(w.ops)) ops[k] = (ops[k] ?? 0) + v;
    for (const [k, v] of Object.entries(w.expected)) expected[k] = (expected[k] ?? 0) + v;
  }
  out.push(`- operations: ${Object.entries(ops).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  out.push(`- expected errors: ${Object.entries(expected).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}; unexpected: ${r.errors.length || 'none'}`);
  for (const e of r.errors.slice(0, 20)) out.push(`  - ${e.t.toFixed(0)} s, worker ${e.slot}, ${e.op}: ${e.errno} ${e.msg}`);
  out.push('');
  // A timeline of at most ~20 rows.
  const tl = r.samples;
  const step = Math.max(1, Math.ceil(tl.length / 20));
  out.push('| t (s) | phase | fds | RSS | nodes | backing ids | open files | ops/s | FUSE req/s |');
  out.push('| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  tl.forEach((s, i) => {
    if (i % step !== 0 && s.phase === 'load' && i !== tl.length - 1) return;
    out.push(`| ${s.t} | ${s.phase} | ${s.fds ?? '–'} | ${s.rss ? fmtValue(s.rss, 'B') : '–'} | ${s.counters?.nodes ?? '–'} | ${s.counters?.backingIds ?? '–'} | ${s.counters?.openFiles ?? '–'} | ${s.opsPerSec ?? '–'} | ${s.fuseOpsPerSec ?? '–'} |`);
  });
  return out.join('\n') + '\n';
}
