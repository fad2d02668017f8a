// Random layer trees for the differential fuzzer, and writing them to disk in the kernel's
// format: whiteouts are 0/0 character devices, opaque directories carry
// trusted.overlay.opaque=y. No OCI `.wh.*` names: the kernel shows them, overlayd hides them
// by design, so they are not a difference worth finding here.
import fs from 'node:fs';
import path from 'node:path';
import { C, sys } from '../../src/host/native';
import { S_IFCHR } from '../../src/host/stat';
import type { Rng } from './prng';

/** A time the fuzzer sets: whole seconds and nanoseconds (never 0, so that truncation shows). */
export interface Time { sec: number; nsec: number }
interface Meta { mode: number; uid: number; gid: number; mtime: Time; xattrs: Record<string, string> }
export type FNode =
  | ({ kind: 'file'; data: string } & Meta)
  | ({ kind: 'dir'; children: FTree; opaque: boolean } & Meta)
  | { kind: 'symlink'; target: string; uid: number; gid: number; mtime: Time }
  | { kind: 'hardlink'; to: string }
  | { kind: 'whiteout' }
  | { kind: 'fifo'; mode: number; uid: number; gid: number; mtime: Time };
export interface FTree { [name: string]: FNode }

/** A few short names, so that layers collide on them: that is where union rules apply. */
export const NAMES = ['a', 'b', 'c', 'd', 'e'];
/**
 * The same number of names, two of them bytes that are no UTF-8 (0xff alone, latin1 "caf\xe9"),
 * for a transport that carries any bytes (FuzzMode.bytes). Written as Python's os.fsdecode
 * gives them, the form worker.py reads and writes names in (surrogateescape: byte b >= 0x80
 * that is no UTF-8 is U+DC00+b); osBytes turns them back into bytes.
 */
export const BYTE_NAMES = ['a', 'b', 'c', '\udcff', 'caf\udce9'];

/** A name or path in worker.py's form (see BYTE_NAMES) as the bytes it stands for. */
export function osBytes(s: string): Buffer {
  if (!/[\udc80-\udcff]/.test(s)) return Buffer.from(s);
  const parts: Buffer[] = [];
  let text = '';
  for (const ch of s) {
    const c = ch.charCodeAt(0);
    if (ch.length === 1 && c >= 0xdc80 && c <= 0xdcff) {
      parts.push(Buffer.from(text), Buffer.from([c - 0xdc00]));
      text = '';
    } else {
      text += ch;
    }
  }
  parts.push(Buffer.from(text));
  return Buffer.concat(parts);
}
/** Every generated time lies far before any run: a mtime this old was never set by "now". */
export const OLD_TIME_LIMIT = 1_200_000_000;
export const UIDS = [0, 0, 0, 1000, 65534];
/** Directories are the user's more often, so that its operations succeed as well as fail. */
const DIR_UIDS = [0, 0, 1000, 1000, 65534];
/**
 * The unprivileged user the fuzzer acts as on the kernel transport (run.ts, FuzzMode.user):
 * uid and gid 1000, which layer trees also hand out (UIDS), so that some directories and files
 * are the user's (or group-writable by its group, or world-writable) and others are not.
 */
export const USER = { uid: 1000, gid: 1000 };
const FILE_MODES = [0o644, 0o644, 0o600, 0o755, 0o444, 0o640, 0o4755, 0o2755, 0o664, 0o666];
const DIR_MODES = [0o755, 0o755, 0o700, 0o775, 0o1777, 0o2755, 0o555, 0o777, 0o2775];

/** Whole seconds before OLD_TIME_LIMIT. */
export function oldTime(rng: Rng): number {
  return 1_000_000_000 + rng.int(100_000_000);
}

/** The same with nanoseconds, 1..999999999 (sub-millisecond digits too). */
export function oldTimeNs(rng: Rng): Time {
  return { sec: oldTime(rng), nsec: 1 + rng.int(999_999_999) };
}

function meta(rng: Rng, modes: number[], uids = UIDS): Meta {
  const xattrs: Record<string, string> = {};
  if (rng.chance(0.25)) xattrs[`user.k${rng.int(3)}`] = rng.text(rng.range(1, 12)).replace(/\n/g, ' ');
  if (rng.chance(0.05)) xattrs['trusted.t'] = rng.text(4).replace(/\n/g, ' ');
  return { mode: rng.pick(modes), uid: rng.pick(uids), gid: rng.pick(uids), mtime: oldTimeNs(rng), xattrs };
}

export function fileData(rng: Rng): string {
  const r = rng.int(10);
  if (r === 0) return '';
  if (r === 1) return rng.text(rng.range(60_000, 200_000)); // crosses fuse-native's 128 KiB reads
  return rng.text(rng.range(1, 40));
}

/** A random directory's children; `depth` bounds nesting, `bottom` says no layer lies below. */
export function genTree(rng: Rng, depth: number, density: number, names = NAMES): FTree {
  const tree: FTree = {};
  for (const name of names) {
    if (!rng.chance(density)) continue;
    const files = Object.keys(tree).filter((n) => tree[n].kind === 'file');
    const kind = rng.weighted({
      file: 35,
      dir: depth > 0 ? 30 : 0,
      symlink: 9,
      whiteout: 14,
      fifo: 3,
      hardlink: files.length > 0 ? 5 : 0,
    });
    switch (kind) {
      case 'file': tree[name] = { kind, data: fileData(rng), ...meta(rng, FILE_MODES) }; break;
      case 'dir': tree[name] = { kind, children: genTree(rng, depth - 1, density * 0.8, names), opaque: rng.chance(0.15), ...meta(rng, DIR_MODES, DIR_UIDS) }; break;
      case 'symlink': tree[name] = { kind, target: symlinkTarget(rng, names), uid: rng.pick(UIDS), gid: rng.pick(UIDS), mtime: oldTimeNs(rng) }; break;
      case 'whiteout': tree[name] = { kind }; break;
      case 'fifo': tree[name] = { kind, mode: rng.pick([0o644, 0o600]), uid: rng.pick(UIDS), gid: rng.pick(UIDS), mtime: oldTimeNs(rng) }; break;
      case 'hardlink': tree[name] = { kind, to: rng.pick(files) }; break;
    }
  }
  return tree;
}

/** Relative targets only: an absolute one would leave the mount and see the host. */
export function symlinkTarget(rng: Rng, names = NAMES): string {
  const parts: string[] = [];
  const n = rng.range(1, 3);
  for (let i = 0; i < n; i++) parts.push(i === 0 && rng.chance(0.2) ? '..' : rng.pick(names));
  return parts.join('/');
}

export interface GeneratedLayers {
  /** Top first, as lowerdir= lists them. */
  lowers: FTree[];
  upper: FTree;
  /** Attributes of each layer's root directory. */
  roots: Meta[];
}

export function genLayers(rng: Rng, names = NAMES): GeneratedLayers {
  const n = rng.range(2, 3);
  const lowers = Array.from({ length: n }, () => genTree(rng, 3, 0.6, names));
  const upper = genTree(rng, 2, 0.35, names);
  const roots = Array.from({ length: n + 1 }, () => ({ ...meta(rng, [0o755, 0o775, 0o777, 0o1777], DIR_UIDS), xattrs: {} }));
  dropStrayWhiteouts([upper, ...lowers]);
  return { lowers, upper, roots };
}

/**
 * Removes whiteouts from directories that merge with nothing. The kernel lists such a
 * directory by passing the real one through (readdir.c: a non-merged directory "is real"),
 * so it shows the whiteout in readdir while lookup says ENOENT; overlayd hides it in both.
 * The kernel itself never writes a whiteout where nothing lies below, so such a layer is
 * outside what either is meant for, and the fuzzer does not build it.
 */
export function dropStrayWhiteouts(layers: FTree[]): void {
  const visit = (dirs: FTree[]): void => {
    if (dirs.length === 1) {
      for (const [name, node] of Object.entries(dirs[0])) if (node.kind === 'whiteout') delete dirs[0][name];
    }
    const names = new Set(dirs.flatMap((d) => Object.keys(d)));
    for (const name of names) {
      // Top down, as lookup does: a whiteout or non-directory ends it; opaque ends it below.
      const merged: FTree[] = [];
      for (const d of dirs) {
        const node = d[name];
        if (!node) continue;
        if (node.kind !== 'dir') break;
        merged.push(node.children);
        if (node.opaque) break;
      }
      if (merged.length) visit(merged);
    }
  };
  visit(layers);
}

/** Runs fn with an O_PATH fd of `p`'s parent directory and `p`'s base name. */
function inParent(p: string, fn: (fd: number, name: string) => number): void {
  const fd = sys.openat(-100, osBytes(path.dirname(p)).toString('latin1'), C.O_PATH | C.O_DIRECTORY, 0);
  if (fd < 0) throw new Error(`open ${path.dirname(p)}: errno ${-fd}`);
  try {
    const r = fn(fd, osBytes(path.basename(p)).toString('latin1'));
    if (r < 0) throw new Error(`${p}: errno ${-r}`);
  } finally {
    sys.close(fd);
  }
}

function setMeta(p: string, m: Meta, opaque = false): void {
  for (const [k, v] of Object.entries(m.xattrs)) inParent(p, (fd, name) => sys.setxattr(fd, name, k, Buffer.from(v), 0));
  if (opaque) inParent(p, (fd, name) => sys.setxattr(fd, name, 'trusted.overlay.opaque', Buffer.from('y'), 0));
  fs.lchownSync(osBytes(p), m.uid, m.gid);
  fs.chmodSync(osBytes(p), m.mode); // after chown, which clears setuid/setgid
  setTimes(p, m.mtime);
}

/** atime and mtime to the nanosecond (fs.lutimesSync takes a double: no ns at 1e9 s), not following a symlink. */
function setTimes(p: string, t: Time): void {
  inParent(p, (fd, name) => sys.utimensat(fd, name, t.sec, t.nsec, t.sec, t.nsec));
}

/** Writes `tree` into the existing directory `root`. */
export function buildTree(root: string, tree: FTree): void {
  for (const [name, node] of Object.entries(tree)) {
    const p = path.join(root, name);
    const b = osBytes(p);
    switch (node.kind) {
      case 'file':
        fs.writeFileSync(b, node.data);
        setMeta(p, node);
        break;
      case 'dir':
        fs.mkdirSync(b);
        buildTree(p, node.children);
        setMeta(p, node, node.opaque);
        break;
      case 'symlink':
        fs.symlinkSync(osBytes(node.target), b);
        fs.lchownSync(b, node.uid, node.gid);
        setTimes(p, node.mtime);
        break;
      case 'hardlink':
        fs.linkSync(osBytes(path.join(root, node.to)), b);
        break;
      case 'whiteout':
        inParent(p, (fd, n) => sys.mknodat(fd, n, S_IFCHR, 0, 0));
        break;
      case 'fifo':
        inParent(p, (fd, n) => sys.mknodat(fd, n, 0o010000 | node.mode, 0, 0));
        fs.lchownSync(b, node.uid, node.gid);
        fs.chmodSync(b, node.mode);
        setTimes(p, node.mtime);
        break;
    }
  }
}

/** Builds the generated layers into a layout's (empty) lower and upper directories. */
export function buildLayers(g: GeneratedLayers, lowers: string[], upper: string): void {
  const dirs = [...lowers, upper];
  [...g.lowers, g.upper].forEach((tree, i) => {
    buildTree(dirs[i], tree);
    setMeta(dirs[i], g.roots[i]);
  });
}
