// Random operations over the merged view. Operands are drawn from what the view shows now
// (the kernel's listing, asked before each step), from names that existed once (now whiteouts,
// most likely), and from fresh names, so that most operations succeed and the rest fail in
// the interesting ways (EEXIST, ENOTEMPTY, EXDEV, ENOTDIR, EISDIR ...).
import { BYTE_NAMES, NAMES, UIDS, USER, fileData, oldTime, oldTimeNs, symlinkTarget } from './layers';
import type { Rng } from './prng';
import type { Op } from './worker';

/** Names of layer trees and operands: with `bytes`, some that are no UTF-8 (BYTE_NAMES). */
export function namesFor(mode: FuzzMode): string[] {
  return mode.bytes ? BYTE_NAMES : NAMES;
}
/**
 * Names only operations bring: with `bytes`, 0x80 and 0x81 (one name each, though both are
 * U+FFFD to a UTF-8 decoder) and a valid two-byte UTF-8 name.
 */
function freshNames(mode: FuzzMode): string[] {
  return [...namesFor(mode), 'f', 'g', 'n1', 'n2', ...(mode.bytes ? ['\udc80', '\udc81', 'é'] : [])];
}
const XATTRS = ['user.k0', 'user.k1', 'user.k2', 'user.k0', 'user.k1', 'trusted.t'];
/**
 * Rarely: names in the overlay's own namespace, which the kernel (6.7+) escapes on disk
 * (trusted.overlay.X is stored as trusted.overlay.overlay.X): setting trusted.overlay.opaque=y
 * through the mount must not make a directory opaque. Not user.overlay.opaque: see README.
 */
const PRIVATE_XATTRS = ['trusted.overlay.opaque', 'trusted.overlay.origin', 'user.overlay.x'];
const MODES = [0o644, 0o600, 0o755, 0o700, 0o444, 0o000, 0o4755, 0o2755, 0o1777, 0o2775];
const OPEN_FLAGS = [['O_RDONLY'], ['O_RDWR'], ['O_WRONLY', 'O_APPEND'], ['O_RDWR', 'O_CREAT'], ['O_WRONLY', 'O_TRUNC'], ['O_RDONLY', 'O_NOFOLLOW']];

export const DEFAULT_WEIGHTS = {
  create: 9, write: 6, append: 4, otrunc: 3, excl: 3, truncate: 4,
  mkdir: 8, rmdir: 5, unlink: 7, rmrf: 3,
  rename: 14, symlink: 3, link: 4, mkfifo: 2, mknod: 1,
  chmod: 4, chown: 4, utime: 3, setxattr: 5, removexattr: 3,
  read: 5, lstat: 4, stat: 2, readdir: 4, readlink: 2, getxattr: 2, listxattr: 2, access: 1,
  fopen: 4, fwrite: 3, fread: 3, fstat: 2, ftruncate: 1, fclose: 2,
  /**
   * What only the kernel transport carries (see weightsFor): distinct atime/mtime and
   * UTIME_NOW/OMIT, renameat2 flags, listxattr as the unprivileged user (trusted.* names left
   * out). Known fuse-native limits, off there unless asked for (README).
   */
  utime2: 0, renameat2: 0, ulistxattr: 0,
};
export type OpKind = keyof typeof DEFAULT_WEIGHTS;

/** The operations a transport that carries `mode` is fuzzed with. */
export function weightsFor(mode: FuzzMode): Record<OpKind, number> {
  return mode.ns && mode.user ? { ...DEFAULT_WEIGHTS, utime2: 3, renameat2: 3, ulistxattr: 2 } : { ...DEFAULT_WEIGHTS };
}

/** Credentials (and umask) an operation runs with: worker.py switches to them for that one call. */
export interface Cred { uid: number; gid: number; groups: number[]; umask: number }

/**
 * What the transport under test can carry, and so what is generated and compared (run.ts picks
 * it from the transport): `ns` — times to the nanosecond, and utime with UTIME_NOW/UTIME_OMIT
 * and distinct atime and mtime; `user` — operations (a share per seed) run as an unprivileged
 * user, through an allow_other mount; `byPath` — the transport reaches files by path (libfuse
 * 2's high-level API, fuse-native), so no rename lands on the name of an open file (README);
 * `bytes` — names and link targets that are no UTF-8 (fuse-native refuses them by design);
 * `redirect` — both mounts with redirect_dir=on, so directories with lower content move.
 */
export interface FuzzMode { ns: boolean; user: boolean; byPath?: boolean; bytes?: boolean; redirect?: boolean }
/** fuse-native's. */
export const ROOT_SECONDS: FuzzMode = { ns: false, user: false, byPath: true };

/** A utimensat time: [sec, nsec], or UTIME_NOW / UTIME_OMIT. */
export type TimeArg = [number, number] | 'now' | 'omit';

export interface View {
  /** Every path the merged view shows now, with its type ('' is the root). */
  paths: Map<string, string>;
  /** Handles currently open in both workers. */
  handles: number[];
}

const parentOf = (p: string): string => (p.includes('/') ? p.slice(0, p.lastIndexOf('/')) : '');
const join = (d: string, n: string): string => (d === '' ? n : `${d}/${n}`);

export class OpGen {
  /** Every path ever seen: those gone now are where whiteouts are. */
  private readonly ever = new Set<string>();
  private nextHandle = 1;
  /** The path each handle was opened by (following renames of that path, roughly). */
  private readonly handlePaths = new Map<number, string>();
  /** The share of operations run as the user, and its credentials (drawn once per seed). */
  private readonly userShare: number = 0;
  private readonly cred: Cred | undefined;
  private readonly names: string[];
  private readonly freshPool: string[];

  constructor(private readonly rng: Rng, private readonly weights: Record<OpKind, number> = DEFAULT_WEIGHTS, private readonly mode: FuzzMode = ROOT_SECONDS) {
    this.names = namesFor(mode);
    this.freshPool = freshNames(mode);
    if (mode.user) {
      // Most seeds mix root and the user (the user's objects, then root's changes to them, and
      // the other way round); many act as the user throughout; a few as root only.
      this.userShare = rng.pick([1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0]);
      // Sometimes a member of nobody's group as well: chgrp to it then succeeds.
      this.cred = { uid: USER.uid, gid: USER.gid, groups: rng.chance(0.3) ? [USER.gid, 65534] : [USER.gid], umask: rng.pick([0o022, 0o022, 0o002, 0o077, 0]) };
    }
  }

  private of(view: View, ...types: string[]): string[] {
    const out: string[] = [];
    for (const [p, t] of view.paths) if (types.includes(t)) out.push(p);
    return out;
  }

  private existing(view: View, ...types: string[]): string {
    const list = types.length ? this.of(view, ...types) : [...view.paths.keys()];
    if (list.length === 0 || this.rng.chance(0.08)) return this.fresh(view);
    return this.rng.pick(list);
  }

  private fresh(view: View): string {
    const gone = [...this.ever].filter((p) => !view.paths.has(p));
    if (gone.length && this.rng.chance(0.35)) return this.rng.pick(gone);
    const dirs = ['', ...this.of(view, 'dir')];
    // Now and then under a non-directory or a missing directory: ENOTDIR, ENOENT.
    const parent = this.rng.chance(0.05) ? this.existing(view, 'file', 'symlink') : this.rng.pick(dirs);
    return join(parent, this.rng.pick(this.freshPool));
  }

  private target(view: View): string {
    return this.rng.chance(0.6) ? this.existing(view) : this.fresh(view);
  }

  private data(): string {
    return this.rng.chance(0.85) ? this.rng.text(this.rng.range(1, 30)) : fileData(this.rng);
  }

  private xattrName(): string {
    return this.rng.chance(0.04) ? this.rng.pick(PRIVATE_XATTRS) : this.rng.pick(XATTRS);
  }

  /** Relative to the link's own directory, as a user would write it. */
  private linkTarget(view: View, at: string): string {
    if (this.rng.chance(0.5)) return symlinkTarget(this.rng, this.names);
    const to = this.existing(view);
    const from = parentOf(at).split('/').filter(Boolean);
    return [...from.map(() => '..'), to].join('/') || '.';
  }

  next(view: View): Op {
    const op = this.pick(view);
    if (op.as !== undefined || op.op === 'listxattr' || !this.cred) return op;
    if (this.userShare > 0 && (this.userShare >= 1 || this.rng.chance(this.userShare))) op.as = this.cred;
    return op;
  }

  /** An explicit time (nanoseconds non-zero), or now or omit. */
  private timeArg(): TimeArg {
    const how = this.rng.weighted({ set: 6, now: 2, omit: 2 });
    if (how === 'set') { const t = oldTimeNs(this.rng); return [t.sec, t.nsec]; }
    return how;
  }

  private pick(view: View): Op {
    for (const p of view.paths.keys()) this.ever.add(p);
    const r = this.rng;
    let kind = r.weighted(this.weights);
    // libfuse 2 reaches an open file by its path; once an unlinked open file's directory is
    // removed there is none, and fuse-native cannot take nullpath_ok: reads and writes through
    // it fail with ENOENT (see README). Directories are removed only with no file open.
    if (view.handles.length && (kind === 'rmdir' || kind === 'rmrf')) kind = 'fclose';
    switch (kind) {
      case 'create':
        return { op: 'openw', p: this.target(view), flags: ['O_WRONLY', 'O_CREAT', ...(r.chance(0.5) ? ['O_TRUNC'] : [])], mode: r.pick(MODES), data: this.data() };
      case 'excl':
        return { op: 'openw', p: this.target(view), flags: ['O_WRONLY', 'O_CREAT', 'O_EXCL'], mode: r.pick(MODES), data: this.data() };
      case 'write':
        return { op: 'openw', p: this.existing(view, 'file'), flags: ['O_WRONLY'], data: this.data(), off: r.int(50) };
      case 'append':
        return { op: 'openw', p: this.existing(view, 'file', 'symlink'), flags: ['O_WRONLY', 'O_APPEND'], data: this.data() };
      case 'otrunc':
        return { op: 'openw', p: this.existing(view, 'file'), flags: ['O_WRONLY', 'O_TRUNC'], data: r.chance(0.5) ? this.data() : '' };
      case 'truncate':
        return { op: 'truncate', p: this.existing(view, 'file'), size: r.pick([0, r.int(40), r.int(40), 150_000]) };
      case 'mkdir':
        return { op: 'mkdir', p: this.target(view), mode: r.pick([0o755, 0o755, 0o700, 0o1777, 0o2755]) };
      case 'rmdir':
        return { op: 'rmdir', p: this.existing(view, 'dir') };
      case 'unlink':
        return { op: 'unlink', p: this.existing(view) };
      case 'rmrf':
        return { op: 'rmrf', p: this.existing(view, 'dir') };
      case 'rename': {
        const from = this.existing(view);
        const type = view.paths.get(from) ?? 'file';
        const how = r.weighted({ fresh: 40, same: 25, gone: 15, any: 12, inside: 4, parent: 4 });
        let to: string;
        if (how === 'same') to = this.existing(view, type);
        else if (how === 'any') to = this.existing(view);
        else if (how === 'inside') to = join(from, r.pick(this.freshPool));
        else if (how === 'parent') to = parentOf(from) || this.existing(view, 'dir');
        else if (how === 'gone') { const gone = [...this.ever].filter((p) => !view.paths.has(p)); to = gone.length ? r.pick(gone) : this.fresh(view); }
        else to = this.fresh(view);
        if (view.handles.length && view.paths.get(to) === 'dir') return { op: 'fclose', h: r.pick(view.handles) };
        // libfuse 2 renames an open target out of the way (.fuse_hidden*) first, which makes
        // a rename between two hard links of one file, a no-op for the kernel, a real one.
        const openAt = view.handles.filter((h) => this.handlePaths.get(h) === to);
        if (this.mode.byPath && openAt.length) return { op: 'fclose', h: r.pick(openAt) };
        for (const [h, p] of this.handlePaths) if (p === from) this.handlePaths.set(h, to);
        return { op: 'rename', p: from, q: to };
      }
      case 'renameat2':
        return { op: 'renameat2', p: this.existing(view), q: this.target(view), flags: r.pick([1, 2]) };
      case 'symlink': {
        const at = this.target(view);
        return { op: 'symlink', t: this.linkTarget(view, at), p: at };
      }
      case 'link':
        return { op: 'link', p: this.existing(view, 'file', 'symlink', 'fifo'), q: this.target(view) };
      case 'mkfifo':
        return { op: 'mkfifo', p: this.target(view), mode: r.pick([0o644, 0o600]) };
      case 'mknod':
        return r.chance(0.5)
          ? { op: 'mknod', p: this.target(view), mode: 0o644, major: 0, minor: 0 } // a whiteout's device number
          : { op: 'mknod', p: this.target(view), mode: 0o600, major: 1, minor: 3 };
      case 'chmod':
        return { op: 'chmod', p: this.existing(view), mode: r.pick(MODES) };
      case 'chown':
        return { op: 'chown', p: this.existing(view), uid: r.pick([...UIDS, -1]), gid: r.pick([...UIDS, -1]), follow: r.chance(0.5) };
      case 'utime': {
        if (r.chance(0.3)) return { op: 'utime', p: this.existing(view), follow: r.chance(0.5) };
        if (this.mode.ns) {
          // utimensat(2) in full: ns times, UTIME_NOW and UTIME_OMIT per time, atime apart from mtime.
          const at = this.timeArg();
          return { op: 'utime', p: this.existing(view), at, mt: r.chance(0.3) ? at : this.timeArg(), follow: r.chance(0.5) };
        }
        // Equal whole-second times: fuse-native passes atime for both and mangles UTIME_NOW and
        // UTIME_OMIT (see README), so only then can mtime match.
        const t = oldTime(r);
        return { op: 'utime', p: this.existing(view), at: t, mt: t, follow: r.chance(0.5) };
      }
      case 'utime2':
        return { op: 'utime', p: this.existing(view), at: oldTime(r), mt: oldTime(r) };
      case 'setxattr': {
        const name = this.xattrName();
        const value = PRIVATE_XATTRS.includes(name) && r.chance(0.5) ? 'y' : r.text(r.range(0, 10));
        return { op: 'setxattr', p: this.existing(view), name, value, flags: r.pick([0, 0, 1, 2]), follow: r.chance(0.3) };
      }
      case 'removexattr':
        return { op: 'removexattr', p: this.existing(view), name: this.xattrName() };
      case 'getxattr':
        return { op: 'getxattr', p: this.existing(view), name: this.xattrName() };
      case 'listxattr':
        return { op: 'listxattr', p: this.existing(view) };
      case 'ulistxattr':
        return this.cred ? { op: 'listxattr', p: this.existing(view), as: this.cred } : { op: 'listxattr', p: this.existing(view) };
      case 'read':
        return { op: 'read', p: this.existing(view, 'file', 'symlink', 'dir'), follow: r.chance(0.5) };
      case 'lstat':
        return { op: 'lstat', p: this.target(view) };
      case 'stat':
        return { op: 'stat', p: this.existing(view, 'symlink', 'file', 'dir') };
      case 'readdir':
        return { op: 'readdir', p: r.chance(0.2) ? '' : this.existing(view, 'dir') };
      case 'readlink':
        return { op: 'readlink', p: this.existing(view, 'symlink') };
      case 'access':
        return { op: 'access', p: this.existing(view), mode: r.pick([0, 2, 4]) };
      case 'fopen':
        if (view.handles.length >= 4) return { op: 'fclose', h: r.pick(view.handles) };
        {
          const p = this.existing(view, 'file', 'symlink');
          this.handlePaths.set(this.nextHandle, p);
          return { op: 'fopen', p, flags: r.pick(OPEN_FLAGS), mode: 0o644, h: this.nextHandle++ };
        }
      case 'fwrite':
      case 'fread':
      case 'fstat':
      case 'ftruncate':
      case 'fclose': {
        if (view.handles.length === 0) return { op: 'lstat', p: this.existing(view) };
        const h = r.pick(view.handles);
        if (kind === 'fwrite') return { op: 'fwrite', h, data: this.data(), off: r.chance(0.5) ? r.int(40) : undefined };
        if (kind === 'ftruncate') return { op: 'ftruncate', h, size: r.int(30) };
        return { op: kind, h };
      }
    }
  }
}

/** Keeps the generator's idea of open handles in step with what the workers did. */
export function trackHandles(view: View, op: Op, ok: boolean): void {
  if (op.op === 'fopen' && ok) view.handles.push(op.h as number);
  if (op.op === 'fclose') view.handles = view.handles.filter((h) => h !== op.h);
}
