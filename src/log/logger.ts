// One pino logger for the daemon: JSON lines, quiet (warn) by default, to stderr or appended to
// a file. A daemon must never die of its own logging: a write that fails (stderr closed, a pipe
// whose reader left, a full disk) is dropped.
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { mkdirs } from '../host/mkdirs';

export type Logger = pino.Logger;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function isLogLevel(s: string): s is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(s);
}

/** Opens `file` for appending (creating it and its directory), as the daemon's log and stdio. */
export function openLogFile(file: string): number {
  try {
    mkdirs(path.dirname(file), 0o755);
    return fs.openSync(file, 'a', 0o640);
  } catch (err) {
    throw new Error(`cannot open the log file ${file}: ${(err as Error).message}`);
  }
}

/** A synchronous destination on an fd that swallows write errors. */
export class SafeDestination {
  constructor(private fd: number) {}

  write(chunk: string): boolean {
    if (this.fd < 0) return true;
    try {
      fs.writeSync(this.fd, chunk);
    } catch {
      // stderr gone (detached daemon) or the file system full: the line is lost, the mount is not.
    }
    return true;
  }

  /** From now on, write nowhere (the reader of our stderr went away). */
  detach(): void {
    this.fd = -1;
  }

  /** Writes nowhere from now on, and closes a log file of its own (a server outlives its mounts' loggers). */
  close(): void {
    if (this.fd > 2) {
      try { fs.closeSync(this.fd); } catch { /* closed */ }
    }
    this.fd = -1;
  }
}

export interface DaemonLogger {
  log: Logger;
  dest: SafeDestination;
}

export function createLogger(level: LogLevel = 'warn', file?: string): Logger {
  return createDaemonLogger(level, file).log;
}

export function createDaemonLogger(level: LogLevel = 'warn', file?: string): DaemonLogger {
  const dest = new SafeDestination(file ? openLogFile(file) : 2);
  const log = pino({ level, base: { pid: process.pid, name: 'overlayd' }, timestamp: pino.stdTimeFunctions.isoTime }, dest);
  return { log, dest };
}
