import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, afterEach, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { TaskProtection } from '../../src/ops/task-protection.js';
import { putObject, testS3, type TestS3 } from '../support/s3.js';
import { slowGet, startGateway } from './helpers.js';
import { sleep, until } from '../support/wait.js';

interface AgentCall {
  readonly method: string;
  readonly url: string;
  readonly body: { ProtectionEnabled: boolean; ExpiresInMinutes?: number };
  readonly at: number;
}

/** Stands in for the ECS agent's task-protection endpoint on 127.0.0.1. */
class FakeAgent {
  readonly calls: AgentCall[] = [];
  /** What the next answers are: 'ok', 'http-500', 'failure' (HTTP 200 with a failure body). */
  mode: 'ok' | 'http-500' | 'failure' = 'ok';
  private readonly server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString() || '{}') as AgentCall['body'];
      this.calls.push({ method: req.method ?? '', url: req.url ?? '', body, at: Date.now() });
      if (this.mode === 'http-500') {
        res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":{"Code":"ServerException","Message":"boom"}}');
      } else if (this.mode === 'failure') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"failure":{"Arn":"arn:task","Reason":"TASK_NOT_VALID"}}');
      } else {
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify({ protection: { ProtectionEnabled: body.ProtectionEnabled, TaskArn: 'arn:aws:ecs:us-east-1:1:task/c/t' } }),
        );
      }
    });
  });

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/api/task-id`;
  }

  bodies(): AgentCall['body'][] {
    return this.calls.map((c) => c.body);
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

function captureLogger(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  return { logger, lines };
}

describe('scale-in protection against a local stand-in for the ECS agent', () => {
  let agent: FakeAgent;
  let uri: string;
  let protection: TaskProtection | undefined;

  before(async () => {
    agent = new FakeAgent();
    uri = await agent.start();
  });
  afterEach(async () => {
    await protection?.close();
    protection = undefined;
    agent.calls.length = 0;
    agent.mode = 'ok';
  });
  after(() => agent.close());

  test('enabled when sessions become active, once; disabled after the idle debounce', async () => {
    const { logger, lines } = captureLogger();
    protection = new TaskProtection({ agentUri: uri, logger, expiresInMinutes: 30, idleDelayMs: 150 });
    protection.update(1);
    protection.update(2);
    protection.update(1);
    await until(() => protection!.isProtected, 2000, 'protection');
    assert.equal(agent.calls.length, 1);
    assert.equal(agent.calls[0]!.method, 'PUT');
    assert.equal(agent.calls[0]!.url, '/api/task-id/task-protection/v1/state');
    assert.deepEqual(agent.calls[0]!.body, { ProtectionEnabled: true, ExpiresInMinutes: 30 });

    // Idle for 60 ms, then busy again within the debounce: nothing is sent for that idle spell...
    protection.update(0);
    await sleep(60);
    protection.update(1);
    // ...so after idling for good, the next call is the one disable, a whole debounce after this
    // idle (a disable from the first spell would come ~90 ms in and be caught here, or be a 3rd call).
    const idleAt = Date.now();
    protection.update(0);
    await until(() => !protection!.isProtected, 2000, 'unprotected');
    assert.equal(agent.calls.length, 2, JSON.stringify(agent.bodies()));
    assert.deepEqual(agent.calls[1]!.body, { ProtectionEnabled: false });
    assert.ok(agent.calls[1]!.at - idleAt >= 140, `disabled ${agent.calls[1]!.at - idleAt} ms after going idle for good (debounce 150 ms)`);
    assert.ok(lines.some((l) => l.msg === 'scale-in protection enabled'));
    assert.ok(lines.some((l) => l.msg === 'scale-in protection disabled'));
  });

  test('renewed before it expires while sessions stay active', async () => {
    const { logger } = captureLogger();
    protection = new TaskProtection({ agentUri: uri, logger, renewAfterMs: 100, idleDelayMs: 10_000 });
    protection.update(3);
    await until(() => agent.calls.length >= 3, 3000, 'two renewals');
    for (const body of agent.bodies()) assert.deepEqual(body, { ProtectionEnabled: true, ExpiresInMinutes: 60 });
    const gaps = agent.calls.slice(1).map((c, i) => c.at - agent.calls[i]!.at);
    for (const gap of gaps) assert.ok(gap >= 90, `renewal gap ${gap} ms`);
  });

  test('failures are only logged, and retried while still needed', async () => {
    const { logger, lines } = captureLogger();
    agent.mode = 'http-500';
    protection = new TaskProtection({ agentUri: uri, logger, retryDelayMs: 100, idleDelayMs: 100 });
    protection.update(1);
    await until(() => agent.calls.length >= 2, 3000, 'a retry');
    assert.equal(protection.isProtected, false);
    assert.ok(lines.some((l) => l.msg === 'scale-in protection: the ECS agent refused the update' && l.status === 500));
    agent.mode = 'failure';
    const n = agent.calls.length;
    await until(() => agent.calls.length > n, 3000, 'another retry');
    assert.equal(protection.isProtected, false, 'a failure body is a failure');
    agent.mode = 'ok';
    await until(() => protection!.isProtected, 3000, 'protection once the agent accepts');
    // Idle while unprotected-or-not: the disable happens and failures there are logged too.
    agent.mode = 'http-500';
    protection.update(0);
    await until(() => agent.bodies().some((b) => b.ProtectionEnabled === false), 3000, 'a disable attempt');
    assert.equal(protection.isProtected, true, 'still protected: the agent refused');
    agent.mode = 'ok';
    await until(() => !protection!.isProtected, 3000, 'the disable retried');
  });

  test('an unreachable agent is logged, never thrown', async () => {
    const { logger, lines } = captureLogger();
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    protection = new TaskProtection({ agentUri: `http://127.0.0.1:${port}`, logger, retryDelayMs: 50, requestTimeoutMs: 500 });
    protection.update(1);
    await until(() => lines.filter((l) => l.msg === 'scale-in protection: could not reach the ECS agent').length >= 2, 3000, 'two attempts');
    assert.equal(protection.isProtected, false);
  });
});

describe('the gateway drives scale-in protection from its session count', () => {
  let s3: TestS3;
  let bucket: string;
  let agent: FakeAgent;

  before(async () => {
    s3 = await testS3();
    bucket = await s3.createBucket();
    await putObject(s3, bucket, 'f.bin', randomBytes(100 * 1024));
    agent = new FakeAgent();
  });
  after(async () => {
    await agent?.close();
    await s3?.cleanup();
  });

  test('a transfer protects the task; idle afterwards unprotects it; off without ECS_AGENT_URI', async () => {
    const uri = await agent.start();
    const gw = await startGateway(s3, bucket, ['--scale-in-protection'], {
      env: { ECS_AGENT_URI: uri },
      taskProtection: { idleDelayMs: 200 },
    });
    try {
      let blocks = 0;
      const download = slowGet(gw.port, 'f.bin', { blksize: 512, ackDelayMs: 2, onBlock: (n) => (blocks = n) });
      await until(() => blocks > 0, 5000, 'the download to start');
      await until(() => agent.calls.length === 1, 3000, 'the enable call');
      assert.deepEqual(agent.calls[0]!.body, { ProtectionEnabled: true, ExpiresInMinutes: 60 });
      assert.equal((await download).error, undefined);
      await until(() => agent.calls.length === 2, 3000, 'the disable call');
      assert.deepEqual(agent.calls[1]!.body, { ProtectionEnabled: false });
    } finally {
      await gw.stop();
    }
    const off = await startGateway(s3, bucket, ['--scale-in-protection'], { env: {} });
    try {
      assert.ok(off.lines.some((l) => String(l.msg).startsWith('scale-in protection requested but ECS_AGENT_URI is not set')));
    } finally {
      await off.stop();
    }
  });
});
