// Random but seeded layer trees in the kernel's on-disk format, for comparing whole merged
// views with kernel overlayfs: shared names across layers (so entries merge, hide and
// whiteout each other), every file type, whiteouts, opaque dirs, setuid files, hard links,
// xattrs, owners, modes and nanosecond times. `toOci` rewrites a layer into OCI markers.
import fs from 'node:fs';
import path from 'node:path';
import { toBinary } from '../../src/host/bytes';
import { C, sys } from '../../src/host/native';

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;
const S_IFSOCK = 0o140000;

function ok(r: number, what: string): void {
  if (r < 0) throw new Error(`${what}: errno ${-r}`);
}

/** An O_PATH fd of a host path's parent directory (the addon takes dirfd + name, as bytes). */
function parentFd(p: string): number {
  const dfd = sys.openat(-100, toBinary(path.dirname(p)), C.O_PATH | C.O_DIRECTORY, 0);
  ok(dfd, `open ${path.dirname(p)}`);
  return dfd;
}

/** setxattr on a host path without following a final symlink. */
export function lsetxattr(p: string, name: string, value: Buffer): void {
  const dfd = parentFd(p);
  try { ok(sys.setxattr(dfd, toBinary(path.basename(p)), toBinary(name), value, 0), `setxattr ${p} ${name}`); } finally { sys.close(dfd); }
}

export function lremovexattr(p: string, name: string): void {
  const dfd = parentFd(p);
  try { ok(sys.removexattr(dfd, toBinary(path.basename(p)), toBinary(name)), `removexattr ${p} ${name}`); } finally { sys.close(dfd); }
}

function lgetxattr(p: string, name: string): Buffer | undefined {
  const dfd = parentFd(p);
  try {
    const v = sys.getxattr(dfd, toBinary(path.basename(p)), toBinary(name));
    return typeof v === 'number' ? undefined : v;
  } finally { sys.close(dfd); }
}

interface Times { atime: [number, number]; mtime: [number, number] }

function setTimes(p: string, t: Times): void {
  ok(sys.utimensat(-100, toBinary(p), t.atime[0], t.atime[1], t.mtime[0], t.mtime[1]), `utimensat ${p}`);
}

function getTimes(p: string): Times {
  const st = fs.lstatSync(p, { bigint: true });
  const split = (ns: bigint): [number, number] => [Number(ns / 1000000000n), Number(ns % 1000000000n)];
  return { atime: split(st.atimeNs), mtime: split(st.mtimeNs) };
}

export interface GenOptions {
  seed: number;
  /** Deepest directory level (root is 0). */
  maxDepth?: number;
  /** Names each directory draws from; shared by all layers so that they collide. */
  pool?: string[];
  /** Chance that a pool name exists in a given directory of a given layer. */
  density?: number;
}

export interface GenReport {
  /** Counts by kind over all layers, to check the generator made what a test relies on. */
  counts: Record<string, number>;
}

// Some names need quoting or escaping in tools' output (space, newline, backslash, UTF-8, a
// leading dash). Not UTF-8 bytes: fuse-native hands paths over as UTF-8 strings.
const DEFAULT_POOL = ['d0', 'd1', 'd2', 'd3', 'f0', 'f1', 'f2', 'f3', 's0', 's1', 'x0', 'x1', 'x2', 'd s p', 'f\nnl', 'x\\ü-é', '-d'];
const OWNERS = [0, 0, 0, 1, 2, 1000, 65534, 123456];
const FILE_MODES = [0o644, 0o644, 0o600, 0o755, 0o4755, 0o2755, 0o6711, 0o444, 0o640, 0o1755, 0o000];
const DIR_MODES = [0o755, 0o755, 0o700, 0o1777, 0o2775, 0o555, 0o750];

/**
 * Fills `dirs` (top layer first; they must exist and be empty) with random trees.
 * Same seed, same trees.
 */
export function generateLayers(dirs: string[], opts: GenOptions): GenReport {
  const rnd = prng(opts.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const chance = (p: number): boolean => rnd() < p;
  const maxDepth = opts.maxDepth ?? 4;
  const pool = opts.pool ?? DEFAULT_POOL;
  const density = opts.density ?? 0.6;
  const counts: Record<string, number> = {};
  const count = (k: string): void => { counts[k] = (counts[k] ?? 0) + 1; };
  const time = (): [number, number] => [978307200 + Math.floor(rnd() * 700000000), Math.floor(rnd() * 1e9)];
  const bytes = (n: number): Buffer => {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(rnd() * 256);
    return b;
  };
  const owner = (p: string): void => { fs.lchownSync(p, pick(OWNERS), pick(OWNERS)); };
  const xattrs = (p: string, symlink: boolean): void => {
    // user.* is not allowed on symlinks (nor on devices and fifos by most filesystems' rules).
    if (!symlink && chance(0.25)) { lsetxattr(p, `user.k${Math.floor(rnd() * 3)}`, chance(0.2) ? Buffer.alloc(0) : bytes(1 + Math.floor(rnd() * 40))); count('xattr.user'); }
    if (chance(0.15)) { lsetxattr(p, `trusted.t${Math.floor(rnd() * 2)}`, Buffer.from(`v${Math.floor(rnd() * 100)}`)); count('xattr.trusted'); }
    // The overlay's own namespace: hidden through both mounts, meaningless on non-directories.
    if (chance(0.05)) { lsetxattr(p, 'trusted.overlay.junk', Buffer.from('1')); count('xattr.private'); }
    // An escaped caller xattr (kernel 6.7+): trusted.overlay.overlay.X reads as trusted.overlay.X.
    if (chance(0.05)) { lsetxattr(p, 'trusted.overlay.overlay.esc', Buffer.from('e')); count('xattr.escaped'); }
    // The other overlay namespace is an ordinary one on a trusted.overlay mount.
    if (!symlink && chance(0.05)) { lsetxattr(p, 'user.overlay.other', Buffer.from('o')); count('xattr.user.overlay'); }
  };

  const fileIn = (p: string, regular: string[]): void => {
    const size = chance(0.15) ? 0 : chance(0.8) ? Math.floor(rnd() * 300) : Math.floor(rnd() * 200000);
    fs.writeFileSync(p, bytes(size));
    owner(p);
    fs.chmodSync(p, pick(FILE_MODES)); // after chown, which clears setuid
    xattrs(p, false);
    setTimes(p, { atime: time(), mtime: time() });
    regular.push(p);
    count('file');
  };

  const fillDir = (dir: string, depth: number): void => {
    const regular: string[] = [];
    for (const name of pool) {
      if (!chance(density)) continue;
      const p = path.join(dir, name);
      const roll = rnd();
      const prefers = name[0];
      let kind: string;
      if (prefers === 'd' && roll < 0.75) kind = 'dir';
      else if (prefers === 'f' && roll < 0.7) kind = 'file';
      else if (prefers === 's' && roll < 0.6) kind = 'symlink';
      else kind = pick(['dir', 'file', 'file', 'symlink', 'whiteout', 'whiteout', 'fifo', 'chr', 'blk', 'sock', 'link']);
      if (kind === 'dir' && depth >= maxDepth) kind = 'file';
      if (kind === 'link' && regular.length === 0) kind = 'file';
      switch (kind) {
        case 'dir':
          fs.mkdirSync(p);
          fillDir(p, depth + 1);
          owner(p);
          fs.chmodSync(p, pick(DIR_MODES));
          xattrs(p, false);
          if (chance(0.2)) { lsetxattr(p, 'trusted.overlay.opaque', Buffer.from('y')); count('opaque'); }
          else if (chance(0.05)) { lsetxattr(p, 'trusted.overlay.opaque', Buffer.from('n')); count('opaque=n'); }
          setTimes(p, { atime: time(), mtime: time() });
          count('dir');
          break;
        case 'file':
          fileIn(p, regular);
          break;
        case 'symlink': {
          const target = pick(['f0', '../d0/f1', '/etc/passwd', '/nonexistent/x', 'd1', '.', '..', 'x'.repeat(1 + Math.floor(rnd() * 300))]);
          fs.symlinkSync(target, p);
          owner(p);
          xattrs(p, true);
          setTimes(p, { atime: time(), mtime: time() });
          count('symlink');
          break;
        }
        case 'whiteout':
          ok(sys.mknodat(-100, toBinary(p), S_IFCHR, 0, 0), `mknod ${p}`);
          count('whiteout');
          break;
        case 'fifo': case 'chr': case 'blk': case 'sock': {
          const type = { fifo: S_IFIFO, chr: S_IFCHR, blk: S_IFBLK, sock: S_IFSOCK }[kind];
          // 0/N is no whiteout; a large minor needs the new dev_t encoding.
          const [ma, mi] = kind === 'chr' || kind === 'blk' ? pick([[1, 3], [0, 7], [8, 1], [250, 70000], [4095, 255]]) : [0, 0];
          ok(sys.mknodat(-100, toBinary(p), type | pick([0o644, 0o600, 0o666]), ma, mi), `mknod ${p}`);
          owner(p);
          if (chance(0.1)) { lsetxattr(p, 'trusted.dev', Buffer.from('d')); count('xattr.trusted'); }
          setTimes(p, { atime: time(), mtime: time() });
          count(kind);
          break;
        }
        case 'link':
          fs.linkSync(pick(regular), p);
          count('hardlink');
          break;
      }
    }
  };

  for (const d of dirs) fillDir(d, 1);
  return { counts };
}

/**
 * Rewrites a kernel-format layer into OCI's: each 0/0 whiteout `x` becomes an empty `.wh.x`,
 * each trusted.overlay.opaque=y directory loses the xattr and gets a `.wh..wh..opq` file.
 * Directory times are put back, so only the markers differ.
 */
export function toOci(layer: string): { whiteouts: number; opaque: number } {
  const n = { whiteouts: 0, opaque: 0 };
  const walk = (dir: string): void => {
    const times = getTimes(dir);
    for (const name of fs.readdirSync(dir)) {
      const p = path.join(dir, name);
      const st = fs.lstatSync(p);
      if (st.isCharacterDevice() && st.rdev === 0) {
        fs.unlinkSync(p);
        fs.writeFileSync(path.join(dir, '.wh.' + name), '');
        n.whiteouts++;
      } else if (st.isDirectory()) {
        walk(p);
        const v = lgetxattr(p, 'trusted.overlay.opaque');
        if (v && v.toString() === 'y') {
          const t = getTimes(p);
          lremovexattr(p, 'trusted.overlay.opaque');
          fs.writeFileSync(path.join(p, '.wh..wh..opq'), '');
          setTimes(p, t);
          n.opaque++;
        }
      }
    }
    setTimes(dir, times);
  };
  walk(layer);
  return n;
}

/** Removes the 0/0 whiteout at `p` if there is one, keeping its directory's times. */
export function removeWhiteout(p: string): boolean {
  let st: fs.Stats;
  try { st = fs.lstatSync(p); } catch { return false; }
  if (!st.isCharacterDevice() || st.rdev !== 0) return false;
  const times = getTimes(path.dirname(p));
  fs.unlinkSync(p);
  setTimes(path.dirname(p), times);
  return true;
}

/** Makes a 0/0 character device whiteout at `p` (no child process: fast in loops). */
export function mkWhiteout(p: string): void {
  ok(sys.mknodat(-100, toBinary(p), S_IFCHR, 0, 0), `mknod ${p}`);
}
