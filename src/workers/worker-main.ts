/**
 * A worker thread of the gateway (--workers N > 1): its own UDP sockets on the listen addresses
 * (SO_REUSEPORT: the kernel keeps each client flow on one worker), its own dispatcher and
 * sessions, and the main thread's block cache and S3 uploads through its MessagePort.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { loadConfig } from '../config/config.js';
import { SharedClientLimits } from '../policy/shared-limits.js';
import { GatewayMetrics } from '../metrics/metrics.js';
import { systemClock } from '../tftp/session/types.js';
import { dispatcherOptions, requestPolicy } from '../gateway/compose.js';
import { Dispatcher } from '../tftp/dispatcher.js';
import { reportTransfers, type TransferFinished } from '../tftp/transfer-report.js';
import { bindListenSocket, type UdpListenEndpoint } from '../tftp/listen.js';
import { RequestOpener } from '../tftp/requests.js';
import { UdpTransferSocketFactory } from '../tftp/transport.js';
import { MainLink, RemoteCache, RemoteStore } from './worker-client.js';
import type { MainToWorker, WorkerInit } from './worker-protocol.js';
import { errorMessage } from '../errors.js';
import { HttpFrontEnd } from '../http/http-front-end.js';
import { httpFrontEndOptions } from '../gateway/compose.js';

const port = parentPort;
if (!port) throw new Error('worker-main runs as a worker thread only');
const init = workerData as WorkerInit;
const link = new MainLink(port);

/**
 * Log lines go to the main thread in batches (one a tick), which writes them to its own destination;
 * transfer-finished records go with them (the gateway's own subscribers get them there).
 */
let pendingLines: string[] = [];
let pendingTransfers: TransferFinished[] = [];
let flushScheduled = false;
const flushLogs = (): void => {
  flushScheduled = false;
  if (pendingLines.length === 0 && pendingTransfers.length === 0) return;
  const lines = pendingLines;
  const transfers = pendingTransfers;
  pendingLines = [];
  pendingTransfers = [];
  link.post(transfers.length > 0 ? { t: 'log', lines, transfers } : { t: 'log', lines });
};
const scheduleFlush = (): void => {
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushLogs);
  }
};

async function main(): Promise<void> {
  const config = loadConfig(init.argv, init.env);
  const logger = pino(
    { level: config.logLevel, base: { service: 'tftp-gateway', worker: init.slot }, timestamp: pino.stdTimeFunctions.isoTime },
    {
      write(line: string) {
        pendingLines.push(line.endsWith('\n') ? line.slice(0, -1) : line);
        scheduleFlush();
      },
    },
  );
  const metrics = new GatewayMetrics({ defaultMetrics: false });
  const s3Reachable = new Int32Array(init.s3Reachable);
  // Slot 1: the main thread's read-ahead advice (ranges), measured on S3.
  const cache = new RemoteCache(link, config.rangeSize, () => metrics.cacheHits.inc(), () => Atomics.load(s3Reachable, 1));
  const store = new RemoteStore(link);
  const opener = new RequestOpener(requestPolicy(config), cache, store, {
    get reachable() {
      return Atomics.load(s3Reachable, 0) === 1;
    },
  });
  // Per-client limits and --max-sessions hold for the process, not per worker.
  const clientLimits = new SharedClientLimits(init.limits, {
    maxSessionsPerClient: config.maxSessionsPerClient,
    ratePerSecond: config.rateLimit,
    burst: config.rateBurst,
    unverifiedBytesPerSecond: config.unverifiedBytesPerSecond,
  });
  const dispatcher = new Dispatcher(
    { ...dispatcherOptions(config), clientLimits, worker: init.slot },
    opener,
    metrics,
    logger,
    systemClock,
    new UdpTransferSocketFactory(config.portRange, logger),
  );
  // This worker's metrics (summed by the main thread at each scrape) and log lines.
  reportTransfers(dispatcher.transfers, metrics, logger, () => dispatcher.progress());
  dispatcher.transfers.onFinished((record) => {
    pendingTransfers.push(record);
    scheduleFlush();
  });
  dispatcher.peers = {
    changed: (open, key) => link.post({ t: 'session', open, key }),
    forward: (endpoint, msg, from) => {
      link.post({ t: 'stray', endpoint, msg: new Uint8Array(msg), address: from.address, port: from.port });
      return true;
    },
  };

  let httpBoot: HttpFrontEnd | undefined;
  const endpoints: UdpListenEndpoint[] = [];
  const closeSockets = (): Promise<void> =>
    Promise.all(endpoints.map((e) => new Promise<void>((resolve) => e.udp.socket.close(() => resolve())))).then(() => undefined);

  port!.on('message', (message: MainToWorker) => {
    if (link.answer(message) || cache.onMessage(message) || store.onMessage(message)) return;
    switch (message.t) {
      case 'foreign': {
        const endpoint = endpoints[message.endpoint];
        if (endpoint) dispatcher.handleDatagram(endpoint, Buffer.from(message.msg), { address: message.address, port: message.port }, true);
        return;
      }
      case 'replaceClient':
        dispatcher.replaceClient(message.key);
        return;
      case 'endLingering':
        dispatcher.endLingering();
        return;
      case 'drain':
        dispatcher.startDraining();
        httpBoot?.startDraining();
        return;
      case 'abortAll':
        dispatcher.abortAll();
        httpBoot?.abortAll();
        return;
      case 'metrics':
        metrics.registry.getMetricsAsJSON().then(
          (value) => link.post({ t: 'reply', rid: message.rid, ok: true, value }),
          (err: unknown) => link.post({ t: 'reply', rid: message.rid, ok: false, error: { code: 'STORAGE_ERROR', message: String(err) } }),
        );
        return;
      case 'settle':
        void dispatcher.settled().then(() => link.post({ t: 'reply', rid: message.rid, ok: true }));
        return;
      case 'close':
        // Sessions are over by now (the main thread drained or aborted them): close and say so.
        dispatcher.endLingering();
        // dgram hands a datagram to the kernel a tick after send(): let the last ERRORs leave first.
        void new Promise<void>((resolve) => setImmediate(resolve))
          .then(() => Promise.all([closeSockets(), httpBoot?.close()]))
          .then(() => {
          cache.close();
          flushLogs();
          link.post({ t: 'reply', rid: message.rid, ok: true });
          link.close();
          port!.close();
        });
        return;
      default:
        return;
    }
  });

  for (const [id, addr] of init.listen.entries()) {
    endpoints.push(await bindListenSocket(id, addr.host, addr.port, dispatcher, logger, true));
  }
  if (init.httpBootListen.length > 0) {
    httpBoot = await HttpFrontEnd.start(
      { ...httpFrontEndOptions(config, config.workers), listen: init.httpBootListen },
      { objects: opener.objects, limits: clientLimits, metrics, logger },
    );
    httpBoot.onActivity = (active) => link.post({ t: 'httpActive', active });
  }
  link.post({ t: 'ready', addresses: endpoints.map((e) => e.udp.socket.address()), httpAddresses: httpBoot?.addresses ?? [] });
}

main().catch((err: unknown) => {
  flushLogs();
  link.post({ t: 'startFailed', message: errorMessage(err) });
  port.close();
});
