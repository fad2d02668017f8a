// overlayd's command line: mount, umount, status; and mount(8)'s helper form,
// `overlayd SOURCE MOUNTPOINT [-sfnv] [-N NS] [-o OPTIONS] [-t TYPE]`, which mount.fuse3 runs
// for the type fuse.overlayd and /sbin/mount.fuse.overlayd runs for mount(8).
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Command, Option } from 'commander';
import { toBinary } from '../host/bytes';
import { sys } from '../host/native';
import { E, errnoName } from '../core/errors';
import { fusermountUnmount, fusermountUnusable } from '../fuse-kernel/fusermount';
import { LOG_LEVELS, type LogLevel } from '../log/logger';
import { detach, reportFailure, serve } from './daemon';
import { UsageError, parseMountOptions } from './options';
import { lockUpperAndWork } from './layer-lock';
import { applyPrivilegeDefaults, checkPrivileges } from './privilege';
import { mountAt, overlaydMounts, OVERLAYD_FSTYPE } from './mountinfo';
import { findDaemonRecord, listMounts, refreshRecords, sessionEnded, type MountRecord } from './registry';
import { askServer, Delegate, serverMain, serverMode, type MountHost } from './server';
import { resolveMountpoint, validateLayout } from './validate';

/** Exit codes: overlayd's own commands, and mount(8)'s for the helper form. */
const CODES = { usage: 2, fail: 1 };
const MOUNT_CODES = { usage: 32, fail: 32 }; // bad arguments to the helper form: 1

class Exit extends Error {
  constructor(readonly code: number) { super(`exit ${code}`); }
}

/** Where a command runs: its stderr, cwd and argv, here or (`server`) inside a resident server. */
export interface Io {
  err: (s: string) => void;
  cwd: string;
  /** The argv after the program's name, as a server is sent it. */
  argv?: string[];
  /** Inside a resident server: mounts start there. */
  server?: MountHost;
}

const STDIO: Io = { err: (s) => process.stderr.write(s), cwd: process.cwd() };

function say(msg: string, io: Io = STDIO): void {
  io.err(`overlayd: ${msg}\n`);
}

function die(msg: string, code = 1, io: Io = STDIO): never {
  say(msg, io);
  throw new Exit(code);
}

function version(): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

export interface MountRequest {
  source?: string;
  mountpoint: string;
  options: string[];
  foreground?: boolean;
  logLevel?: LogLevel;
  logFile?: string;
  readyFd?: number;
  sloppy?: boolean;
  /** mount -f: check everything, mount nothing. */
  fake?: boolean;
  verbose?: boolean;
}

/** Mounts; returns the exit code. Bad input -> codes.usage, a failed mount -> codes.fail. */
export async function mountCommand(req: MountRequest, codes = CODES, io: Io = STDIO): Promise<number> {
  const mountpoint = path.resolve(io.cwd, req.mountpoint);
  try {
    if (io.server !== undefined && req.foreground) throw new Delegate('a daemon in the foreground is not a server\'s');
    const options = parseMountOptions(req.options, { source: req.source, sloppy: req.sloppy, cwd: io.cwd });
    // A server mounts with the kernel transport only (fuse-native runs a libfuse loop of its own).
    if (io.server !== undefined && options.transport !== 'kernel' && !req.fake) throw new Delegate('fuse-native');
    if (io.server !== undefined) {
      const cfg = options.overlay;
      const inside = io.server.reachesOwnMount([mountpoint, ...cfg.lowerdirs, ...(cfg.upperdir !== undefined ? [cfg.upperdir] : []), ...(cfg.workdir !== undefined ? [cfg.workdir] : []),
        ...[req.logFile, options.daemon.logFile].filter((f): f is string => f !== undefined).map((f) => path.resolve(io.cwd, f))]);
      if (inside !== undefined) throw new Delegate(`${inside} is on a mount this server serves`);
    }
    if (io.server === undefined && !req.foreground && !req.fake && options.transport === 'kernel' && serverMode() && io.argv !== undefined) {
      const r = await askServer(io.argv, io.cwd);
      if (r !== 'delegate') { io.err(r.stderr); return r.code; }
    }
    options.notes.push(...applyPrivilegeDefaults(options));
    checkPrivileges(options);
    const logLevel = req.logLevel ?? options.daemon.logLevel ?? 'warn';
    const logFile = req.logFile !== undefined ? path.resolve(io.cwd, req.logFile) : options.daemon.logFile;
    if (options.ignored.length > 0 && req.readyFd === undefined) say(`ignoring unknown options (sloppy): ${options.ignored.join(',')}`, io);
    if (req.fake) {
      validateLayout(options.overlay, mountpoint);
      lockUpperAndWork(options.overlay).release();
      if (req.verbose) say(`would mount ${mountpoint} (fake)`, io);
      return 0;
    }
    if (io.server !== undefined) {
      await io.server.start({ mountpoint, source: options.fuse.fsname, options, logLevel, logFile, optionStrings: req.options });
      if (req.verbose) say(`mounted ${mountpoint}`, io);
      return 0;
    }
    if (!req.foreground) {
      validateLayout(options.overlay, mountpoint); // fail here, in front of the user, when we can
      lockUpperAndWork(options.overlay).release(); // the daemon takes them for good
      const args = [path.resolve(process.argv[1]), 'mount', '--foreground', '--ready-fd', '3', '--log-level', logLevel];
      if (logFile !== undefined) args.push('--log-file', logFile);
      for (const o of req.options) args.push('-o', o);
      if (req.sloppy) args.push('--sloppy');
      args.push('--', options.fuse.fsname, mountpoint);
      const code = await detach({ args, logFile });
      if (code !== 0) return code === CODES.usage ? codes.usage : codes.fail;
      if (req.verbose) say(`mounted ${mountpoint}`);
      return 0;
    }
    return await serve({ mountpoint, source: options.fuse.fsname, options, logLevel, logFile, readyFd: req.readyFd, optionStrings: req.options });
  } catch (err) {
    if (err instanceof Exit || err instanceof Delegate) throw err;
    const msg = err instanceof Error ? err.message : String(err);
    reportFailure(req.readyFd, msg);
    say(msg, io);
    if (req.readyFd === undefined) logFailure(req, msg, io.cwd);
    return err instanceof UsageError ? codes.usage : codes.fail;
  }
}

/**
 * An engine reads a mount program's log_file, not its stderr: a mount that fails before the
 * daemon's logger exists (bad options, bad layout) still leaves its one line there, in the
 * logger's JSON form. The file is found even when the options around it do not parse.
 */
function logFailure(req: MountRequest, msg: string, cwd: string): void {
  let file = req.logFile;
  for (const o of req.options) {
    for (const item of o.split(',')) if (item.startsWith('log_file=')) file = item.slice('log_file='.length);
  }
  if (file === undefined || file === '') return;
  try {
    fs.appendFileSync(path.resolve(cwd, file), JSON.stringify({ level: 50, time: Date.now(), pid: process.pid, mountpoint: path.resolve(cwd, req.mountpoint), msg }) + '\n');
  } catch { /* the line went to stderr */ }
}

/** mount(8)'s helper convention: `SOURCE MOUNTPOINT [-sfnv] [-N NS] [-o OPTIONS] [-t TYPE]`. */
export interface HelperArgs {
  source: string;
  mountpoint: string;
  options: string[];
  sloppy: boolean;
  fake: boolean;
  verbose: boolean;
  namespace?: string;
}

export function parseHelperArgs(args: string[]): HelperArgs {
  const pos: string[] = [];
  const out: HelperArgs = { source: '', mountpoint: '', options: [], sloppy: false, fake: false, verbose: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = (flag: string): string => {
      if (i + 1 >= args.length) throw new UsageError(`${flag} needs a value`);
      return args[++i];
    };
    if (a === '--') { pos.push(...args.slice(i + 1)); break; }
    if (a === '-o' || a === '--options') { out.options.push(value(a)); continue; }
    if (a.startsWith('-o') && a.length > 2) { out.options.push(a.slice(2)); continue; }
    if (a === '-t' || a === '--types') {
      const t = value(a);
      if (!['fuse.overlayd', 'fuse3.overlayd', 'overlayd', 'fuse', 'fuseblk.overlayd', 'fuse-overlayfs', 'fuse3.fuse-overlayfs', 'fuse.fuse-overlayfs'].includes(t)) throw new UsageError(`cannot mount type "${t}" (overlayd mounts fuse.overlayd)`);
      continue;
    }
    if (a === '-N' || a === '--namespace') { out.namespace = value(a); continue; }
    if (/^-[sfnvi]+$/.test(a)) {
      for (const f of a.slice(1)) {
        if (f === 's') out.sloppy = true;
        if (f === 'f') out.fake = true;
        if (f === 'v') out.verbose = true;
        // n (no mtab) and i (no further helper): nothing to do for overlayd.
      }
      continue;
    }
    if (a.startsWith('-') && a !== '-') throw new UsageError(`unknown flag ${a}`);
    pos.push(a);
  }
  // `-o OPTS MERGED` alone is fuse-overlayfs's form, as containers/storage and moby run it.
  if (pos.length === 1 && out.options.length > 0) pos.unshift('');
  if (pos.length < 2) throw new UsageError('usage: overlayd [SOURCE] MOUNTPOINT [-sfnv] -o lowerdir=A:B[,upperdir=U,workdir=W]');
  if (pos.length > 2) throw new UsageError(`too many arguments: ${pos.join(' ')}`);
  [out.source, out.mountpoint] = pos;
  if (out.mountpoint === '') throw new UsageError('empty mountpoint');
  return out;
}

/**
 * mount(8)'s helper form (exit codes of mount(8)), or with `engine` the form container engines
 * run a fuse-overlayfs-like mount program with, `PROG -o OPTS MERGED` (overlayd's own codes).
 */
async function helperMain(args: string[], engine: boolean, io: Io): Promise<number> {
  let h: HelperArgs;
  try {
    h = parseHelperArgs(args);
  } catch (err) {
    say((err as Error).message, io);
    return engine ? CODES.usage : 1;
  }
  if (h.namespace !== undefined) {
    if (io.server !== undefined) throw new Delegate('mount -N runs in another namespace');
    // mount -N: do the mount inside that mount namespace (a pid or a path to an ns file).
    const ns = /^\d+$/.test(h.namespace) ? `/proc/${h.namespace}/ns/mnt` : h.namespace;
    const rest = args.filter((a, i) => a !== '-N' && a !== '--namespace' && args[i - 1] !== '-N' && args[i - 1] !== '--namespace');
    const r = spawnSync('nsenter', [`--mount=${ns}`, '--', process.execPath, ...process.execArgv, path.resolve(process.argv[1]), ...rest], { stdio: 'inherit' });
    return r.status ?? MOUNT_CODES.fail;
  }
  return mountCommand({ source: h.source === '' ? undefined : h.source, mountpoint: h.mountpoint, options: h.options, sloppy: h.sloppy, fake: h.fake, verbose: h.verbose }, engine ? CODES : MOUNT_CODES, io);
}

/** Waits for the session serving a mount to end (a daemon of its own exits with it; a server serves on). */
function waitForSessionEnd(rec: MountRecord, ms: number): boolean {
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  const deadline = Date.now() + ms;
  while (!sessionEnded(rec.pid, rec.seq)) {
    if (Date.now() > deadline) return false;
    Atomics.wait(sleeper, 0, 0, 20);
  }
  return true;
}

/**
 * Whether a FUSE mount's connection is gone (its daemon died, or it was aborted): the kernel
 * then answers ENOTCONN (ECONNABORTED) to everything. A daemon that does not answer within
 * `ms` is alive, if hung; any other answer, an error included, comes from a live connection.
 * Asked in a child (`stat -f`), killed at the deadline: a statfs of a hung mount holds the
 * thread asking until the daemon answers, and node's exit waits for its thread pool, so
 * `status` printed and then never ended while a server was stopped.
 */
async function connectionGone(mountpoint: string, ms = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('stat', ['-f', '-c', '%t', '--', mountpoint], { timeout: ms, killSignal: 'SIGKILL', env: { ...process.env, LC_ALL: 'C' } }, (err, _out, stderr) => {
      if (err === null || err.killed) resolve(false);
      else if (err.code === 'ENOENT') resolve(statfsGone(mountpoint, ms)); // no stat(1) here
      else resolve(/Transport endpoint is not connected|Software caused connection abort/.test(stderr));
    });
  });
}

/** connectionGone in this process, where there is no stat(1): a hung daemon then holds up our exit. */
async function statfsGone(mountpoint: string, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), ms); });
  const probe = fs.promises.statfs(mountpoint).then(
    () => false,
    (err: NodeJS.ErrnoException) => err.code === 'ENOTCONN' || err.code === 'ECONNABORTED',
  );
  try {
    return await Promise.race([probe, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Unmounts an overlayd mount. A mount whose daemon is gone (killed, crashed) is cleared too,
 * even when busy: with no daemon there is nothing to wait for, so it is detached.
 */
export async function umountCommand(target: string, flags: { lazy?: boolean; force?: boolean }): Promise<number> {
  const mp = resolveMountpoint(target);
  const m = mountAt(mp);
  if (!m) {
    if (!fs.existsSync(mp)) die(`${mp} does not exist`);
    die(`${mp} is not mounted`);
  }
  if (m.fstype !== OVERLAYD_FSTYPE) die(`${mp} is not an overlayd mount (it is ${m.fstype}); use umount(8)`);
  const rec = listMounts({ sameNamespace: true }).filter((r) => r.mountpoint === mp).pop() ?? findDaemonRecord(mp);
  const { MNT_DETACH, MNT_FORCE } = sys.constants;
  // umount2, or for a user's mount (mounted through fusermount3), `fusermount3 -u [-z]`, as
  // libfuse unmounts: a child process, waited for asynchronously.
  let helperSaid = '';
  const unmount = async (flags2: number): Promise<number> => {
    const r0 = sys.umount2(toBinary(mp), flags2);
    if (r0 !== -E.EPERM || process.getuid?.() === 0 || fusermountUnusable() !== undefined) return r0;
    if (flags2 & MNT_FORCE) {
      // The user's way to abort: the connection's abort file in fusectl belongs to the mount's owner.
      try { fs.writeFileSync(`/sys/fs/fuse/connections/${m.dev.split(':')[1]}/abort`, '1'); } catch { /* no fusectl */ }
    }
    const r = await fusermountUnmount(mp, (flags2 & MNT_DETACH) !== 0);
    helperSaid = r.message;
    return r.rc;
  };
  let how = 'unmounted';
  let r: number;
  if (flags.force) {
    // MNT_FORCE aborts the FUSE connection: whatever the daemon is doing, the mount ends.
    r = await unmount(MNT_FORCE);
    if (r === -E.EBUSY) { r = await unmount(MNT_DETACH); how = 'aborted and detached (it was busy)'; }
  } else {
    r = await unmount(flags.lazy ? MNT_DETACH : 0);
    if (flags.lazy) how = 'detached';
    // Whether its daemon is gone is the mount's to say: the record may live in another run dir.
    if (r === -E.EBUSY && await connectionGone(mp)) {
      r = await unmount(MNT_DETACH);
      how = 'detached: its daemon is gone and a process still uses it (that process sees errors until it leaves)';
      if (r === 0) say(`${mp}: ${how}`);
    }
  }
  if (r !== 0) {
    const code = errnoName(-r);
    if (code === 'EBUSY') die(`${mp} is busy (a process uses it); try again when it is free, or use --lazy`);
    if (code === 'EPERM') die(`cannot unmount ${mp}: permission denied${helperSaid ? ` (fusermount3: ${helperSaid})` : ''}`);
    if (code === 'EINVAL') die(`${mp} is not mounted`);
    die(`cannot unmount ${mp}: ${helperSaid || code}`);
  }
  // The session notices and ends; wait, so that once we return it has written its last log line.
  if (rec !== undefined && !waitForSessionEnd(rec, 10000)) say(`${mp} is unmounted but its daemon (pid ${rec.pid}) has not let go of it yet`);
  return 0;
}

export interface StatusEntry {
  mountpoint: string;
  source: string;
  state: 'serving' | 'dead';
  pid?: number;
  uptimeSeconds?: number;
  lowerdirs?: string[];
  upperdir?: string;
  workdir?: string;
  options?: string[];
  logFile?: string;
  logLevel?: string;
  transport?: string;
  counters?: MountRecord['counters'];
  /**
   * Set where the daemon did not write fresh counters when asked (busy, stopped, out of fds):
   * how old those shown are, in seconds.
   */
  countersAgeSeconds?: number;
}

/**
 * The mounts in mountinfo, each with its daemon's record when there is one. Dead or serving is
 * the mount's own answer, not the record's: a daemon may keep its record elsewhere (another
 * OVERLAYD_RUN_DIR), and a daemon alive behind an aborted connection serves nothing.
 */
export async function statusEntries(target?: string): Promise<StatusEntry[]> {
  const mounts = overlaydMounts();
  const want = target === undefined ? undefined : resolveMountpoint(target);
  const listed = listMounts({ sameNamespace: true });
  for (const m of mounts) {
    if ((want === undefined || m.mountpoint === want) && !listed.some((r) => r.mountpoint === m.mountpoint)) {
      const rec = findDaemonRecord(m.mountpoint);
      if (rec) listed.push(rec);
    }
  }
  const recs = refreshRecords(listed);
  const shown = mounts.filter((m) => want === undefined || m.mountpoint === want);
  // Asked all at once: a hung daemon costs its probe's timeout once, not once per mount.
  const gone = await Promise.all(shown.map((m) => connectionGone(m.mountpoint)));
  const out: StatusEntry[] = [];
  for (const [i, m] of shown.entries()) {
    const found = recs.filter((r) => r.rec.mountpoint === m.mountpoint).pop();
    const rec = found?.rec;
    if (gone[i]) { out.push({ mountpoint: m.mountpoint, source: m.source, state: 'dead', pid: rec?.pid }); continue; }
    if (!rec) { out.push({ mountpoint: m.mountpoint, source: m.source, state: 'serving' }); continue; }
    out.push({
      mountpoint: m.mountpoint, source: m.source, state: 'serving', pid: rec.pid,
      uptimeSeconds: Math.max(0, Math.round((Date.now() - rec.started) / 1000)),
      lowerdirs: rec.lowerdirs, upperdir: rec.upperdir, workdir: rec.workdir, options: rec.options,
      logFile: rec.logFile, logLevel: rec.logLevel, transport: rec.transport, counters: rec.counters,
      ...(found?.fresh === false && rec.counters !== undefined ? { countersAgeSeconds: Math.max(0, Math.round((Date.now() - rec.updated) / 1000)) } : {}),
    });
  }
  return out;
}

function duration(s: number): string {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  return d > 0 ? `${d}d${h}h${m}m` : h > 0 ? `${h}h${m}m${sec}s` : m > 0 ? `${m}m${sec}s` : `${sec}s`;
}

export function formatStatus(entries: StatusEntry[]): string {
  const lines: string[] = [];
  for (const e of entries) {
    if (e.state === 'dead') {
      const who = e.pid === undefined ? 'no daemon serves it' : `its connection is aborted; daemon pid ${e.pid} serves nothing`;
      lines.push(`${e.mountpoint}: dead (${who}; clear it with: overlayd umount ${e.mountpoint})`, `  source   ${e.source}`);
      continue;
    }
    if (e.pid === undefined) {
      lines.push(`${e.mountpoint}: serving (its daemon keeps no record that this user can read)`, `  source   ${e.source}`);
      continue;
    }
    lines.push(`${e.mountpoint}: serving, pid ${e.pid}, up ${duration(e.uptimeSeconds ?? 0)}`, `  source   ${e.source}`);
    for (const l of e.lowerdirs ?? []) lines.push(`  lower    ${l}`);
    if (e.upperdir !== undefined) lines.push(`  upper    ${e.upperdir}`, `  work     ${e.workdir}`);
    else lines.push('  upper    (none: read-only)');
    if (e.transport !== undefined) lines.push(`  transport ${e.transport}`);
    const c = e.counters;
    if (c && e.countersAgeSeconds !== undefined) lines.push(`  counters as of ${duration(e.countersAgeSeconds)} ago: the daemon did not refresh them when asked (busy, stopped or out of fds)`);
    if (c) {
      lines.push(`  ops served ${c.ops}${c.ringOps ? ` (${c.ringOps} through io_uring)` : ''}, bytes copied up ${c.bytesCopiedUp} (${c.copyUps} copy-ups), whiteouts ${c.whiteouts}, open files ${c.openFiles}${c.openFilesShare !== undefined ? ` (of a share of ${c.openFilesShare})` : ''}, rss ${Math.round(c.rssBytes / 1048576)} MiB`);
      if (c.nodes !== undefined) lines.push(`  kernel nodes ${c.nodes}, passthrough backing ids ${c.backingIds ?? 0}, fds ${c.fds ?? '?'} (${c.dirCacheFds ?? 0} for ${c.dirCacheEntries ?? 0} cached dirs)`);
    }
    lines.push(`  log      ${e.logFile ?? 'none'}, level ${e.logLevel}`);
  }
  return lines.length ? lines.join('\n') + '\n' : '';
}

/** 0: listed (and, for one MERGED, serving); 1: not an overlayd mount; 3: dead (daemon gone). */
export async function statusCommand(target: string | undefined, flags: { json?: boolean }): Promise<number> {
  const entries = await statusEntries(target);
  if (target !== undefined && entries.length === 0) die(`${resolveMountpoint(target)} is not an overlayd mount`);
  if (flags.json) process.stdout.write(JSON.stringify(entries, null, 2) + '\n');
  else if (entries.length === 0) process.stdout.write('no overlayd mounts\n');
  else process.stdout.write(formatStatus(entries));
  return target !== undefined && entries.every((e) => e.state === 'dead') ? 3 : 0;
}

const SUBCOMMANDS = new Set(['mount', 'umount', 'unmount', 'status', 'help', 'serve']);
const MOUNT_HELPER_FLAG = '--mount-helper';

export async function run(argv: string[], io: Io = { ...STDIO, argv: argv.slice(2) }): Promise<number> {
  const first = argv[2];
  // A server mounts; anything else (status, help, a server of its own) is the client's to run.
  if (io.server !== undefined && (['umount', 'unmount', 'status', 'help', 'serve'].includes(first ?? '') || argv.some((a) => ['-h', '--help', '-V', '--version'].includes(a)))) {
    throw new Delegate(`${first} is not a server's`);
  }
  // scripts/mount.fuse.overlayd says which form it wants: mount(8)'s, whatever the arguments.
  if (first === MOUNT_HELPER_FLAG) return helperMain(argv.slice(3), false, io);
  if (first !== undefined && !SUBCOMMANDS.has(first) && !first.startsWith('-')) return helperMain(argv.slice(2), false, io);
  if (first !== undefined && first.startsWith('-o')) return helperMain(argv.slice(2), true, io);
  let code = 0;
  const program = new Command();
  program
    .name('overlayd')
    .description('a union filesystem daemon with kernel overlayfs semantics, over FUSE')
    .version(version(), '-V, --version')
    .usage('<command> [options]\n       overlayd SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS]   (mount(8) helper form)');
  program.configureOutput({ writeErr: (s) => io.err(s.startsWith('error: ') ? `overlayd: ${s.slice(7)}` : s) });
  program.exitOverride();
  program
    .command('mount')
    .description('mount a union of directories at MERGED; returns once it serves.\nAs a user: through fusermount3; an upper layer needs -o userxattr, allow_other needs user_allow_other in /etc/fuse.conf')
    .argument('<args...>', '[SOURCE] MERGED: the mountpoint, after an optional name for the mount (its source in mountinfo; default overlayd)')
    .option('-o, --option <options>', 'mount options: lowerdir=A:B,upperdir=U,workdir=W,... (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('-f, --foreground', 'stay in the foreground (logs to stderr unless --log-file)')
    .addOption(new Option('--log-level <level>', 'log level (default warn; debug logs every FUSE operation)').choices(LOG_LEVELS as unknown as string[]))
    .option('--log-file <file>', 'append JSON log lines to this file (a detached daemon also sends its stdio there)')
    .option('-s, --sloppy', 'ignore unknown mount options')
    .option('--dry-run', 'check the options and layout, mount nothing')
    .addOption(new Option('--ready-fd <fd>').hideHelp())
    .action(async (args: string[], flags: { option?: string[]; foreground?: boolean; logLevel?: LogLevel; logFile?: string; readyFd?: string; sloppy?: boolean; dryRun?: boolean }) => {
      if (args.length > 2) die(`too many arguments: ${args.join(' ')} (usage: overlayd mount [-o OPTIONS] [SOURCE] MERGED)`, CODES.usage, io);
      const [source, merged] = args.length === 2 ? [args[0], args[1]] : [undefined, args[0]];
      if (merged === '') die('empty mountpoint', CODES.usage, io);
      const readyFd = flags.readyFd === undefined ? undefined : Number(flags.readyFd);
      code = await mountCommand({
        source, mountpoint: merged, options: flags.option ?? [], foreground: flags.foreground || readyFd !== undefined,
        logLevel: flags.logLevel, logFile: flags.logFile, readyFd, sloppy: flags.sloppy, fake: flags.dryRun,
      }, CODES, io);
    });
  // The resident server (server.ts), started by a client that finds none; not for people.
  program
    .command('serve', { hidden: true })
    .action(async () => {
      code = await serverMain((req, host, err) => run(['node', 'overlayd', ...req.argv], { err, cwd: req.cwd, argv: req.argv, server: host }));
    });
  program
    .command('umount')
    .alias('unmount')
    .description('unmount an overlayd mount (also one whose daemon died)')
    .argument('<merged>')
    .option('-l, --lazy', 'detach now, clean up when no longer busy')
    .option('--force', 'abort the FUSE connection first (for a daemon that hangs), then unmount')
    .action(async (merged: string, flags: { lazy?: boolean; force?: boolean }) => { code = await umountCommand(merged, flags); });
  program
    .command('status')
    .description('list overlayd mounts: layers, pid, uptime, counters (exit 3 if MERGED is a dead mount)')
    .argument('[merged]')
    .option('--json', 'print JSON')
    .action(async (merged: string | undefined, flags: { json?: boolean }) => { code = await statusCommand(merged, flags); });
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof Exit) return err.code;
    if (err instanceof Delegate) throw err;
    const ce = err as { code?: string; exitCode?: number };
    if (typeof ce.exitCode === 'number') return ce.code === 'commander.helpDisplayed' || ce.code === 'commander.version' ? 0 : CODES.usage;
    say(String(err), io);
    return CODES.fail;
  }
  return code;
}

export function main(argv: string[]): void {
  run(argv).then(
    (code) => process.exit(code),
    (err: unknown) => {
      if (err instanceof Exit) process.exit(err.code);
      say(err instanceof Error ? err.stack ?? err.message : String(err));
      process.exit(1);
    },
  );
}
