import dgram from 'node:dgram';
import type { Dispatcher, ListenEndpoint } from './dispatcher.js';
import type { Logger } from '../ops/logger.js';
import { literalAddressLookup, UdpSocket } from './transport.js';

/** A listening endpoint and the dgram socket behind it. */
export interface UdpListenEndpoint extends ListenEndpoint {
  readonly udp: UdpSocket;
}

/**
 * Binds one listen address and routes its datagrams to `dispatcher`. With `reusePort` (worker
 * threads, Node >= 22.12) every worker binds the same address and port: the kernel keeps each
 * client flow (source ip:port) on one socket, and replies leave from the listen port.
 */
export async function bindListenSocket(
  id: number,
  host: string,
  port: number,
  dispatcher: Dispatcher,
  logger: Logger,
  reusePort = false,
): Promise<UdpListenEndpoint> {
  const ipv6 = host.includes(':');
  const socket = dgram.createSocket({
    type: ipv6 ? 'udp6' : 'udp4',
    lookup: literalAddressLookup,
    recvBufferSize: 4 * 1024 * 1024,
    sendBufferSize: 4 * 1024 * 1024,
    ...(reusePort ? { reusePort: true } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind({ address: host, port, exclusive: true }, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  // Send failures (e.g. ENOBUFS under load) arrive here; at most one log line a second.
  let lastErrorLog = 0;
  socket.on('error', (err) => {
    const now = Date.now();
    if (now - lastErrorLog < 1000) return;
    lastErrorLog = now;
    logger.warn({ err: err.message }, 'UDP socket error');
  });
  const udp = new UdpSocket(socket);
  const endpoint: UdpListenEndpoint = { socket: udp, udp, id };
  socket.on('message', (msg, rinfo) => dispatcher.handleDatagram(endpoint, msg, rinfo));
  return endpoint;
}
