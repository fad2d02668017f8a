// `-o` strings as mount(8), fstab and the kernel's overlay take them: comma-separated, `\,` and
// `\:` escape separators inside paths (as for the kernel), relative paths resolve against the
// caller's working directory (as the kernel resolves them), and mount(8)'s own options pass
// through: the VFS flags (ro, nosuid, nodev, noexec, sync, dirsync, noatime) apply to the FUSE
// mount, fstab's bookkeeping (defaults, noauto, nofail, user, _netdev, x-*, comment=) is ignored.
// Anything else unknown is an error, as the kernel makes it one.
import path from 'node:path';
import type { OverlayConfig } from '../core/config';
import type { FuseMountOptions } from '../fuse/adapter';
import { isLogLevel, type LogLevel } from '../log/logger';
import { fusermountUnusable } from '../fuse-kernel/fusermount';
import { compatOption, type CompatEffects } from './compat-options';
import { idMapOption } from './idmap-options';
import type { IdMapping } from '../core/idmap';
import { UUID_MODES, type UuidMode } from '../core/origin';
import type { RedirectMode } from '../core/redirect';

export class UsageError extends Error {}

export const MAX_LOWER_LAYERS = 500; // the kernel's OVL_MAX_STACK
export const MAX_SPIN_US = 10000;

export const TRANSPORTS = ['fuse-native', 'kernel'] as const;
export type TransportName = (typeof TRANSPORTS)[number];

/**
 * Without -o transport=: env OVERLAYD_TRANSPORT (how the test suite runs once per transport),
 * else kernel: with mount(2) for root, through fusermount3 for a user, if it and /dev/fuse are
 * usable (else fuse-native, whose libfuse 2 has its own fusermount).
 */
export function defaultTransport(env: NodeJS.ProcessEnv = process.env): TransportName {
  const t = env.OVERLAYD_TRANSPORT;
  if (t !== undefined && t !== '') {
    if (!(TRANSPORTS as readonly string[]).includes(t)) throw new UsageError(`OVERLAYD_TRANSPORT="${t}" is not a transport (known: ${TRANSPORTS.join(', ')})`);
    return t as TransportName;
  }
  return kernelUnusable() === undefined ? 'kernel' : 'fuse-native';
}

/** Why the kernel transport cannot mount for this process (a user without fusermount3), or undefined. */
export function kernelUnusable(): string | undefined {
  if (process.getuid?.() === 0) return undefined;
  return fusermountUnusable();
}

export interface DaemonOptions {
  /** log_level= in -o (fstab's way to say --log-level). */
  logLevel?: LogLevel;
  /** log_file= in -o, absolute. */
  logFile?: string;
}

export interface MountOptions {
  overlay: OverlayConfig;
  fuse: FuseMountOptions;
  /** How overlayd speaks FUSE: through libfuse 2 (fuse-native), or on /dev/fuse itself (kernel). */
  transport: TransportName;
  daemon: DaemonOptions;
  /** Options left out because of sloppy parsing (mount -s). */
  ignored: string[];
  /** Why the default transport is not the kernel one here (logged at info), if so. */
  transportNote?: string;
  /** allow_other / noallow_other was said; else the mounter's privileges decide (privilege.ts). */
  allowOtherGiven: boolean;
  /** What engine options changed or dropped, for the daemon's log at info. */
  notes: string[];
}

export interface ParseContext {
  /** Resolves relative layer paths; the caller's working directory. */
  cwd?: string;
  /** mount(8)'s SOURCE (the fsname shown in mountinfo) unless fsname= says otherwise. */
  source?: string;
  /** mount -s: ignore unknown options instead of failing. */
  sloppy?: boolean;
}

/** Splits on `sep` where it is not escaped by a backslash; keeps escapes for the next split. */
export function splitEscaped(s: string, sep: string): string[] {
  const out: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && i + 1 < s.length) { cur += c + s[i + 1]; i++; continue; }
    if (c === sep) { out.push(cur); cur = ''; continue; }
    cur += c;
  }
  out.push(cur);
  return out;
}

/**
 * Splits an -o string into items: on commas not escaped by a backslash and not inside double
 * quotes, as mount(8) and libmount read SELinux's `context="user:role:type:s0:c1,c2"`.
 */
export function splitOptionItems(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && i + 1 < s.length) { cur += c + s[i + 1]; i++; continue; }
    if (c === '"') quoted = !quoted;
    if (c === ',' && !quoted) { out.push(cur); cur = ''; continue; }
    cur += c;
  }
  if (quoted) throw new UsageError(`unbalanced double quote in -o "${s}"`);
  out.push(cur);
  return out;
}

export function unescape(s: string): string {
  return s.replace(/\\(.)/g, '$1');
}

/** The inverse of unescape for one layer path inside an option string. */
export function escapePath(p: string): string {
  return p.replace(/\\/g, '\\\\').replace(/:/g, '\\:').replace(/,/g, '\\,');
}

/** fstab and mount(8) bookkeeping, and VFS flags FUSE has no use for: accepted, no effect. */
const IGNORED_FLAGS = new Set([
  'defaults', 'auto', 'noauto', 'nofail', 'user', 'nouser', 'users', 'owner', 'group', '_netdev',
  'relatime', 'norelatime', 'strictatime', 'nostrictatime', 'lazytime', 'nolazytime',
  'diratime', 'nodiratime', 'loud', 'silent', 'symfollow', 'iversion', 'noiversion', 'mand', 'nomand',
]);

/** VFS flags libfuse applies to the mount: name -> [flag, set]. */
const VFS_FLAGS: Record<string, [string, boolean]> = {
  ro: ['ro', true], rw: ['ro', false],
  nosuid: ['nosuid', true], suid: ['nosuid', false],
  nodev: ['nodev', true], dev: ['nodev', false],
  noexec: ['noexec', true], exec: ['noexec', false],
  sync: ['sync', true], async: ['sync', false],
  noatime: ['noatime', true], atime: ['noatime', false],
  dirsync: ['dirsync', true],
};

/** redirect_dir= as the kernel takes it (see core/redirect.ts). */
const REDIRECT_VALUES = ['on', 'follow', 'nofollow', 'off'];

/** Kernel overlay features overlayd implements in their default form only. */
const KERNEL_VALUES: Record<string, string[]> = {
  index: ['off'], metacopy: ['off'], nfs_export: ['off'],
  xino: ['off', 'auto'], verity: ['off'],
};

function timeout(key: string, v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || n < 0) throw new UsageError(`option ${key} needs a number of seconds, not "${v}"`);
  return n;
}

function onlyOnce(seen: Set<string>, key: string): void {
  if (seen.has(key)) throw new UsageError(`option ${key} given more than once`);
  seen.add(key);
}

function layerPath(raw: string, what: string, cwd: string): string {
  const p = unescape(raw);
  if (p === '') throw new UsageError(`${what}: empty path`);
  if (p.includes('\0')) throw new UsageError(`${what}: path contains a NUL byte`);
  return path.resolve(cwd, p);
}

/** Parses every -o string given (mount passes one; a user may pass several). */
export function parseMountOptions(optionStrings: string[], ctx: ParseContext | string = {}): MountOptions {
  const c: ParseContext = typeof ctx === 'string' ? { cwd: ctx } : ctx;
  const cwd = c.cwd ?? process.cwd();
  const seen = new Set<string>();
  const ignored: string[] = [];
  const daemon: DaemonOptions = {};
  let lowerdirs: string[] | undefined;
  let transport: TransportName = defaultTransport();
  let transportGiven = process.env.OVERLAYD_TRANSPORT !== undefined && process.env.OVERLAYD_TRANSPORT !== '';
  let upperdir: string | undefined;
  let workdir: string | undefined;
  let userxattr = false;
  let volatile = false;
  let uuid: UuidMode | undefined;
  let redirectDir: RedirectMode | undefined;
  let fsname: string | undefined;
  const idmap: IdMapping = { uids: [], gids: [] };
  // The kernel's overlay defaults: suid and dev allowed (libfuse's own default is nosuid,nodev).
  const vfs: Record<string, boolean> = { ro: false, nosuid: false, nodev: false, noexec: false, sync: false, noatime: false, dirsync: false };
  const compat: CompatEffects = { notes: [] };
  let allowOtherGiven = false;
  const fuse: FuseMountOptions = {
    allowOther: false, allowRoot: false, defaultPermissions: true,
    fsname: 'overlayd', extra: [],
  };
  for (const str of optionStrings) {
    for (const item of splitOptionItems(str)) {
      // Empty items (podman passes `workdir=W,,volatile`) mean nothing, as for the kernel's overlay.
      if (item === '') continue;
      const eq = item.indexOf('=');
      const key = eq < 0 ? item : item.slice(0, eq);
      const val = eq < 0 ? undefined : item.slice(eq + 1);
      const needValue = (): string => {
        if (val === undefined) throw new UsageError(`option ${key} needs a value (${key}=...)`);
        return val;
      };
      const noValue = (): void => {
        if (val !== undefined) throw new UsageError(`option ${key} takes no value`);
      };
      if (idMapOption(idmap, key, val)) continue;
      if (key.startsWith('x-') || key === 'comment') continue; // fstab annotations for other tools (systemd, ...)
      if (key === 'user' && val !== undefined) continue; // mount(8) tells helpers who mounts: user=NAME
      switch (key) {
        case 'lowerdir': {
          onlyOnce(seen, key);
          const v = needValue();
          if (v === '') throw new UsageError('lowerdir: no layer given');
          const parts = splitEscaped(v, ':');
          const empty = parts.findIndex((p) => p === '');
          if (empty > 0 && empty < parts.length - 1) throw new UsageError('lowerdir: empty layer ("::"; data-only lower layers are not supported)');
          if (empty >= 0) throw new UsageError('lowerdir: empty layer (a stray ":" at the start or end)');
          if (parts.length > MAX_LOWER_LAYERS) throw new UsageError(`lowerdir: ${parts.length} layers, at most ${MAX_LOWER_LAYERS}`);
          lowerdirs = parts.map((p) => layerPath(p, 'lowerdir', cwd));
          break;
        }
        case 'upperdir': onlyOnce(seen, key); upperdir = layerPath(needValue(), 'upperdir', cwd); break;
        case 'workdir': onlyOnce(seen, key); workdir = layerPath(needValue(), 'workdir', cwd); break;
        case 'userxattr': noValue(); userxattr = true; break;
        case 'redirect_dir': {
          const v = needValue();
          if (!REDIRECT_VALUES.includes(v)) throw new UsageError(`redirect_dir "${v}" is not a mode (${REDIRECT_VALUES.join(', ')})`);
          // off: redirects are not made but followed, as the kernel's default redirect_always_follow=Y has it.
          redirectDir = v === 'off' ? 'follow' : (v as RedirectMode);
          break;
        }
        case 'volatile': noValue(); volatile = true; break;
        case 'allow_other': noValue(); fuse.allowOther = true; allowOtherGiven = true; break;
        // Restricts a root mount to the mounter, as FUSE mounts are without allow_other.
        case 'noallow_other': noValue(); fuse.allowOther = false; allowOtherGiven = true; break;
        case 'allow_root': noValue(); fuse.allowRoot = true; break;
        case 'default_permissions': noValue(); fuse.defaultPermissions = true; break;
        case 'no_default_permissions': noValue(); fuse.defaultPermissions = false; break;
        case 'entry_timeout': fuse.entryTimeout = timeout(key, needValue()); break;
        case 'attr_timeout': fuse.attrTimeout = timeout(key, needValue()); break;
        case 'negative_timeout': fuse.negativeTimeout = timeout(key, needValue()); break;
        case 'fsname':
          fsname = needValue();
          if (fsname === '') throw new UsageError('option fsname needs a value');
          break;
        case 'passthrough': {
          onlyOnce(seen, key);
          const v = needValue();
          if (v !== 'off' && v !== 'upper' && v !== 'all') throw new UsageError(`passthrough "${v}" is not a mode (off, upper, all)`);
          fuse.passthrough = v;
          break;
        }
        case 'spin': {
          onlyOnce(seen, key);
          const v = needValue();
          if (!/^\d{1,5}$/.test(v) || Number(v) > MAX_SPIN_US) throw new UsageError(`spin "${v}" is not a number of microseconds (0 to ${MAX_SPIN_US})`);
          fuse.spin = Number(v);
          break;
        }
        case 'uring': {
          onlyOnce(seen, key);
          const v = needValue();
          if (v !== 'on' && v !== 'off') throw new UsageError(`uring "${v}" is not on or off`);
          fuse.uring = v;
          break;
        }
        case 'transport': {
          const v = needValue();
          if (!(TRANSPORTS as readonly string[]).includes(v)) throw new UsageError(`transport "${v}" is not available (known: ${TRANSPORTS.join(', ')})`);
          transport = v as TransportName;
          transportGiven = true;
          break;
        }
        case 'log_level': {
          const v = needValue();
          if (!isLogLevel(v)) throw new UsageError(`log_level "${v}" is not a level (fatal, error, warn, info, debug, trace, silent)`);
          daemon.logLevel = v;
          break;
        }
        case 'uuid': {
          onlyOnce(seen, key);
          const v = needValue();
          if (!(UUID_MODES as readonly string[]).includes(v)) throw new UsageError(`uuid "${v}" is not a mode (${UUID_MODES.join(', ')})`);
          uuid = v as UuidMode;
          break;
        }
        case 'log_file': daemon.logFile = layerPath(needValue(), 'log_file', cwd); break;
        case 'nosymfollow':
          throw new UsageError('option nosymfollow is not supported by overlayd');
        default: {
          if (val === undefined && key in VFS_FLAGS) { const [f, on] = VFS_FLAGS[key]; vfs[f] = on; break; }
          if (val === undefined && IGNORED_FLAGS.has(key)) break;
          if (key in KERNEL_VALUES) {
            if (KERNEL_VALUES[key].includes(needValue())) break;
            throw new UsageError(`option ${key}=${val} is not supported by overlayd (only ${KERNEL_VALUES[key].join(', ')})`);
          }
          if (compatOption(key, val, compat)) break;
          if (c.sloppy) { ignored.push(item); break; }
          throw new UsageError(`unknown mount option "${item}"`);
        }
      }
    }
  }
  if (!lowerdirs) throw new UsageError('missing lowerdir= option');
  // The kernel's rule (ovl_fs_params_verify): redirects in user.* xattrs, which a layer's owner
  // may write, are never followed; asking for them beside userxattr is a conflict.
  if (userxattr && redirectDir !== undefined && redirectDir !== 'nofollow') throw new UsageError(`conflicting options: userxattr,redirect_dir=${redirectDir}`);
  if (compat.volatile) volatile = true;
  if (compat.writeback !== undefined) fuse.writeback = compat.writeback;
  if (compat.timeout !== undefined) {
    fuse.entryTimeout ??= compat.timeout;
    fuse.attrTimeout ??= compat.timeout;
  }
  if (upperdir !== undefined && workdir === undefined) throw new UsageError('upperdir needs workdir');
  if (workdir !== undefined && upperdir === undefined) throw new UsageError('workdir needs upperdir');
  if (upperdir === undefined && lowerdirs.length < 2) {
    throw new UsageError('at least 2 lowerdirs are needed without upperdir (as for the kernel\'s overlay)');
  }
  if (upperdir === undefined) volatile = false; // the kernel ignores it in a non-upper mount too
  fuse.fsname = fsname ?? (c.source !== undefined && c.source !== '' ? c.source : 'overlayd');
  // libfuse 2 refuses non-empty mountpoints unless told; the kernel's overlay mounts on them.
  fuse.extra = ['nonempty'];
  // A mount without upper layer is read-only, as the kernel makes its superblock.
  if (vfs.ro || upperdir === undefined) fuse.extra.push('ro');
  fuse.extra.push(vfs.nosuid ? 'nosuid' : 'suid', vfs.nodev ? 'nodev' : 'dev');
  if (vfs.noexec) fuse.extra.push('noexec');
  if (vfs.sync) fuse.extra.push('sync');
  if (vfs.noatime) fuse.extra.push('noatime');
  if (vfs.dirsync) fuse.extra.push('dirsync');
  const unusable = transportGiven || transport !== 'fuse-native' ? undefined : kernelUnusable();
  return {
    overlay: { lowerdirs, upperdir, workdir, userxattr, volatile, readonly: vfs.ro, idmap, uuid, redirectDir },
    fuse, transport, daemon, ignored, allowOtherGiven, notes: compat.notes,
    transportNote: unusable === undefined ? undefined : `using the fuse-native transport: the kernel transport needs fusermount3 for a mount by a user, and ${unusable}`,
  };
}
