// mkdir -p for the daemon's own directories (run dir, log directory).
import fs from 'node:fs';
import path from 'node:path';

/**
 * Makes `dir` and its missing parents, each with `mode` as given: a daemon runs with umask 0, so
 * the mode is what the directory gets. Throws the errno of the first mkdir that cannot succeed.
 * Node's recursive mkdirSync loops for ever where a parent stands but refuses every new name
 * with ENOENT (under /proc, /sys): a server given such a run dir spun instead of failing.
 */
export function mkdirs(dir: string, mode: number): void {
  if (made(dir, mode) !== 'ENOENT') return;
  const parent = path.dirname(dir);
  if (parent === dir) fs.mkdirSync(dir, { mode }); // no root: throws
  mkdirs(parent, mode);
  // The parent stands now: ENOENT again is the file system's answer.
  if (made(dir, mode) === 'ENOENT') fs.mkdirSync(dir, { mode });
}

/** mkdir of one directory: done (or there already, as a directory: another process's race), or ENOENT; else throws. */
function made(dir: string, mode: number): 'ENOENT' | undefined {
  try {
    fs.mkdirSync(dir, { mode });
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return code;
    if (code === 'EEXIST' && fs.statSync(dir).isDirectory()) return undefined;
    throw err;
  }
}
