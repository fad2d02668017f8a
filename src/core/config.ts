import type { IdMapping } from './idmap';
import type { UuidMode } from './origin';
import type { RedirectMode } from './redirect';

// What the core needs to know about a mount; the CLI builds it from `-o` options.

export interface OverlayConfig {
  /** Lower directories, absolute, top layer first (the kernel's leftmost lowerdir). */
  lowerdirs: string[];
  /** Writable upper layer; absent means a read-only mount. */
  upperdir?: string;
  /** Scratch directory on the upper filesystem for atomic copy-up. */
  workdir?: string;
  /** Use user.overlay.* instead of trusted.overlay.* (unprivileged layers). */
  userxattr: boolean;
  /** Skip fsync of copied-up data (the kernel's `volatile`). */
  volatile: boolean;
  /** Mounted read-only even though an upper layer is given. */
  readonly: boolean;
  /** The kernel's uuid= (origin.ts; upper.ts keeps the overlay's own); absent means null. */
  uuid?: UuidMode;
  /** redirect_dir=; absent: the kernel's default for the mount (see redirectModeOf). */
  redirectDir?: RedirectMode;
  /** uidmapping=/gidmapping=/squash_to_*: ownership translation (see idmap.ts). */
  idmap?: IdMapping;
}

/** Who asked: every operation that creates or checks permissions takes one. */
export interface Caller {
  uid: number;
  gid: number;
  pid: number;
  /** The caller's umask, where the transport knows it; undefined means the mode is already masked. */
  umask?: number;
}

export const DAEMON_CALLER: Caller = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, pid: process.pid };

/** Things the daemon hides from the caller but an operator must hear about. */
export interface CoreEvents {
  warn(msg: string, detail?: Record<string, unknown>): void;
  error(msg: string, detail?: Record<string, unknown>): void;
  /** An object now exists in upper, copied from below (its merged path). */
  copiedUp?(path: string): void;
}
