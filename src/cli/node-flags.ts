// How node is started for a daemon (a module of its own: the benchmark and stress run use it too).

/**
 * Node flags for a daemon. V8's young generation defaults to 16 MiB semispaces, sized for
 * throughput of short-lived programs; a daemon's per-request garbage is small, and capping them
 * at 1 MiB takes about 20 MiB off the peak RSS at no measurable speed cost (see the README's
 * performance section). They take effect only when node starts, so every way of starting a
 * daemon passes them: bin/overlayd's shebang, the mount helper (scripts/mount.fuse.overlayd),
 * detach() in daemon.ts, the benchmark and the stress run.
 */
export const DAEMON_NODE_FLAGS = ['--max-semi-space-size=1'];

/** process.execArgv plus the daemon flags it does not already set. */
export function daemonNodeArgs(execArgv: string[] = process.execArgv): string[] {
  const set = (f: string): boolean => execArgv.some((a) => a.split('=')[0] === f.split('=')[0]);
  return [...execArgv, ...DAEMON_NODE_FLAGS.filter((f) => !set(f))];
}
