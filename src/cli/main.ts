// overlayd's command line: mount, umount, status.
import { Command, Option } from 'commander';
import path from 'node:path';
import { sys } from '../host/native';
import { errnoName } from '../core/errors';
import { LOG_LEVELS, type LogLevel } from '../log/logger';
import { detach, reportFailure, serve } from './daemon';
import { UsageError, parseMountOptions } from './options';
import { listMounts } from './registry';

function die(msg: string, code = 1): never {
  process.stderr.write(`overlayd: ${msg}\n`);
  process.exit(code);
}

interface MountFlags {
  option?: string[];
  foreground?: boolean;
  logLevel: LogLevel;
  logFile?: string;
  readyFd?: string;
}

async function mountCommand(args: string[], flags: MountFlags): Promise<void> {
  // mount(8) style: `overlayd mount [SOURCE] MERGED`; the source name is only a label.
  if (args.length === 0) die('missing mountpoint (usage: overlayd mount -o lowerdir=A:B[,upperdir=U,workdir=W] MERGED)', 2);
  if (args.length > 2) die(`too many arguments: ${args.join(' ')}`, 2);
  const mountpoint = path.resolve(args[args.length - 1]);
  const readyFd = flags.readyFd === undefined ? undefined : Number(flags.readyFd);
  try {
    const options = parseMountOptions(flags.option ?? []);
    if (!flags.foreground) {
      const { validateLayout } = await import('./validate');
      validateLayout(options.overlay, mountpoint); // fail here, in front of the user, when we can
      const argv = process.argv.slice(1).filter((a) => a !== '-f' && a !== '--foreground');
      process.exit(await detach(argv));
    }
    const code = await serve({ mountpoint, options, logLevel: flags.logLevel, logFile: flags.logFile, readyFd, optionStrings: flags.option ?? [] });
    process.exit(code);
  } catch (err) {
    const msg = err instanceof UsageError || err instanceof Error ? err.message : String(err);
    reportFailure(readyFd, msg);
    die(msg, err instanceof UsageError ? 2 : 1);
  }
}

function umountCommand(target: string, flags: { lazy?: boolean }): void {
  const mp = path.resolve(target);
  const r = sys.umount2(mp, flags.lazy ? sys.constants.MNT_DETACH : 0);
  if (r === 0) return;
  const code = errnoName(-r);
  if (code === 'EBUSY') die(`${mp} is busy (a process is using it); try again when it is free, or --lazy`);
  if (code === 'EINVAL') die(`${mp} is not mounted`);
  if (code === 'ENOENT') die(`${mp} does not exist`);
  die(`cannot unmount ${mp}: ${code}`);
}

function statusCommand(target: string | undefined): void {
  const mounts = listMounts().filter((m) => target === undefined || m.mountpoint === path.resolve(target));
  if (target !== undefined && mounts.length === 0) die(`${path.resolve(target)} is not an overlayd mount`);
  for (const m of mounts) {
    const up = Math.round((Date.now() - m.started) / 1000);
    const counters = Object.entries(m.counters ?? {}).map(([k, v]) => `${k}=${v}`).join(' ');
    process.stdout.write(`${m.mountpoint}\tpid=${m.pid}\tuptime=${up}s\t-o ${m.options.join(',')}\t${counters}\n`);
  }
}

export function main(argv: string[]): void {
  const program = new Command();
  program.name('overlayd').description('a union filesystem daemon with kernel overlayfs semantics, over FUSE');
  program.configureOutput({ writeErr: (s) => process.stderr.write(s.startsWith('error:') ? `overlayd: ${s.slice(7)}` : s) });
  program.exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));
  program
    .command('mount')
    .description('mount a union of directories at MERGED')
    .argument('<args...>', '[SOURCE] MERGED')
    .option('-o, --option <options>', 'mount options: lowerdir=A:B,upperdir=U,workdir=W,...', (v: string, prev: string[] = []) => [...prev, v])
    .option('-f, --foreground', 'stay in the foreground')
    .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS as unknown as string[]).default('warn'))
    .option('--log-file <file>', 'append JSON logs to this file')
    .addOption(new Option('--ready-fd <fd>').hideHelp())
    .action((args: string[], flags: MountFlags) => mountCommand(args, flags));
  program
    .command('umount')
    .alias('unmount')
    .description('unmount an overlayd mount')
    .argument('<merged>')
    .option('-l, --lazy', 'detach now, clean up when no longer busy')
    .action(umountCommand);
  program
    .command('status')
    .description('list overlayd mounts with their layers, pid, uptime and counters')
    .argument('[merged]')
    .action(statusCommand);
  program.parseAsync(argv).catch((err: unknown) => die(String(err)));
}
