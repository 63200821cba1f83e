#!/usr/bin/env node
import process from 'node:process';
import { ConfigError, describeConfig, loadConfig, usage } from './config/config.js';
import { Gateway } from './server/gateway.js';
import { createLogger } from './server/logger.js';

/** Composition root: parse configuration, start the gateway, wire signals to a graceful drain. */
async function serve(argv: readonly string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${usage()}\n`);
    return;
  }
  // The SDK must never reach for the instance metadata address unless an operator wants it
  // (on ECS, credentials come from the container endpoint, not IMDS).
  process.env.AWS_EC2_METADATA_DISABLED ??= 'true';
  let config;
  try {
    config = loadConfig(argv);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`tftp-gateway: ${err.message}\n\nRun 'tftp-gateway serve --help' for the flags.\n`);
      process.exitCode = 2;
      return;
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  logger.info({ config: describeConfig(config) }, 'starting tftp-gateway');
  let gateway: Gateway;
  try {
    gateway = await Gateway.start(config, { logger });
  } catch (err) {
    logger.fatal({ err: err instanceof Error ? err.message : String(err) }, 'could not start');
    process.exitCode = 1;
    return;
  }
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals === 1) {
      logger.info({ signal, drainTimeoutS: config.drainTimeoutS }, 'stopping: draining transfers');
      gateway.stop().then(
        () => process.exit(0),
        (err: unknown) => {
          logger.error({ err: String(err) }, 'error while stopping');
          process.exit(1);
        },
      );
    } else {
      logger.warn({ signal }, 'second signal: aborting transfers now');
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
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`tftp-gateway: a TFTP server for files in Amazon S3\n\nCommands:\n  serve    run the gateway\n\n${usage()}\n`);
      return;
    default:
      process.stderr.write(`tftp-gateway: unknown command '${command}'. Commands: serve\n`);
      process.exitCode = 2;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`tftp-gateway: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
