#!/usr/bin/env node
import process from 'node:process';
import { ConfigError, describeConfig, usage, type GatewayConfig } from './config/config.js';
import type { AccessPolicyOptions } from './policy/access-policy.js';
import { describeAccessPolicy } from './policy/from-config.js';
import { loadGatewaySetup } from './gateway/compose.js';
import { Gateway } from './gateway/gateway.js';
import { closeLogs, createLogger } from './ops/logger.js';
import { errorMessage } from './errors.js';

/** Grace after the drain deadline for aborting uploads and closing (100 s + 12 s + log close < 120 s). */
const STOP_GRACE_MS = 12_000;
/** After a second signal: how long aborting uploads may take before the process exits anyway. */
const FORCED_STOP_MS = 10_000;

/** The configuration summary for the start line: no secrets (an endpoint URL's user:password is masked). */
function configSummary(config: GatewayConfig, access: AccessPolicyOptions): Record<string, unknown> {
  const summary = { ...describeConfig(config), ...describeAccessPolicy(access) };
  for (const [k, v] of Object.entries(summary)) {
    if (typeof v === 'string' && /^[a-z][a-z0-9+.-]*:\/\/[^/@]*@/i.test(v)) summary[k] = v.replace(/\/\/[^/@]*@/, '//***@');
  }
  return summary;
}

/** Composition root: parse configuration, start the gateway, wire signals to a graceful drain. */
async function serve(argv: readonly string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${usage()}\n`);
    return;
  }
  // The SDK must never reach for the instance metadata address unless an operator wants it
  // (on ECS, credentials come from the container endpoint, not IMDS).
  process.env.AWS_EC2_METADATA_DISABLED ??= 'true';
  let config: GatewayConfig;
  let access: AccessPolicyOptions;
  try {
    ({ config, access } = loadGatewaySetup(argv));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tftp-gateway: ${err.message}\n\nRun 'tftp-gateway serve --help' for the flags.\n`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  logger.info({ config: configSummary(config, access) }, 'starting tftp-gateway');
  let gateway: Gateway;
  try {
    gateway = await Gateway.start(config, { logger });
  } catch (err) {
    if (err instanceof ConfigError) {
      // A configuration only the start can check (an unusable --cache-dir): one clear message.
      logger.fatal({ err: err.problems.join('; ') }, 'could not start: invalid configuration');
      process.stderr.write(`tftp-gateway: ${err.message}\n`);
      process.exitCode = 2;
      return;
    }
    logger.fatal({ err: errorMessage(err) }, 'could not start');
    process.exitCode = 1;
    return;
  }
  let signals = 0;
  let exitCode = 0;
  let exiting = false;
  /** Exits once, after the log lines are written out. */
  const exit = (code: number): void => {
    if (exiting) return;
    exiting = true;
    void closeLogs(logger).then(() => process.exit(code));
  };
  const watchdog = (ms: number, what: string): void => {
    setTimeout(() => {
      if (exiting) return;
      logger.error({ afterMs: ms }, `${what}: exiting without waiting any longer`);
      exit(1);
    }, ms).unref();
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals === 1) {
      // Stop accepting (ERROR 0 "Server shutting down"), /readyz unready, transfers finish until the
      // deadline, then whatever is left is aborted (uploads aborted, never half-written).
      logger.info({ signal, drainTimeoutS: config.drainTimeoutS, active: gateway.dispatcher.activeSessions }, 'stopping: draining transfers');
      watchdog(config.drainTimeoutS * 1000 + STOP_GRACE_MS, 'stop took too long');
      gateway.stop().then(
        () => exit(exitCode),
        (err: unknown) => {
          logger.error({ err: String(err) }, 'error while stopping');
          exit(1);
        },
      );
    } else if (signals === 2) {
      // Abort now; the stop in progress then waits for the upload aborts and exits.
      logger.warn({ signal, active: gateway.dispatcher.activeSessions }, 'second signal: aborting transfers now');
      exitCode = 128 + (signal === 'SIGINT' ? 2 : 15);
      watchdog(FORCED_STOP_MS, 'aborting transfers took too long');
      gateway.abortNow();
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2);
  switch (command) {
    case 'serve':
      await serve(rest);
      return;
    case 'map-test': {
      const { mapTestCommand } = await import('./commands/map-test.js');
      const write = (t: string): void => void process.stdout.write(t);
      process.exitCode = await mapTestCommand(rest, process.stdin, write, (t) => void process.stderr.write(t));
      return;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`tftp-gateway: a TFTP server for files in Amazon S3\n\nCommands:\n  serve    run the gateway\n  map-test read file names (and client IPs) on stdin, print the keys they map to\n\n${usage()}\n`);
      return;
    default:
      process.stderr.write(`tftp-gateway: unknown command '${command}'. Commands: serve, map-test\n`);
      process.exitCode = 2;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`tftp-gateway: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
