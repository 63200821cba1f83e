/**
 * The benchmark's S3 first-byte latency proxy as a process of its own (bench/lib/proxy.ts), so
 * the bytes it relays cost CPU in neither the gateway nor the benchmark process (which shares the
 * clients' core and checks every byte they receive).
 *
 * node --import tsx bench/latency-proxy.ts HOST PORT DELAY_MS  (prints the port it listens on)
 */
import { startS3Proxy } from './lib/proxy.js';

const [host, port, delay] = process.argv.slice(2);
if (!host || !port || !delay) {
  process.stderr.write('usage: latency-proxy HOST PORT DELAY_MS\n');
  process.exit(2);
}
const proxy = await startS3Proxy({ host, port: Number(port) }, { delayMs: Number(delay) });
process.stdout.write(`latency proxy listening on ${proxy.port}\n`);
const stop = (): void => void proxy.close().finally(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
