/**
 * The benchmark's WAN path (bench/lib/delay-path.ts) as a process of its own, so the bytes it
 * relays cost CPU in neither the servers nor the benchmark process.
 *
 * node --import tsx bench/wan-path.ts RTT_MS WINDOW_BYTES [--rate BYTES_PER_SECOND] tcp:PORT|udp:PORT...
 * (--rate: each TCP connection's bandwidth per direction.)
 * Prints one JSON line: {"wanPath":[{"kind":"tcp","target":PORT,"port":PORT},...]}.
 */
import { startDelayPath, type DelayForward } from './lib/delay-path.js';

const [rtt, window, ...rest] = process.argv.slice(2);
let rate = 0;
if (rest[0] === '--rate') {
  rate = Number(rest[1]);
  rest.splice(0, 2);
}
const specs = rest;
const forwards: DelayForward[] = specs.map((s) => {
  const m = /^(tcp|udp):(\d+)$/.exec(s);
  if (!m) throw new Error(`not tcp:PORT or udp:PORT: ${s}`);
  return { kind: m[1] as 'tcp' | 'udp', target: Number(m[2]) };
});
if (!(Number(rtt) >= 0) || !(Number(window) > 0) || !(rate >= 0) || forwards.length === 0) {
  process.stderr.write('usage: wan-path RTT_MS WINDOW_BYTES [--rate BYTES_PER_SECOND] tcp:PORT|udp:PORT...\n');
  process.exit(2);
}
const path = await startDelayPath(forwards, { rttMs: Number(rtt), windowBytes: Number(window), ...(rate > 0 ? { bytesPerSecond: rate } : {}) });
process.stdout.write(`${JSON.stringify({ wanPath: forwards.map((f, i) => ({ ...f, port: path.ports[i] })) })}\n`);
const stop = (): void => void path.close().finally(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
