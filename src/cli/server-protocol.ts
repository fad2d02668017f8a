// How a mount program talks to the resident server (server.ts). The C client (native/client.c)
// speaks the same bytes, so this is the one description of them:
//
//   request:  NUL-terminated strings: MAGIC, the caller's cwd, argc in decimal, the argv after
//             the program name, then the caller's OVERLAYD_* environment as KEY=VALUE; then the
//             client shuts down its side.
//   reply:    `CODE\n` and the text the caller prints on stderr, then the server closes; or
//             `exec\n`: not for a server (a form or an environment it does not serve), run the
//             mount as a daemon of its own.
//
// The socket lives in the run dir and is named after the caller's user and mount namespaces: a
// server serves only callers in its own (FUSE uids are relative to the opener's user namespace,
// and mount(2) acts in the caller's mount namespace).
import fs from 'node:fs';
import path from 'node:path';
import { RUN_DIR } from './registry';

export const MAGIC = 'overlayd-request-1';
export const DELEGATE = 'exec';

export interface ServerRequest {
  cwd: string;
  argv: string[];
  env: Record<string, string>;
}

export type ServerReply = { code: number; stderr: string } | 'delegate';

/** The inode number of one of our namespaces (`user:[4026531837]` -> 4026531837). */
function nsInode(kind: 'user' | 'mnt'): string {
  try { return /\[(\d+)\]/.exec(fs.readlinkSync(`/proc/self/ns/${kind}`))?.[1] ?? '0'; } catch { return '0'; }
}

/** The server's socket for this process's namespaces (and its lock file: the same plus `.lock`). */
export function serverSocketPath(dir = RUN_DIR): string {
  return path.join(dir, `server-${nsInode('user')}-${nsInode('mnt')}.sock`);
}

/** The environment a request carries: OVERLAYD_*. */
export function overlaydEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (k.startsWith('OVERLAYD_') && v !== undefined) out[k] = v;
  return out;
}

/** Variables that say how to reach a server, not how to mount. */
const NOT_COMPARED = new Set(['OVERLAYD_SERVER', 'OVERLAYD_SERVER_IDLE_MS', 'OVERLAYD_HOME', 'OVERLAYD_NODE']);

/** A server serves only callers that would mount as it would: the same OVERLAYD_* settings. */
export function sameEnv(a0: Record<string, string>, b0: Record<string, string>): boolean {
  const keep = (r: Record<string, string>): Record<string, string> => Object.fromEntries(Object.entries(r).filter(([k]) => !NOT_COMPARED.has(k)));
  const a = keep(a0), b = keep(b0);
  const ka = Object.keys(a).sort(), kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}

export function encodeRequest(r: ServerRequest): Buffer {
  const fields = [MAGIC, r.cwd, String(r.argv.length), ...r.argv, ...Object.entries(r.env).map(([k, v]) => `${k}=${v}`)];
  return Buffer.from(fields.map((f) => `${f}\0`).join(''), 'utf8');
}

/** The request, or why it is not one. */
export function decodeRequest(buf: Buffer): ServerRequest | Error {
  const fields = buf.toString('utf8').split('\0');
  if (fields.pop() !== '') return new Error('request not terminated');
  const [magic, cwd, argc, ...rest] = fields;
  const n = Number(argc);
  if (magic !== MAGIC || cwd === undefined || !path.isAbsolute(cwd) || !Number.isInteger(n) || n < 0 || n > rest.length) return new Error('not an overlayd request');
  const env: Record<string, string> = {};
  for (const kv of rest.slice(n)) {
    const eq = kv.indexOf('=');
    if (eq <= 0) return new Error('bad environment entry');
    env[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return { cwd, argv: rest.slice(0, n), env };
}

export function encodeReply(r: ServerReply): Buffer {
  return Buffer.from(r === 'delegate' ? `${DELEGATE}\n` : `${r.code}\n${r.stderr}`, 'utf8');
}

export function decodeReply(buf: Buffer): ServerReply | Error {
  const s = buf.toString('utf8');
  const nl = s.indexOf('\n');
  if (nl < 0) return new Error('the server closed without an answer');
  const head = s.slice(0, nl);
  if (head === DELEGATE) return 'delegate';
  const code = Number(head);
  if (!/^\d+$/.test(head) || code > 255) return new Error('the server answered nonsense');
  return { code, stderr: s.slice(nl + 1) };
}
