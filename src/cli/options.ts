// `-o` strings as mount(8) and the kernel's overlay take them: comma-separated, `\,` and `\:`
// escape separators inside paths, and mount(8)'s own options pass through unharmed.
import path from 'node:path';
import type { OverlayConfig } from '../core/config';
import type { FuseMountOptions } from '../fuse/adapter';

export class UsageError extends Error {}

export const MAX_LOWER_LAYERS = 500; // the kernel's OVL_MAX_STACK

export interface MountOptions {
  overlay: OverlayConfig;
  fuse: FuseMountOptions;
  transport: 'fuse-native';
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

export function unescape(s: string): string {
  return s.replace(/\\(.)/g, '$1');
}

/** Options mount(8), fstab and the kernel's generic mount code use; none changes overlayd. */
const MOUNT_ONLY = new Set([
  'rw', 'defaults', 'auto', 'noauto', 'nofail', 'user', 'nouser', 'users', 'owner', 'group', '_netdev',
  'suid', 'nosuid', 'dev', 'nodev', 'exec', 'noexec', 'async', 'sync', 'dirsync',
  'atime', 'noatime', 'relatime', 'norelatime', 'strictatime', 'nostrictatime', 'lazytime', 'nolazytime',
  'diratime', 'nodiratime', 'loud', 'silent', 'nosymfollow', 'symfollow',
]);

/** Kernel overlay features overlayd implements in their default ("off") form only. */
const KERNEL_OFF_ONLY = new Set(['redirect_dir', 'index', 'metacopy', 'nfs_export', 'xino', 'uuid', 'verity']);
const KERNEL_OFF_VALUES: Record<string, string[]> = {
  redirect_dir: ['off', 'nofollow'], index: ['off'], metacopy: ['off'], nfs_export: ['off'],
  xino: ['off', 'auto'], uuid: ['off', 'null', 'auto', 'on'], verity: ['off'],
};

function timeout(key: string, v: string): number {
  const n = Number(v);
  if (v === '' || !Number.isFinite(n) || n < 0) throw new UsageError(`option ${key} needs a number of seconds, not "${v}"`);
  return n;
}

function onlyOnce(seen: Set<string>, key: string): void {
  if (seen.has(key)) throw new UsageError(`option ${key} given more than once`);
  seen.add(key);
}

function layerPath(raw: string, what: string, cwd: string): string {
  const p = unescape(raw);
  if (p === '') throw new UsageError(`${what}: empty path`);
  return path.resolve(cwd, p);
}

/** Parses every -o string given (mount passes one; a user may pass several). */
export function parseMountOptions(optionStrings: string[], cwd = process.cwd()): MountOptions {
  const seen = new Set<string>();
  let lowerdirs: string[] | undefined;
  let upperdir: string | undefined;
  let workdir: string | undefined;
  let userxattr = false;
  let volatile = false;
  let readonly = false;
  const fuse: FuseMountOptions = {
    allowOther: false, allowRoot: false, defaultPermissions: true,
    entryTimeout: 1, attrTimeout: 1, negativeTimeout: 0, fsname: 'overlayd', extra: [],
  };
  for (const str of optionStrings) {
    if (str === '') throw new UsageError('empty -o option string');
    for (const item of splitEscaped(str, ',')) {
      if (item === '') throw new UsageError(`stray comma in -o "${str}"`);
      const eq = item.indexOf('=');
      const key = eq < 0 ? item : item.slice(0, eq);
      const val = eq < 0 ? undefined : item.slice(eq + 1);
      const needValue = (): string => {
        if (val === undefined) throw new UsageError(`option ${key} needs a value`);
        return val;
      };
      const noValue = (): void => {
        if (val !== undefined) throw new UsageError(`option ${key} takes no value`);
      };
      if (key.startsWith('x-') || key === 'comment') continue; // fstab annotations for other tools
      switch (key) {
        case 'lowerdir': {
          onlyOnce(seen, key);
          const parts = splitEscaped(needValue(), ':');
          if (parts.some((p) => p === '')) throw new UsageError('lowerdir: empty layer (check for "::" or a stray ":")');
          if (parts.length > MAX_LOWER_LAYERS) throw new UsageError(`lowerdir: ${parts.length} layers, at most ${MAX_LOWER_LAYERS}`);
          lowerdirs = parts.map((p) => layerPath(p, 'lowerdir', cwd));
          break;
        }
        case 'upperdir': onlyOnce(seen, key); upperdir = layerPath(needValue(), 'upperdir', cwd); break;
        case 'workdir': onlyOnce(seen, key); workdir = layerPath(needValue(), 'workdir', cwd); break;
        case 'userxattr': noValue(); userxattr = true; break;
        case 'volatile': noValue(); volatile = true; break;
        case 'ro': noValue(); readonly = true; break;
        case 'allow_other': noValue(); fuse.allowOther = true; break;
        case 'allow_root': noValue(); fuse.allowRoot = true; break;
        case 'default_permissions': noValue(); fuse.defaultPermissions = true; break;
        case 'no_default_permissions': noValue(); fuse.defaultPermissions = false; break;
        case 'entry_timeout': fuse.entryTimeout = timeout(key, needValue()); break;
        case 'attr_timeout': fuse.attrTimeout = timeout(key, needValue()); break;
        case 'negative_timeout': fuse.negativeTimeout = timeout(key, needValue()); break;
        case 'fsname': fuse.fsname = needValue(); break;
        case 'transport':
          if (needValue() !== 'fuse-native') throw new UsageError(`transport "${val}" is not available (known: fuse-native)`);
          break;
        default:
          if (MOUNT_ONLY.has(key) && val === undefined) break;
          if (KERNEL_OFF_ONLY.has(key)) {
            if (KERNEL_OFF_VALUES[key].includes(needValue())) break;
            throw new UsageError(`option ${key}=${val} is not supported by overlayd (only ${KERNEL_OFF_VALUES[key].join(', ')})`);
          }
          throw new UsageError(`unknown mount option "${item}"`);
      }
    }
  }
  if (!lowerdirs) throw new UsageError('missing lowerdir= option');
  if (upperdir !== undefined && workdir === undefined) throw new UsageError('upperdir needs workdir');
  if (workdir !== undefined && upperdir === undefined) throw new UsageError('workdir needs upperdir');
  return { overlay: { lowerdirs, upperdir, workdir, userxattr, volatile, readonly }, fuse, transport: 'fuse-native' };
}
