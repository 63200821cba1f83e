import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'tftp-gateway' }, timestamp: pino.stdTimeFunctions.isoTime });
}

/** Client-supplied text made safe for a log line: control bytes escaped, length bounded. */
export function sanitize(text: string, max = 256): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}
