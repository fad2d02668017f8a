// What the daemon needs of a way of speaking FUSE (-o transport=): the kernel transport
// (src/fuse-kernel) and fuse-native (src/fuse) both are one, so src/cli knows neither.

/** Figures a transport adds to `overlayd status` (see cli/registry Counters). */
export interface TransportCounters {
  /** Kernel transport: nodes the kernel holds (the root and those it looked up or has open; cached directories are dirCacheEntries), its open file and directory handles, live backing ids. */
  nodes?: number;
  fuseOpenFiles?: number;
  openDirs?: number;
  backingIds?: number;
  backedNodes?: number;
  /** Kernel transport: requests that came through FUSE over io_uring. */
  ringOps?: number;
  /** fuse-native: unlinked-but-open files libfuse still names .fuse_hidden* (see fuse/walk.ts). */
  hiddenFiles?: number;
}

export interface Transport {
  /** Requests served so far. */
  readonly ops: number;
  /** Resolves once the kernel has sent INIT, i.e. the mount serves. */
  mount(): Promise<void>;
  /** Unmounts; resolves with 0 or -errno (EBUSY: a process still inside, the caller decides). */
  unmount(lazy?: boolean): Promise<number>;
  /** Stops serving and lets go of what the session holds (after unmount, or to give up). */
  close(): void;
  /** The mount options as given to the kernel or libfuse, for logs. */
  fuseOptions(): string[];
  /** How it is mounted, for status: `kernel (mount(2))`, `fuse-native`. */
  describe(): string;
  counters(): TransportCounters;
  /** Runs `hook` when the session ends by itself (its connection aborted, a fatal device error); fuse-native: never. */
  onSessionEnd(hook: () => void): void;
  /**
   * Whether the session ends when the kernel lets go of the mount (DESTROY, then ENODEV on the
   * device), so a mount detached from the namespace (umount -l) can go on serving the files
   * still open in it until then. fuse-native: no (it tells nothing of its session).
   */
  readonly endsWithKernel: boolean;
}
