// One pino logger for the daemon: JSON lines, quiet (warn) by default.
import pino from 'pino';

export type Logger = pino.Logger;
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function createLogger(level: LogLevel = 'warn', file?: string): Logger {
  const dest = file ? pino.destination({ dest: file, append: true, mkdir: true, sync: true }) : pino.destination({ fd: 2, sync: true });
  return pino({ level, base: { pid: process.pid, name: 'overlayd' } }, dest);
}
