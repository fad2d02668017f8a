// Which overlayd mounts run on this machine: one small JSON file per daemon under /run,
// refreshed by the daemon with its counters, removed when it exits.
import fs from 'node:fs';
import path from 'node:path';

export const RUN_DIR = process.env.OVERLAYD_RUN_DIR ?? '/run/overlayd';

export interface MountRecord {
  pid: number;
  mountpoint: string;
  options: string[];
  started: number;
  counters?: Record<string, number>;
}

const fileOf = (pid: number): string => path.join(RUN_DIR, `${pid}.json`);

export function registerMount(rec: MountRecord): void {
  try {
    fs.mkdirSync(RUN_DIR, { recursive: true, mode: 0o755 });
    const tmp = fileOf(rec.pid) + '.tmp';
    fs.writeFileSync(tmp, JSON.stringify(rec));
    fs.renameSync(tmp, fileOf(rec.pid));
  } catch {
    // Status is a convenience; a read-only /run must not stop a mount.
  }
}

export function unregisterMount(pid: number): void {
  try { fs.unlinkSync(fileOf(pid)); } catch { /* already gone */ }
}

/** Records of daemons still alive; stale files of dead daemons are dropped. */
export function listMounts(): MountRecord[] {
  let names: string[] = [];
  try { names = fs.readdirSync(RUN_DIR); } catch { return []; }
  const out: MountRecord[] = [];
  for (const n of names) {
    if (!n.endsWith('.json')) continue;
    try {
      const rec = JSON.parse(fs.readFileSync(path.join(RUN_DIR, n), 'utf8')) as MountRecord;
      try { process.kill(rec.pid, 0); } catch { unregisterMount(rec.pid); continue; }
      out.push(rec);
    } catch { /* half-written or foreign file */ }
  }
  return out;
}
