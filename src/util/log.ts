/**
 * Logging: pino (structured, levels) writing to stdout — as JSON lines with `--log-format json`,
 * or as readable text lines through pino-pretty (synchronously, so nothing is lost on exit).
 */
import { destination, type Logger, pino, stdTimeFunctions } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };
export type LogFormat = 'text' | 'json';
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function createLogger(opts: { level?: LogLevel; format?: LogFormat; name?: string } = {}): Logger {
  const level = opts.level ?? 'info';
  const base = { name: opts.name ?? 'lunar' };
  if (opts.format === 'json') {
    return pino({ level, base, timestamp: stdTimeFunctions.isoTime }, destination({ fd: 1, sync: true }));
  }
  const stream = pretty({
    sync: true,
    colorize: process.stdout.isTTY === true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,name',
    singleLine: true,
  });
  return pino({ level, base }, stream);
}

/** A logger that drops everything (tests, library use). */
export const silentLogger: Logger = pino({ level: 'silent' });
