// Building real layer trees for tests: files, dirs, symlinks, whiteouts, opaque dirs, xattrs.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';

export type Node =
  | string // a regular file with this content
  | { file: string; mode?: number; xattrs?: Record<string, string>; mtime?: number }
  | { dir: Tree; mode?: number; opaque?: boolean; xattrs?: Record<string, string> }
  | { symlink: string }
  | { whiteout: true }
  | { fifo: true }
  | { chr: [number, number] };

export interface Tree { [name: string]: Node }

/** Every directory tmpdir made in this process: what a test leaves, failing or not, goes at exit. */
const made = new Set<string>();

/** A fresh directory under `parent` (default the system's temp dir), removed at exit at the latest. */
export function tmpdir(prefix = 'overlayd-test-', parent = os.tmpdir()): string {
  const dir = fs.mkdtempSync(path.join(parent, prefix));
  if (made.size === 0) process.on('exit', removeMade);
  made.add(dir);
  return dir;
}

function removeMade(): void {
  for (const dir of made) if (fs.existsSync(dir)) removeTree(dir);
  made.clear();
}

/**
 * rm -rf that never crosses into another filesystem (a mount left under it) and copes with
 * trees deeper than PATH_MAX, which fs.rmSync does not.
 */
export function removeTree(p: string): void {
  spawnSync('rm', ['-rf', '--one-file-system', '--', p], { timeout: 60000 });
}

export function setXattr(p: string, name: string, value: string): void {
  execFileSync('setfattr', ['-h', '-n', name, '-v', value, p]);
}

/** Writes `tree` under `root` (created if missing). */
export function build(root: string, tree: Tree): void {
  fs.mkdirSync(root, { recursive: true });
  for (const [name, node] of Object.entries(tree)) {
    const p = path.join(root, name);
    if (typeof node === 'string') {
      fs.writeFileSync(p, node);
    } else if ('file' in node) {
      fs.writeFileSync(p, node.file);
      if (node.mode !== undefined) fs.chmodSync(p, node.mode);
      for (const [k, v] of Object.entries(node.xattrs ?? {})) setXattr(p, k, v);
      if (node.mtime !== undefined) fs.utimesSync(p, node.mtime, node.mtime);
    } else if ('dir' in node) {
      build(p, node.dir);
      if (node.mode !== undefined) fs.chmodSync(p, node.mode);
      if (node.opaque) setXattr(p, 'trusted.overlay.opaque', 'y');
      for (const [k, v] of Object.entries(node.xattrs ?? {})) setXattr(p, k, v);
    } else if ('symlink' in node) {
      fs.symlinkSync(node.symlink, p);
    } else if ('whiteout' in node) {
      execFileSync('mknod', [p, 'c', '0', '0']);
    } else if ('fifo' in node) {
      execFileSync('mkfifo', [p]);
    } else if ('chr' in node) {
      execFileSync('mknod', [p, 'c', String(node.chr[0]), String(node.chr[1])]);
    }
  }
}

/** A full description of a tree as seen through the filesystem, for comparing two views. */
export interface Seen {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size?: number;
  content?: string;
  target?: string;
  rdev?: number;
  xattrs?: Record<string, string>;
  mtimeMs?: number;
}

function listXattrs(p: string): Record<string, string> {
  let out = '';
  try {
    out = execFileSync('getfattr', ['-h', '-d', '-m', '-', '--absolute-names', '-e', 'hex', p], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return {};
  }
  const res: Record<string, string> = {};
  for (const line of out.split('\n')) {
    const m = /^([^#=][^=]*)=(.*)$/.exec(line);
    if (m) res[m[1]] = m[2];
  }
  return res;
}

/** Walks `root` with lstat/readdir/readlink/read: everything a user could tell apart. */
export function snapshot(root: string, opts: { xattrs?: boolean; mtime?: boolean } = {}): Record<string, Seen> {
  const out: Record<string, Seen> = {};
  const walk = (rel: string): void => {
    const p = rel ? path.join(root, rel) : root;
    const st = fs.lstatSync(p);
    const type = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : st.isSymbolicLink() ? 'symlink' : st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'chr' : st.isBlockDevice() ? 'blk' : st.isSocket() ? 'sock' : '?';
    const seen: Seen = { type, mode: st.mode, uid: st.uid, gid: st.gid };
    if (type === 'file') { seen.size = st.size; seen.content = fs.readFileSync(p).toString('base64'); }
    if (type === 'symlink') seen.target = fs.readlinkSync(p);
    if (type === 'chr' || type === 'blk') seen.rdev = st.rdev;
    if (opts.xattrs) seen.xattrs = listXattrs(p);
    if (opts.mtime && type !== 'dir') seen.mtimeMs = Math.floor(st.mtimeMs);
    out[rel || '.'] = seen;
    if (type === 'dir') for (const name of fs.readdirSync(p).sort()) walk(rel ? path.join(rel, name) : name);
  };
  walk('');
  return out;
}
