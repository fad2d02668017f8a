// Ordinary tools run against a mount from a separate process, asynchronously: a test process
// must never block synchronously on a mount (the serving daemon may be waiting on it).
import { execFile } from 'node:child_process';
import path from 'node:path';

export interface Ran { code: number; stdout: string; stderr: string }

/** Runs `cmd args` to completion; never throws for a non-zero exit, returns it. */
export function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, {
      cwd: opts.cwd,
      env: { ...process.env, LC_ALL: 'C', TZ: 'UTC', ...opts.env },
      maxBuffer: 512 * 1024 * 1024,
      encoding: 'utf8',
    }, (err, stdout, stderr) => {
      if (err && typeof (err as NodeJS.ErrnoException).code === 'string') { reject(err); return; }
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** `sh -c script` in `cwd`. */
export function sh(script: string, cwd?: string): Promise<Ran> {
  return run('sh', ['-c', script], { cwd });
}

/** Runs a python3 snippet with argv; resolves with stdout, rejects with stderr on failure. */
export async function python(code: string, args: string[] = [], cwd?: string): Promise<string> {
  const r = await run('python3', ['-c', code, ...args], { cwd });
  if (r.code !== 0) throw new Error(`python3 failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

export interface Walked {
  entries: Record<string, Record<string, unknown> & { type: string; names?: string[] }>;
  phantoms: string[];
  dino: string[];
  links: string[][];
}

/** test/lib/walk.py over `root`: the whole tree as a program sees it. */
export async function walkTree(root: string): Promise<Walked> {
  const r = await run('python3', [path.join(__dirname, 'walk.py'), root]);
  if (r.code !== 0) throw new Error(`walk.py ${root} failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Walked;
}
