import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ListMultipartUploadsCommand } from '@aws-sdk/client-s3';
import { download, upload, type ClientName, type RunResult, type TransferSpec } from '../support/clients.js';
import { LossyRelay, type LossProfile, type RelayStats } from '../support/lossy-relay.js';
import { encodeRequest, Opcode } from '../../src/tftp/protocol/packet.js';
import { getObject, type TestS3 } from '../support/s3.js';
import { rawExchange } from '../support/tftp-client.js';
import { until } from '../support/wait.js';

/**
 * The loss suite's machinery (issue 9), shared by test/loss/suite.test.ts and bench/loss.ts:
 * Debian's four clients through a seeded lossy relay (test/support/lossy-relay.ts) against the
 * gateway and against tftpd-hpa as the reference, one relay per transfer, same seed for both.
 */

export type Server = 'gateway' | 'tftpd-hpa';
export type Op = 'get' | 'put';

export const KiB = 1024;

/**
 * The seeds, fixed: every one is run and reported, none is ever replaced by another. The same list
 * for every client and direction (a seed names which TFTP packets are lost: the relay keys its
 * decisions by packet, see LossyRelay's keyBy 'packet').
 */
export const SEEDS_5PCT: readonly number[] = [101, 202, 303, 404, 505, 606, 707, 808, 909, 1010];
/** At 20% loss, gateway only: completes or fails cleanly. */
export const SEEDS_20PCT: readonly number[] = [2001, 2002, 2003];

/**
 * Clock-noise tolerance for "the gateway is never slower on a seed": gateway ≤ tftpd-hpa × 1.05 +
 * 0.5 s. Why: the two runs are separate processes on 2 shared cores (other engineers' builds run
 * here) with ~8 transfers at once, so process start (curl, atftp: 20-100 ms), event-loop and timer
 * lateness (a few ms per timer, hundreds of timers in a long run) add noise of a few tenths of a
 * second plus a few percent of a long run. The slack stays below the smallest real recovery step
 * it could hide: tftpd-hpa's first retransmission (1 s) for runs under 10 s, and the clients' own
 * 5-6 s timers (curl, tftp-hpa uploads) for runs up to ~100 s.
 *
 * Plus, for a client whose retransmission timer counts whole seconds of the wall clock, up to
 * one second for each packet it sent again: curl checks `time(NULL) > last + retry_time`, so each of
 * its timeouts fires anywhere in a one-second window depending on where in the second it began,
 * before the server has anything to do with it (seed 808 of curl's download: its RRQ is lost, and
 * curl repeats it after 5.2 s in one run and 6.2 s in the other).
 */
export const SLOWER_FACTOR = 1.05;
export const SLOWER_SLACK_MS = 500;
/** Clients whose retransmission timer counts whole wall-clock seconds, and that second in ms. */
export const CLIENT_TIMER_QUANTUM_MS: Partial<Record<ClientName, number>> = { curl: 1000 };
export const TOLERANCE_TEXT = `gateway ≤ tftpd-hpa × ${SLOWER_FACTOR} + ${SLOWER_SLACK_MS / 1000} s, + 1 s per packet curl sent again (its timer counts whole seconds); an upload's wait for its store not counted`;

/** `repeats`: the most packets the client sent again in either run (see clientRepeats). */
export function slowerThanAllowed(gatewayMs: number, tftpdMs: number, client?: ClientName, repeats = 0): boolean {
  const quantum = client ? (CLIENT_TIMER_QUANTUM_MS[client] ?? 0) : 0;
  return gatewayMs > tftpdMs * SLOWER_FACTOR + SLOWER_SLACK_MS + quantum * repeats;
}

/**
 * An upload's wait for its store, from its relay trace: from the first copy of the final DATA that
 * reached the server to the server's first ACK of it (ms; 0 for a download or an unfinished upload).
 * Not counted for either server: the gateway's final ACK waits until S3 holds the object (an
 * upload is never half-written), tftpd-hpa's until a local write returns; this suite compares
 * recovery from loss, not the store's latency (tens to hundreds of ms from RGW on a loaded machine).
 */
export function storeWaitMs(trace: readonly TraceEntry[], op: Op): number {
  if (op !== 'put') return 0;
  let last = 0;
  for (const e of trace) if (e.dir === 'up' && e.packet.startsWith('DATA ')) last = Math.max(last, Number(e.packet.slice(5)));
  const arrived = trace.find((e) => e.dir === 'up' && e.packet === `DATA ${last}` && e.fate !== 'dropped');
  const acked = arrived && trace.find((e) => e.dir === 'down' && e.packet === `ACK ${last}` && e.ms >= arrived.ms);
  return arrived && acked ? acked.ms - arrived.ms : 0;
}

/** Packets the client sent more than once in a run (from its relay trace): its retransmissions. */
export function clientRepeats(trace: readonly TraceEntry[]): number {
  const seen = new Set<string>();
  let repeats = 0;
  for (const e of trace) {
    if (e.dir !== 'up') continue;
    if (seen.has(e.packet)) repeats++;
    else seen.add(e.packet);
  }
  return repeats;
}

/** One datagram the relay saw: when (ms from the transfer's start), which way, what, and its fate. */
export interface TraceEntry {
  readonly ms: number;
  readonly dir: 'up' | 'down';
  /** packetLabel(): 'WRQ', 'DATA 7', 'ACK 3', ... */
  readonly packet: string;
  readonly fate: string;
}

/** A trace entry as one line of a printed trace. */
export function traceLine(e: TraceEntry): string {
  return `${e.ms.toFixed(0).padStart(7)} ms ${e.dir.padEnd(4)} ${e.packet.padEnd(12)} ${e.fate}`;
}

export interface LossCase {
  readonly client: ClientName;
  readonly op: Op;
  readonly size: number;
  readonly spec: TransferSpec;
  /** Why this size (server-driven recovery, or the client's own slow timer). */
  readonly why: string;
}

/**
 * Every client, both directions. Sizes: where the server's timer drives recovery (downloads by
 * busybox, atftp, tftp-hpa; busybox uploads, whose own timer starts at 100 ms) the files are big
 * enough to see many losses; where the client's own 5-6 s timer drives it (curl asks timeout=6
 * for downloads; tftp-hpa, curl and atftp uploads resend DATA only on their own timer) they are
 * small, so a case takes well under a minute with either server.
 * tftp-hpa's client sends no options at all (no blksize): its cases run at 512-byte blocks (its
 * 64 KiB download is 128 blocks, as many round trips as ~190 KiB at 1468; with tftpd-hpa's 1 s
 * timer it already takes 12-21 s at 5%). Budget: the whole suite, ~180 transfers, must fit in a
 * few minutes of CI.
 */
export const CASES_5PCT: readonly LossCase[] = [
  { client: 'busybox', op: 'get', size: 256 * KiB, spec: { blksize: 1468 }, why: 'server-timed' },
  { client: 'atftp', op: 'get', size: 256 * KiB, spec: { blksize: 1468 }, why: 'server-timed' },
  { client: 'tftp-hpa', op: 'get', size: 64 * KiB, spec: {}, why: 'server-timed, 512-byte blocks (tftp-hpa sends no blksize)' },
  { client: 'curl', op: 'get', size: 16 * KiB, spec: { blksize: 1468 }, why: 'client-timed (curl asks timeout=6)' },
  { client: 'busybox', op: 'put', size: 256 * KiB, spec: { blksize: 1468 }, why: 'client-timed, busybox resends after 100 ms' },
  { client: 'atftp', op: 'put', size: 32 * KiB, spec: { blksize: 1468 }, why: 'client-timed (atftp resends DATA on its own timer)' },
  { client: 'tftp-hpa', op: 'put', size: 8 * KiB, spec: {}, why: 'client-timed (5 s), 512-byte blocks' },
  { client: 'curl', op: 'put', size: 16 * KiB, spec: { blksize: 1468 }, why: 'client-timed (curl, 6 s)' },
];

/** 20%: smaller files (each block is lost ~36% of the time one way or the other). */
export const CASES_20PCT: readonly LossCase[] = CASES_5PCT.map((c) => ({ ...c, size: Math.max(4 * KiB, Math.round(c.size / 4 / KiB) * KiB) }));

/** Hard limit for one transfer; a capped run counts as failed. */
export const CAP_MS = 120_000;

export function lossProfile(loss: number): LossProfile {
  return { loss };
}

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Test file bytes: deterministic per case (so a failing case can be re-run byte for byte). */
export function caseBody(c: LossCase, tag: string): Buffer {
  const out = Buffer.alloc(c.size);
  let seed = createHash('sha256').update(`${tag}/${c.client}/${c.op}/${c.size}`).digest();
  for (let off = 0; off < c.size; off += 32) {
    seed = createHash('sha256').update(seed).digest();
    seed.copy(out, off);
  }
  return out;
}

export function caseLabel(c: LossCase): string {
  return `${c.client} ${c.op} ${sizeLabel(c.size)}${c.spec.blksize ? ` blksize ${c.spec.blksize}` : ''}`;
}

export function sizeLabel(n: number): string {
  return n % (1 << 20) === 0 ? `${n >> 20} MiB` : n % KiB === 0 ? `${n / KiB} KiB` : `${n} B`;
}

/** Downloaded files: one per case, the same name on both servers. */
export function downloadName(c: LossCase, tag: string): string {
  return `${tag}-${c.client}-get-${c.size}.bin`;
}

export function uploadName(c: LossCase, tag: string, seed: number): string {
  return `${tag}-${c.client}-put-${c.size}-seed${seed}.bin`;
}

// ---------------------------------------------------------------------------------------------
// tftpd-hpa

export interface Tftpd {
  readonly port: number;
  readonly dir: string;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const port = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/**
 * Debian's tftpd-hpa in the foreground: `in.tftpd -L -c -s DIR -a 127.0.0.1:PORT`. It chroots to
 * DIR and (started as root) drops to `nobody`, so DIR is world-writable for uploads; `-c` lets a
 * WRQ create a file (by default only existing, world-writable files can be written). Defaults
 * otherwise: 1 s first retransmission timeout, no blksize cap that matters here.
 */
export async function startTftpd(files: ReadonlyMap<string, Buffer>): Promise<Tftpd> {
  const binary = '/usr/sbin/in.tftpd';
  if (!fs.existsSync(binary)) throw new Error(`${binary} is missing (apt-get install tftpd-hpa)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tftpgw-loss-tftpd-'));
  fs.chmodSync(dir, 0o777);
  for (const [name, body] of files) fs.writeFileSync(path.join(dir, name), body, { mode: 0o644 });
  const port = await freeUdpPort();
  const child = spawn(binary, ['-L', '-c', '-s', dir, '-a', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  // Ready once it answers: a request for a name that does not exist gets an ERROR.
  const probe = encodeRequest(Opcode.RRQ, 'readiness-probe-that-does-not-exist', 'octet');
  await until(
    async () => {
      if (child.exitCode !== null) throw new Error(`in.tftpd exited with ${child.exitCode}: ${stderr}`);
      return (await rawExchange(port, probe, 200))?.opcode === Opcode.ERROR;
    },
    10_000,
    'in.tftpd to answer',
  );
  return {
    port,
    dir,
    child,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------
// One transfer

/** The gateway under test: its UDP port and the JSON log lines it wrote (in-process or a process of its own). */
export interface GatewayUnderTest {
  readonly port: number;
  readonly logs: readonly Record<string, unknown>[];
}

export interface Servers {
  readonly gateway?: GatewayUnderTest;
  readonly tftpd?: Tftpd;
  readonly s3: TestS3;
  readonly bucket: string;
}

export interface TransferOutcome {
  readonly server: Server;
  readonly c: LossCase;
  readonly seed: number;
  readonly loss: number;
  /** The client reported success. */
  readonly ok: boolean;
  /** Success with the right bytes (download: sha256 of the file; upload: the stored object/file). */
  readonly correct: boolean;
  /** Hit CAP_MS (counted as failed). */
  readonly capped: boolean;
  readonly ms: number;
  readonly relay: { up: RelayStats; down: RelayStats };
  /** Local ports the relay used towards the server (the gateway logs the client as 127.0.0.1:port). */
  readonly relayPorts: readonly number[];
  /** One line per datagram the relay saw: time, direction, packet, fate. */
  readonly trace: readonly TraceEntry[];
  /** Upload with wrong bytes stored: were they exactly the DATA the client put on the wire? */
  readonly storedIsWhatClientSent?: boolean;
  /** The client's last words, for failures. */
  readonly detail: string;
  readonly run: RunResult;
}

export interface RunOptions {
  readonly capMs?: number;
  /** Runs after the client exits and before the relay closes (e.g. to wait for the server's last ERROR). */
  readonly beforeClose?: (relay: LossyRelay, run: RunResult) => Promise<void>;
}

export async function runTransfer(servers: Servers, server: Server, c: LossCase, seed: number, loss: number, tag: string, opts: RunOptions = {}): Promise<TransferOutcome> {
  const capMs = opts.capMs ?? CAP_MS;
  const port = server === 'gateway' ? servers.gateway!.port : servers.tftpd!.port;
  // Uploads: the DATA payloads that reached the server, by block (first copy), to tell a server
  // that stored the wrong bytes from a client that sent them (curl re-sends DATA 1 with block 2's
  // bytes when an OACK is repeated).
  const wire = new Map<number, Buffer>();
  // Every datagram the relay saw, with its fate: printed when a seed fails, to show which packets
  // were lost and how each server recovered.
  const trace: TraceEntry[] = [];
  const t0 = performance.now();
  const onDatagram = ({ dir, msg, fate }: { dir: 'up' | 'down'; msg: Buffer; fate: string }): void => {
    trace.push({ ms: performance.now() - t0, dir, packet: packetLabel(msg), fate });
    if (c.op === 'put' && dir === 'up' && fate !== 'dropped' && msg.length >= 4 && msg.readUInt16BE(0) === 3 && !wire.has(msg.readUInt16BE(2))) wire.set(msg.readUInt16BE(2), Buffer.from(msg.subarray(4)));
  };
  const relay = await LossyRelay.start({ target: { host: '127.0.0.1', port }, seed, keyBy: 'packet', up: lossProfile(loss), down: lossProfile(loss), onDatagram });
  const ep = { host: '127.0.0.1', port: relay.port };
  try {
    const spec: TransferSpec = { ...c.spec, timeoutMs: capMs };
    let r: RunResult;
    let correct: boolean;
    let storedIsWhatClientSent: boolean | undefined;
    if (c.op === 'get') {
      const d = await download(c.client, ep, downloadName(c, tag), spec);
      r = d;
      correct = d.ok && d.sha256 === sha256(caseBody(c, tag));
    } else {
      const body = caseBody(c, tag);
      const name = uploadName(c, tag, seed);
      r = await upload(c.client, ep, name, body, spec);
      const stored = r.ok ? await storedUpload(servers, server, name) : undefined;
      correct = r.ok && stored !== undefined && sha256(stored) === sha256(body);
      if (r.ok && !correct && stored !== undefined) {
        const sent = Buffer.concat([...wire.keys()].sort((a, b) => a - b).map((b) => wire.get(b)!));
        storedIsWhatClientSent = sha256(sent) === sha256(stored);
      }
    }
    await opts.beforeClose?.(relay, r);
    const capped = r.timedOut || r.durationMs >= capMs - 1000;
    const out = (r.stdout + r.stderr).trim().split('\n').slice(-2).join(' | ').slice(0, 200);
    return {
      server,
      c,
      seed,
      loss,
      ok: r.ok && !capped,
      correct: correct && !capped,
      capped,
      ms: r.durationMs,
      relay: { up: { ...relay.stats.up }, down: { ...relay.stats.down } },
      relayPorts: [...relay.upstreamPorts],
      trace,
      ...(storedIsWhatClientSent !== undefined ? { storedIsWhatClientSent } : {}),
      detail: capped
        ? `capped at ${capMs / 1000} s`
        : storedIsWhatClientSent === true
          ? `stored object = the DATA the client sent, which is not its file (the client corrupted its own upload); ${out}`
          : storedIsWhatClientSent === false
            ? `stored object differs from the DATA the client sent; ${out}`
            : out,
      run: r,
    };
  } finally {
    await relay.close();
  }
}

export async function storedUpload(servers: Servers, server: Server, name: string): Promise<Buffer | undefined> {
  if (server === 'gateway') return getObject(servers.s3, servers.bucket, name);
  try {
    return fs.readFileSync(path.join(servers.tftpd!.dir, name));
  } catch {
    return undefined;
  }
}

export async function multipartUploadsFor(s3: TestS3, bucket: string, key: string): Promise<number> {
  const out = await s3.client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: key }));
  return (out.Uploads ?? []).filter((u) => u.Key === key).length;
}

/** The gateway's 'transfer finished' log line for a session that came from one of `ports`. */
export function finishedLine(gw: GatewayUnderTest, ports: readonly number[], op: 'read' | 'write' | Op): Record<string, unknown> | undefined {
  const want = op === 'get' ? 'read' : op === 'put' ? 'write' : op;
  return gw.logs.find((l) => l.msg === 'transfer finished' && ports.includes(Number(l.port)) && (l.op === undefined || l.op === want || l.op === op));
}

// ---------------------------------------------------------------------------------------------
// Concurrency

/** Runs at most `limit` jobs at once, in the order queued. */
export function limiter(limit: number): <T>(job: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async <T>(job: () => Promise<T>): Promise<T> => {
    if (active >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    active++;
    try {
      return await job();
    } finally {
      active--;
      waiting.shift()?.();
    }
  };
}

// ---------------------------------------------------------------------------------------------
// The comparison and the report

export type Verdict = 'ok' | 'GATEWAY FAILED' | 'GATEWAY WRONG BYTES' | 'GATEWAY SLOWER' | 'reference failed too';

export interface Pair {
  readonly c: LossCase;
  readonly seed: number;
  readonly tftpd: TransferOutcome;
  readonly gateway: TransferOutcome;
}

/**
 * The rule: every transfer tftpd-hpa completes, the gateway completes with the right bytes and is
 * not slower (within the tolerance). When tftpd-hpa failed, the gateway is not judged on it
 * (reported as 'reference failed too' or 'ok' if the gateway made it).
 */
export function verdict(p: Pair): Verdict {
  if (p.gateway.ok && !p.gateway.correct) return 'GATEWAY WRONG BYTES';
  if (!p.tftpd.correct) return p.gateway.correct ? 'ok' : 'reference failed too';
  if (!p.gateway.correct) return 'GATEWAY FAILED';
  const repeats = Math.max(clientRepeats(p.tftpd.trace), clientRepeats(p.gateway.trace));
  const [gatewayMs, tftpdMs] = [p.gateway, p.tftpd].map((o) => o.ms - storeWaitMs(o.trace, p.c.op));
  if (slowerThanAllowed(gatewayMs!, tftpdMs!, p.c.client, repeats)) return 'GATEWAY SLOWER';
  return 'ok';
}

export function describeVerdict(p: Pair): string {
  const v = verdict(p);
  const g = p.gateway;
  return `${caseLabel(p.c)} seed ${p.seed}: ${v} — tftpd-hpa ${cell(p.tftpd)}${p.tftpd.correct ? '' : ` (${p.tftpd.detail || 'no output'})`}, gateway ${cell(g)}${g.correct ? '' : ` (${g.detail || 'no output'})`}`;
}

/** A datagram as a trace shows it: its type, and the block of a DATA or ACK. */
function packetLabel(msg: Buffer): string {
  if (msg.length < 2) return 'short';
  const op = msg.readUInt16BE(0);
  const name = ['?', 'RRQ', 'WRQ', 'DATA', 'ACK', 'ERROR', 'OACK'][op] ?? `op ${op}`;
  return (op === 3 || op === 4) && msg.length >= 4 ? `${name} ${msg.readUInt16BE(2)}` : name;
}

/** Both servers' datagram traces of one seed, side by side in time order each (for a failed verdict). */
export function pairTraces(p: Pair): string {
  return [`tftpd-hpa (${cell(p.tftpd)}):`, ...p.tftpd.trace.map(traceLine), `gateway (${cell(p.gateway)}):`, ...p.gateway.trace.map(traceLine)].join('\n');
}

export function cell(o: TransferOutcome): string {
  const what = o.correct ? 'ok' : o.capped ? 'CAPPED' : o.ok ? 'WRONG BYTES' : 'FAILED';
  return `${what} ${(o.ms / 1000).toFixed(1)} s`;
}

function pad(s: string, n: number): string {
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)]!;
}

/** The side-by-side report: one line per (client, direction, seed), then per-case success rates and times. */
export function reportTable(pairs: readonly Pair[], title: string, capMs = CAP_MS): string[] {
  const lines: string[] = [title, `tolerance: ${TOLERANCE_TEXT}; a run capped at ${capMs / 1000} s counts as failed`];
  const head = `${pad('client', 9)}${pad('dir', 4)}${pad('size', 9)}${pad('seed', 6)}${pad('tftpd-hpa', 16)}${pad('gateway', 16)}${pad('drops up/down (hpa | gw)', 27)}verdict`;
  lines.push(head, '-'.repeat(head.length + 14));
  for (const p of pairs) {
    const drops = `${p.tftpd.relay.up.dropped}/${p.tftpd.relay.down.dropped} | ${p.gateway.relay.up.dropped}/${p.gateway.relay.down.dropped}`;
    lines.push(
      `${pad(p.c.client, 9)}${pad(p.c.op, 4)}${pad(sizeLabel(p.c.size), 9)}${pad(String(p.seed), 6)}${pad(cell(p.tftpd), 16)}${pad(cell(p.gateway), 16)}${pad(drops, 27)}${verdict(p)}`,
    );
  }
  lines.push('', 'summary (success rate, median / max time of the successful runs):');
  const keys = [...new Set(pairs.map((p) => `${p.c.client} ${p.c.op}`))];
  for (const k of keys) {
    const ps = pairs.filter((p) => `${p.c.client} ${p.c.op}` === k);
    const side = (sel: (p: Pair) => TransferOutcome): string => {
      const good = ps.map(sel).filter((o) => o.correct);
      const ms = good.map((o) => o.ms);
      return `${good.length}/${ps.length} ok, median ${(median(ms) / 1000).toFixed(1)} s, max ${ms.length ? (Math.max(...ms) / 1000).toFixed(1) : 'NaN'} s`;
    };
    const bad = ps.filter((p) => verdict(p).startsWith('GATEWAY')).map((p) => `${p.seed} (${verdict(p)})`);
    lines.push(`${pad(k, 14)} tftpd-hpa: ${pad(side((p) => p.tftpd), 38)} gateway: ${pad(side((p) => p.gateway), 38)} ${bad.length ? `gateway fails seeds ${bad.join(', ')}` : 'gateway meets the rule'}`);
  }
  return lines;
}
