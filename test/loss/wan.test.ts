import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { describeRun, download, type ClientName, type TransferSpec } from '../support/clients.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import type { LossProfile } from '../support/lossy-relay.js';
import { startRelayProcess } from '../support/relay-process.js';
import { putObject, testS3, type TestS3 } from '../support/s3.js';
import { finishedLine, KiB, sha256, startTftpd, type Tftpd } from './lib.js';

/**
 * WAN (issue 9): 40 ms ± 10 ms one-way delay each way, no loss, order kept (the relay's jitter is
 * a seeded function of time that changes slower than time passes, see LossyRelay), so the round
 * trip is 80 ms ± 20 ms. The relay runs in a child process (test/support/relay-process.ts) so the
 * in-process gateway's work cannot delay its timers; its own lateness is reported.
 *
 * - Lock-step (windowsize 1, blksize 1468): the gateway retransmits nothing (every retransmission
 *   on a lossless path is spurious: its timer fired before a jittery ACK arrived). Read from the
 *   session's 'transfer finished' log line (`retransmits`). atftp and busybox (busybox re-sends its
 *   ACK on its own 100 ms+ timer, which the gateway must not answer with DATA). tftpd-hpa's time on
 *   the same path is reported for reference.
 * - Windowed (atftp --option "windowsize 16", blksize 1468): throughput ≥ 90% of
 *   window × blksize / RTT with RTT = 80 ms (the path's mean round trip), measured conservatively
 *   on the client's wall clock (process start to exit). tftpd-hpa has no windowsize: gateway only.
 *   atftp's windowed receiver mis-handles reordering, which the relay never does here.
 */

const SEED = 4040;
const PATH: LossProfile = { loss: 0, delayMs: 40, jitterMs: 10 };
const RTT_S = (2 * (PATH.delayMs ?? 0)) / 1000;
const LOCKSTEP_SIZE = 96 * KiB;
const WINDOW = 16;
const BLKSIZE = 1468;
const WINDOWED_SIZE = 2 * 1024 * KiB;

describe('WAN: 40 ms ± 10 ms one-way, no loss', () => {
  let s3: TestS3;
  let bucket: string;
  let gw: TestGateway;
  let tftpd: Tftpd;
  const lock = Buffer.alloc(LOCKSTEP_SIZE, 0);
  const big = Buffer.alloc(WINDOWED_SIZE, 0);
  for (let i = 0; i < lock.length; i++) lock[i] = (i * 31 + (i >> 9)) & 0xff;
  for (let i = 0; i < big.length; i++) big[i] = (i * 17 + (i >> 11)) & 0xff;

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    await putObject(s3, bucket, 'lock.bin', lock);
    await putObject(s3, bucket, 'big.bin', big);
    gw = await startTestGateway(s3, bucket, ['--log-level', 'info']);
    tftpd = await startTftpd(new Map([['lock.bin', lock]]));
  });

  after(async () => {
    await gw?.stop();
    await tftpd?.stop();
    await s3?.cleanup();
  });

  async function through(port: number, client: ClientName, name: string, spec: TransferSpec) {
    // The relay runs in a process of its own: in this one its timers would share the event loop
    // with the gateway and fire late (extra jitter the path is not meant to have).
    const relay = await startRelayProcess({ target: { host: '127.0.0.1', port }, seed: SEED, up: PATH, down: PATH });
    try {
      const r = await download(client, { host: '127.0.0.1', port: relay.port }, name, { ...spec, timeoutMs: 60_000 });
      // The session's last line comes after the client's last ACK.
      const deadline = Date.now() + 5000;
      let s = await relay.stats();
      let line = finishedLine(gw, s.upstreamPorts, 'get');
      while (!line && port === gw.port && Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 50));
        line = finishedLine(gw, s.upstreamPorts, 'get');
      }
      s = await relay.stats();
      return { r, line, relay: s.stats };
    } finally {
      await relay.close();
    }
  }

  const late = (g: { relay: { up: { maxLateMs: number }; down: { maxLateMs: number } } }): string => Math.max(g.relay.up.maxLateMs, g.relay.down.maxLateMs).toFixed(1);

  for (const client of ['atftp', 'busybox'] as const) {
    test(`lock-step ${client} download (blksize ${BLKSIZE}, ${LOCKSTEP_SIZE / KiB} KiB): no spurious retransmission`, async (t) => {
      const [g, h] = await Promise.all([
        through(gw.port, client, 'lock.bin', { blksize: BLKSIZE }),
        through(tftpd.port, client, 'lock.bin', { blksize: BLKSIZE }),
      ]);
      const blocks = Math.floor(LOCKSTEP_SIZE / BLKSIZE) + 1;
      const line = g.line;
      t.diagnostic(
        `${client} lock-step: gateway ${g.r.durationMs} ms (${(g.r.durationMs / blocks).toFixed(1)} ms per block, retransmits ${String(line?.retransmits)}, ` +
          `client→server datagrams ${g.relay.up.forwarded} for ${blocks} blocks, relay late by ≤ ${late(g)} ms), tftpd-hpa ${h.r.durationMs} ms (${(h.r.durationMs / blocks).toFixed(1)} ms per block, server→client datagrams ${h.relay.down.forwarded})`,
      );
      assert.ok(g.r.ok, describeRun(g.r));
      assert.equal(g.r.sha256, sha256(lock));
      assert.ok(line, 'the gateway logged the session');
      assert.equal(line.retransmits, 0, `spurious retransmissions on a lossless path: ${JSON.stringify(line)}`);
      assert.equal(g.relay.down.forwarded, blocks + 1, `server→client datagrams: OACK + ${blocks} DATA, no more`);
    });
  }

  test(`windowed atftp download (windowsize ${WINDOW}, blksize ${BLKSIZE}, ${WINDOWED_SIZE / 1024 / KiB} MiB) reaches ≥ 90% of window × blksize / RTT`, async (t) => {
    const g = await through(gw.port, 'atftp', 'big.bin', { blksize: BLKSIZE, windowsize: WINDOW });
    const bound = (WINDOW * BLKSIZE) / RTT_S;
    const got = WINDOWED_SIZE / (g.r.durationMs / 1000);
    const server = g.line ? WINDOWED_SIZE / (Number(g.line.durationMs) / 1000) : NaN;
    t.diagnostic(
      `windowed: ${(got / 1000).toFixed(1)} kB/s on the client's clock (${g.r.durationMs} ms), ${(server / 1000).toFixed(1)} kB/s on the gateway's; ` +
        `bound ${WINDOW} × ${BLKSIZE} B / ${RTT_S * 1000} ms = ${(bound / 1000).toFixed(1)} kB/s → ${((100 * got) / bound).toFixed(1)}% (target ≥ 90%); ` +
        `retransmits ${String(g.line?.retransmits)}, options ${JSON.stringify(g.line?.options)}, relay late by ≤ ${late(g)} ms`,
    );
    assert.ok(g.r.ok, describeRun(g.r));
    assert.equal(g.r.sha256, sha256(big));
    assert.equal((g.line?.options as Record<string, string> | undefined)?.windowsize, String(WINDOW), 'windowsize granted');
    assert.ok(got >= 0.9 * bound, `${(got / 1000).toFixed(1)} kB/s < 90% of ${(bound / 1000).toFixed(1)} kB/s`);
  });
});
