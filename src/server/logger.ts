import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * JSON lines on stdout. The destination is asynchronous (a boot storm logs two lines per transfer,
 * and a slow log pipe must not stall the UDP path); `closeLogs` writes it out before the process exits.
 */
export function createLogger(level: string): Logger {
  return pino(
    { level, base: { service: 'tftp-gateway' }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: 1, sync: false, minLength: 0 }),
  );
}

interface LineStream {
  write(line: string): unknown;
}

/**
 * Writes one complete line (e.g. a CloudWatch EMF record) to the logger's own destination, so it
 * can never interleave with log lines; falls back to stdout for a logger without a stream.
 */
export function writeLine(logger: Logger, line: string): void {
  const stream = (logger as unknown as Record<symbol, LineStream | undefined>)[pino.symbols.streamSym];
  const text = line.endsWith('\n') ? line : `${line}\n`;
  if (stream && typeof stream.write === 'function') stream.write(text);
  else process.stdout.write(text);
}

interface EndableStream {
  end(): void;
  once(event: 'close' | 'error', listener: () => void): unknown;
}

/**
 * Writes out every buffered log line (and a write in flight) and closes the logger's destination
 * (stdout itself stays open); call it right before the process exits. Bounded: never holds an exit
 * longer than `timeoutMs`. (pino's flush() does not wait for a write in flight with minLength 0.)
 */
export function closeLogs(logger: Logger, timeoutMs = 5000): Promise<void> {
  const stream = (logger as unknown as Record<symbol, Partial<EndableStream> | undefined>)[pino.symbols.streamSym];
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    timer.unref?.();
    const done = (): void => {
      clearTimeout(timer);
      resolve();
    };
    try {
      if (stream && typeof stream.end === 'function' && typeof stream.once === 'function') {
        stream.once('close', done);
        stream.once('error', done);
        stream.end();
      } else {
        logger.flush(() => done());
      }
    } catch {
      done();
    }
  });
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
