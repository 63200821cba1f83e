import { within } from '../bounded-wait.js';
import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/** What createLogger writes to: pino.destination's SonicBoom (public: write, end, the 'close' event). */
interface Destination extends DestinationStream {
  end(): void;
  once(event: 'close' | 'error', listener: () => void): unknown;
}

/** The destination of each logger createLogger made, kept here rather than read out of pino. */
const destinations = new WeakMap<Logger, Destination>();

/**
 * JSON lines on stdout. The destination is asynchronous (a boot storm logs two lines per transfer,
 * and a slow log pipe must not stall the UDP path); `closeLogs` writes it out before the process exits.
 */
export function createLogger(level: string): Logger {
  const destination = pino.destination({ dest: 1, sync: false, minLength: 0 });
  const logger = pino({ level, base: { service: 'tftp-gateway' }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
  destinations.set(logger, destination);
  return logger;
}

interface LineStream {
  write(line: string): unknown;
}

/**
 * Writes one complete line (e.g. a CloudWatch EMF record) to the logger's own destination, so it
 * can never interleave with log lines. For a logger createLogger did not make (tests hand the
 * gateway a pino logger over their own stream) the stream comes from `pino.symbols.streamSym`,
 * pino's documented handle for integrations; failing that, stdout.
 */
export function writeLine(logger: Logger, line: string): void {
  const stream = destinations.get(logger) ?? (logger as unknown as Record<symbol, LineStream | undefined>)[pino.symbols.streamSym];
  const text = line.endsWith('\n') ? line : `${line}\n`;
  if (stream && typeof stream.write === 'function') stream.write(text);
  else process.stdout.write(text);
}

/**
 * Writes out every buffered log line (and a write in flight) and closes the logger's destination
 * (stdout itself stays open); call it right before the process exits. Bounded: never holds an exit
 * longer than `timeoutMs`. (pino's flush() does not wait for a write in flight with minLength 0,
 * so a destination of ours is ended and its 'close' awaited; other loggers are flushed.)
 */
export async function closeLogs(logger: Logger, timeoutMs = 5000): Promise<void> {
  const destination = destinations.get(logger);
  const closed = new Promise<void>((resolve) => {
    try {
      if (destination) {
        destination.once('close', resolve);
        destination.once('error', resolve);
        destination.end();
      } else {
        logger.flush(() => resolve());
      }
    } catch {
      resolve();
    }
  });
  await within(closed, timeoutMs, undefined, { ref: false });
}

/** Client-supplied text made safe for a log line: control bytes escaped, length bounded. */
export function sanitize(text: string, max = 256): string {
  // eslint-disable-next-line no-control-regex
  const clean = text.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}

/** A request's options (client-supplied names and values) for a log line: sanitised, at most 16. */
export function sanitizeOptions(options: ReadonlyMap<string, string> | Iterable<readonly [string, string]>): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  let n = 0;
  for (const [name, value] of options) {
    if (n++ >= 16) break;
    out[sanitize(name, 64)] = sanitize(value, 128);
  }
  return out;
}
