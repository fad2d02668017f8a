// The Node side of test/fuzz/worker.py: one python process per view, fed JSON lines. The
// syscalls happen in that process, never in ours, so this process can never deadlock on a
// mount (and both views get exactly the same calls).
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';

export type Reply = { r: unknown } | { e: string };
export type Op = { op: string } & Record<string, unknown>;

export const WORKER_PY = path.join(__dirname, 'worker.py');

export class Worker {
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly waiting: ((line: string) => void)[] = [];
  private stderr = '';
  private exited = false;

  constructor(readonly root: string) {
    this.proc = spawn('python3', [WORKER_PY, root], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc.stderr.on('data', (d: Buffer) => { this.stderr += d.toString(); });
    this.proc.on('exit', () => {
      this.exited = true;
      for (const w of this.waiting.splice(0)) w('');
    });
    readline.createInterface({ input: this.proc.stdout }).on('line', (line) => {
      const w = this.waiting.shift();
      if (w) w(line);
    });
  }

  /**
   * Performs one operation. A watchdog (not an assertion: no result depends on speed) turns an
   * operation stuck in the kernel, e.g. on a daemon that stopped answering, into a HangError.
   */
  call(op: Op, watchdogMs = 120_000): Promise<Reply> {
    if (this.exited) return Promise.reject(new Error(`fuzz worker for ${this.root} is gone: ${this.stderr}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.proc.kill('SIGKILL');
        reject(new HangError(`no answer to ${JSON.stringify(op)} in ${this.root}`));
      }, watchdogMs);
      this.waiting.push((line) => {
        clearTimeout(timer);
        if (line === '') reject(new Error(`fuzz worker for ${this.root} died during ${JSON.stringify(op)}: ${this.stderr}`));
        else resolve(JSON.parse(line) as Reply);
      });
      this.proc.stdin.write(asciiJson(op) + '\n');
    });
  }

  /** The value of a call that must succeed. */
  async value<T>(op: Op): Promise<T> {
    const r = await this.call(op);
    if ('e' in r) throw new Error(`${JSON.stringify(op)} failed in ${this.root}: ${r.e}`);
    return r.r as T;
  }

  /** Ends the worker (closing its open files) and waits for it. */
  close(): Promise<void> {
    if (this.exited) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), 10_000);
      this.proc.once('exit', () => { clearTimeout(timer); resolve(); });
      this.proc.stdin.end();
    });
  }
}

/**
 * JSON with every non-ASCII char escaped, as worker.py's replies are: names in surrogateescape
 * form (layers.ts, BYTE_NAMES) then reach it whatever its stdin's encoding.
 */
function asciiJson(v: unknown): string {
  return JSON.stringify(v).replace(/[\u0080-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

/** An operation that never returned: the daemon (or the kernel) stopped answering. */
export class HangError extends Error {}
