// The options container engines pass to a FUSE overlay "mount program": fuse-overlayfs's own
// (containers/storage, moby's fuse-overlayfs driver, containerd's snapshotter) and the mount
// propagation words podman appends for `:O` volumes. Each is accepted with the meaning it has in
// fuse-overlayfs where overlayd has that meaning; where overlayd's behaviour already is the
// kernel's (exact link counts, ownership stored in the inode), the option is accepted and the
// difference is logged once at info, so an engine's mount works and a reader of the log knows.
// Options whose meaning overlayd lacks and cannot ignore safely stay errors.
import { UsageError } from './options';

/** What the compatibility options change; the caller applies it to its own option state. */
export interface CompatEffects {
  volatile?: boolean;
  writeback?: boolean;
  timeout?: number;
  /** Lines for the daemon's log, at info. */
  notes: string[];
}

const PROPAGATION = new Set(['private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave', 'unbindable', 'runbindable']);

function flag01(key: string, val: string | undefined): boolean {
  if (val === '1' || val === undefined) return true;
  if (val === '0') return false;
  throw new UsageError(`option ${key} takes 0 or 1, not "${val}"`);
}

/**
 * Handles one option item if it is an engine's; returns false for one it does not know.
 * `val` is undefined for an item without `=`.
 */
export function compatOption(key: string, val: string | undefined, fx: CompatEffects): boolean {
  if (val === undefined && PROPAGATION.has(key)) return true; // propagation is the caller's mount's business
  switch (key) {
    case 'fsync':
      // fuse-overlayfs's fsync=0 skips every fsync: the kernel's `volatile`.
      if (!flag01(key, val)) fx.volatile = true;
      return true;
    case 'writeback':
      fx.writeback = flag01(key, val);
      return true;
    case 'timeout': {
      const n = Number(val);
      if (val === undefined || val.trim() === '' || !Number.isFinite(n) || n < 0) throw new UsageError(`option timeout needs a number of seconds, not "${val ?? ''}"`);
      fx.timeout = n;
      return true;
    }
    case 'threaded':
    case 'fast_ino':
      // Serving model and inode-number shortcut of fuse-overlayfs: overlayd's inode numbers are
      // the kernel overlay's and its request loop is its own, so there is nothing to choose.
      flag01(key, val);
      return true;
    case 'static_nlink':
      if (val !== undefined) throw new UsageError('option static_nlink takes no value');
      fx.notes.push('static_nlink: overlayd reports exact link counts, as kernel overlayfs does');
      return true;
    case 'noacl':
      if (val !== undefined) throw new UsageError('option noacl takes no value');
      fx.notes.push('noacl: ACL xattrs pass through to the layers as other xattrs do');
      return true;
    case 'noxattrs':
      if (flag01(key, val)) throw new UsageError('option noxattrs=1 is not supported by overlayd (xattrs are part of the overlay format)');
      return true;
    case 'xattr_permissions': {
      if (val !== '0' && val !== '1' && val !== '2') throw new UsageError(`option xattr_permissions takes 0, 1 or 2, not "${val ?? ''}"`);
      if (val !== '0') fx.notes.push(`xattr_permissions=${val}: overlayd keeps ownership and modes in the inodes, as kernel overlayfs does`);
      return true;
    }
    case 'plugins':
      if (val === undefined || val === '') return true;
      throw new UsageError(`option plugins=${val}: overlayd has no plugins`);
    case 'context':
    case 'fscontext':
    case 'defcontext':
    case 'rootcontext': {
      if (val === undefined || val === '') throw new UsageError(`option ${key} needs a value`);
      // FUSE superblocks take no SELinux context mount option; SELinux hosts label FUSE files
      // through genfscon instead. This machine's kernel has no SELinux to hand it to either.
      fx.notes.push(`${key}=${val}: FUSE mounts take no SELinux context option; dropped`);
      return true;
    }
    default:
      return false;
  }
}
