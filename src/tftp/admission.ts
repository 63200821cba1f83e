import { errorMessage, tftpErrorFor, TransferError } from '../errors.js';
import type { GatewayMetrics } from '../metrics/metrics.js';
import { PolicyRefusal } from '../policy/access-policy.js';
import type { ClientLimiter } from '../policy/limits.js';
import { encodeError } from './protocol/packet.js';
import type { ClientAddress } from '../policy/client-address.js';
import type { TransferChannel, TransferChannels } from './channel.js';
import type { Logger } from '../ops/logger.js';
import type { TransferOperation } from './transfer-report.js';
import type { DatagramSocket, Peer } from './transport.js';

/** Why a request is not served: the metric reason, the error the client gets, and whether it gets it. */
export interface Refusal {
  /** The `reason` label of tftp_gateway_requests_refused_total. */
  readonly reason: string;
  readonly error: TransferError;
  /** False: counted and logged at debug, not answered (a flood must not become a flood of replies). */
  readonly answer: boolean;
}

/**
 * The refusal checks a request passes before a session is opened for it: the per-client request
 * rate, then (after a single-port client's previous transfer is replaced) draining, the session
 * limit (--max-sessions, this thread's table and the process's) and the per-client session cap.
 */
export class AdmissionChecks {
  constructor(
    private readonly maxSessions: number,
    private readonly limits: ClientLimiter,
  ) {}

  /**
   * The request rate limit: counted every time, answered (and logged at info) at most once a
   * second per client.
   */
  rateLimited(clientAddress: ClientAddress): Refusal | undefined {
    if (this.limits.admit(clientAddress) !== 'rate-limited') return undefined;
    const answer = this.limits.shouldAnswerRefusal(clientAddress);
    return { reason: 'rate-limited', error: new TransferError('BUSY', 'request rate limit'), answer };
  }

  /** Draining and the session limits; undefined: admitted. `sessionsHere`: this dispatcher's table. */
  refusal(clientAddress: ClientAddress, sessionsHere: number, draining: boolean): Refusal | undefined {
    if (draining) return { reason: 'shutdown', error: new TransferError('SHUTTING_DOWN', 'draining'), answer: true };
    if (sessionsHere >= this.maxSessions || this.limits.totalSessions >= this.maxSessions) {
      return { reason: 'busy', error: new TransferError('BUSY', 'session limit reached'), answer: true };
    }
    if (this.limits.atSessionCap(clientAddress)) {
      return { reason: 'client-busy', error: new TransferError('BUSY', 'per-client session limit reached'), answer: true };
    }
    return undefined;
  }
}

/** A request that was admitted and is still opening (or failed to open). */
export interface OpeningRequest {
  readonly client: Peer;
  readonly operation: TransferOperation;
  /** Sanitised. */
  readonly filename: string;
  /** Its channel, once there is one (per-transfer mode: after the socket is bound). */
  readonly channel: TransferChannel | undefined;
  readonly listen: { readonly socket: DatagramSocket };
}

/** How a refusal is reported: a `request refused` log line, the refusal counter, an ERROR to the client. */
export class Refusals {
  constructor(
    private readonly metrics: GatewayMetrics,
    private readonly logger: Logger,
    private readonly channels: TransferChannels,
  ) {}

  /** A request refused before any session exists: answered from the socket it came to (unless `answer` is false). */
  beforeOpening(socket: DatagramSocket, from: Peer, operation: TransferOperation, filename: string, refusal: Refusal): void {
    this.logger[refusal.answer ? 'info' : 'debug'](
      { client: from.address, port: from.port, op: operation, file: filename, refused: refusal.reason, detail: refusal.error.message },
      'request refused',
    );
    this.metrics.requestsRefused.inc({ reason: refusal.reason });
    if (refusal.answer) {
      const wire = tftpErrorFor(refusal.error);
      this.channels.sendError(socket, from, wire.code, wire.message);
    }
  }

  /** Opening the request failed (storage, policy, no transfer socket): logged and refused. */
  openFailed(request: OpeningRequest, err: unknown): void {
    const reason = refusalReason(err);
    this.logger.info(
      { client: request.client.address, port: request.client.port, op: request.operation, file: request.filename, refused: reason, detail: errorMessage(err) },
      'request refused',
    );
    this.whileOpening(request, reason, err);
  }

  /** A request still opening at the stall timeout: logged (warn) and refused. */
  stalled(request: OpeningRequest): void {
    this.logger.warn(
      { client: request.client.address, port: request.client.port, op: request.operation, file: request.filename, refused: 'stalled' },
      'request refused',
    );
    this.whileOpening(request, 'stalled', new TransferError('STORAGE_UNAVAILABLE', 'request still opening at the stall timeout'));
  }

  /**
   * Refuses an opening request on its own channel (per-transfer: from the transfer's port), or
   * from the listening socket when it has none yet. Counted; the caller logs.
   */
  whileOpening(request: OpeningRequest, reason: string, err: unknown): void {
    this.metrics.requestsRefused.inc({ reason });
    const wire = tftpErrorFor(err);
    if (request.channel) request.channel.send([encodeError(wire.code, wire.message)]);
    else this.channels.sendError(request.listen.socket, request.client, wire.code, wire.message);
  }
}

/** The metric reason of a refused request: a bounded set (policy reasons and error codes). */
function refusalReason(err: unknown): string {
  if (err instanceof PolicyRefusal) return err.reason;
  if (err instanceof TransferError) return err.code.toLowerCase().replace(/_/g, '-');
  return 'storage-error';
}
