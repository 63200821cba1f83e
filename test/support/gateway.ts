import { pino } from 'pino';
import { loadConfig } from '../../src/config/config.js';
import { Gateway } from '../../src/gateway/gateway.js';
import type { TransferFinished } from '../../src/tftp/transfer-report.js';
import type { TestS3 } from './s3.js';

/** Worker threads for test gateways: TFTPGW_TEST_WORKERS (default 1, the single-threaded path). */
export function testWorkers(): string {
  return process.env.TFTPGW_TEST_WORKERS ?? '1';
}

/** The flags that point a gateway at the test S3 server's `bucket` (path style, checksums only when required). */
export function s3Flags(s3: TestS3, bucket: string): string[] {
  return ['--s3-bucket', bucket, '--s3-endpoint', s3.endpoint, '--s3-region', s3.region, '--s3-force-path-style', '--s3-checksum', 'when-required'];
}

export interface TestGateway {
  readonly gateway: Gateway;
  /** UDP port of the first listen address. */
  readonly port: number;
  readonly host: string;
  readonly bucket: string;
  /** Lines the gateway logged (parsed JSON), for assertions on log output. */
  readonly logs: Record<string, unknown>[];
  /** Every finished transfer's record (gateway.transfers, worker threads' too), in order. */
  readonly transfers: TransferFinished[];
  stop(drainMs?: number): Promise<void>;
}

/**
 * Starts a real gateway on loopback (ephemeral UDP port, HTTP off unless asked) against the test
 * S3 server, configured exactly as the CLI would be: `flags` are command-line flags.
 */
export async function startTestGateway(s3: TestS3, bucket: string, flags: readonly string[] = []): Promise<TestGateway> {
  const config = loadConfig(
    [
      '--listen', '127.0.0.1:0',
      '--http-listen', 'off',
      ...s3Flags(s3, bucket),
      '--cache-size', '256MiB',
      '--log-level', 'debug',
      // TFTPGW_TEST_WORKERS=2 runs the suites on worker threads; a test's own --workers wins.
      '--workers', testWorkers(),
      ...flags,
    ],
    {},
  );
  const logs: Record<string, unknown>[] = [];
  const logger = pino(
    { level: config.logLevel },
    {
      write(line: string) {
        try {
          logs.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // not JSON: ignore
        }
      },
    },
  );
  const gateway = await Gateway.start(config, { logger, credentials: s3.credentials, defaultMetrics: false });
  const transfers: TransferFinished[] = [];
  gateway.transfers.onFinished((t) => transfers.push(t));
  const addr = gateway.udpAddresses[0]!;
  return {
    gateway,
    port: addr.port,
    host: addr.address,
    bucket,
    logs,
    transfers,
    stop: (drainMs = 0) => gateway.stop(drainMs),
  };
}
