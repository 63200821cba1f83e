import net from 'node:net';

/**
 * A small TCP proxy on loopback in front of an S3-compatible server:
 * - `delayMs`: every chunk the client sends (each HTTP request's bytes) is forwarded after this
 *   delay, in order: each request's first response byte comes `delayMs` later, like S3's
 *   first-byte latency; the response body then streams at full speed.
 * - `resetAfter(n)`: the next response that passes `n` bytes has its connection reset at that
 *   point (a connection reset in the middle of a GetObject body), once per call.
 * Counts the bytes the server sent back. `close()` ends every connection.
 */
export interface S3Proxy {
  readonly endpoint: string;
  readonly port: number;
  /** Bytes sent by the server to the clients so far. */
  readonly bytesDown: number;
  /** Connections accepted so far. */
  readonly connections: number;
  resetAfter(bytes: number): void;
  /** Forgets resets queued and not yet used. */
  cancelResets(): void;
  setDelay(ms: number): void;
  close(): Promise<void>;
}

export async function startS3Proxy(target: { host: string; port: number }, options: { delayMs?: number } = {}): Promise<S3Proxy> {
  let delayMs = options.delayMs ?? 0;
  let bytesDown = 0;
  let connections = 0;
  const resets: number[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    connections++;
    const upstream = net.connect(target.port, target.host);
    sockets.add(client);
    sockets.add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    let resetAt: number | undefined;
    let down = 0;
    const closeBoth = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', () => {
      sockets.delete(client);
      upstream.destroy();
    });
    upstream.on('close', () => {
      sockets.delete(upstream);
      client.destroy();
    });
    client.on('error', closeBoth);
    upstream.on('error', closeBoth);
    client.on('data', (chunk: Buffer) => {
      if (resetAt === undefined && resets.length > 0) resetAt = down + resets.shift()!;
      if (delayMs <= 0) {
        upstream.write(chunk);
        return;
      }
      // Same delay for every chunk: order is kept.
      setTimeout(() => {
        if (!upstream.destroyed) upstream.write(chunk);
      }, delayMs);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (resetAt !== undefined && down + chunk.length >= resetAt) {
        const keep = resetAt - down;
        if (keep > 0) client.write(chunk.subarray(0, keep));
        bytesDown += Math.max(0, keep);
        client.resetAndDestroy();
        upstream.destroy();
        return;
      }
      down += chunk.length;
      bytesDown += chunk.length;
      if (!client.write(chunk)) {
        upstream.pause();
        client.once('drain', () => upstream.resume());
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    port,
    get bytesDown() {
      return bytesDown;
    },
    get connections() {
      return connections;
    },
    resetAfter(bytes: number) {
      resets.push(bytes);
    },
    cancelResets() {
      resets.length = 0;
    },
    setDelay(ms: number) {
      delayMs = ms;
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
