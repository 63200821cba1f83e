import type { AccessPolicyOptions, Resolution } from '../policy/access-policy.js';
import { ObjectAccess } from '../core/object-access.js';
import type { ClientAddress } from '../policy/client-address.js';
import { buildOack, negotiateOptions, type NegotiatedOptions } from './protocol/options.js';
import { Opcode, type RequestPacket } from './protocol/packet.js';
import { TransferError } from '../errors.js';
import type { ReadSource, UploadSink } from './session/types.js';
import { NetasciiSource } from '../storage/object-source.js';
import type { RangeCache, UploadStore } from '../storage/range-cache.js';

export interface RequestPolicy {
  /** Who may read or write what, and how names become keys (src/policy). */
  readonly access: AccessPolicyOptions;
  /** Options never granted (tftp-hpa --refuse). */
  readonly refusedOptions: ReadonlySet<string>;
  readonly allowOverwrite: boolean;
  readonly maxUploadSize: number;
  readonly maxBlksize: number;
  readonly maxWindowsize: number;
  readonly readAhead: number;
}

export interface PreparedRead {
  readonly kind: 'read';
  readonly key: string;
  readonly mode: 'octet' | 'netascii';
  readonly options: NegotiatedOptions;
  readonly oack: Map<string, string>;
  readonly source: ReadSource;
}

export interface PreparedWrite {
  readonly kind: 'write';
  readonly key: string;
  readonly mode: 'octet' | 'netascii';
  readonly options: NegotiatedOptions;
  readonly oack: Map<string, string>;
  readonly sink: UploadSink;
}

export type PreparedTransfer = PreparedRead | PreparedWrite;

/** Validates the transfer mode; `mail` (obsolete) and unknown modes are refused. */
function transferMode(mode: string): 'octet' | 'netascii' {
  if (mode === 'octet' || mode === 'netascii') return mode;
  throw new TransferError('BAD_MODE', `unsupported mode '${mode}'`);
}

/**
 * Turns a request into a ready transfer: mode, path → key, option negotiation, and the storage
 * side (HEAD through the cache for reads, an upload for writes). Throws TransferError.
 */
export class RequestOpener {
  /** Names, policy and pinned object versions: the core the HTTP front end reads through too. */
  readonly objects: ObjectAccess;

  constructor(
    private readonly policy: RequestPolicy,
    cache: RangeCache,
    private readonly store: UploadStore,
    /** Whether S3 is believed reachable (an upload then skips the probe it needs during an outage). */
    private readonly health: { readonly reachable: boolean } = { reachable: true },
  ) {
    this.objects = new ObjectAccess(policy.access, cache, policy.readAhead);
  }

  /**
   * Where a request from `client` leads: client rules, name normalisation, map rules, the client's
   * key prefix, write locations. Throws PolicyRefusal (a TransferError with a metric reason).
   */
  resolve(request: RequestPacket, client: ClientAddress): Resolution {
    return this.objects.resolve(request.filename, request.opcode === Opcode.RRQ ? 'read' : 'write', client);
  }

  async open(request: RequestPacket, client: ClientAddress): Promise<PreparedTransfer> {
    const mode = transferMode(request.mode);
    const { key } = this.resolve(request, client);
    const options = negotiateOptions(request.options, {
      maxBlksize: this.policy.maxBlksize,
      maxWindowsize: this.policy.maxWindowsize,
      refused: this.policy.refusedOptions,
    });
    return request.opcode === Opcode.RRQ
      ? this.openRead(request, key, mode, options)
      : this.openWrite(request, key, mode, options);
  }

  private async openRead(
    request: RequestPacket,
    key: string,
    mode: 'octet' | 'netascii',
    options: NegotiatedOptions,
  ): Promise<PreparedRead> {
    // Stale (S3 failing, within --stale-if-error) is served like fresh: same version for the whole transfer.
    const raw = (await this.objects.openKey(key)).reader();
    const source = mode === 'netascii' ? new NetasciiSource(raw) : raw;
    // tsize=0 is left out: some clients (curl) refuse an OACK carrying it, so they could not fetch
    // an empty file at all; a client that asked gets the size from the transfer itself.
    const tsize = source.size !== undefined && source.size > 0 ? source.size : undefined;
    return { kind: 'read', key, mode, options, oack: buildOack(request.options, options, tsize), source };
  }

  private async openWrite(
    request: RequestPacket,
    key: string,
    mode: 'octet' | 'netascii',
    options: NegotiatedOptions,
  ): Promise<PreparedWrite> {
    if (options.requestedTsize !== undefined && options.requestedTsize > this.policy.maxUploadSize) {
      throw new TransferError('TOO_LARGE', `announced size ${options.requestedTsize} exceeds the upload limit`);
    }
    // Fast refusal before any data moves; the conditional write at completion closes the race. While
    // S3 is down the same lookup is the probe that fails the upload at once ("Storage unavailable")
    // rather than after the client has sent everything.
    if (!this.policy.allowOverwrite || !this.health.reachable) {
      const exists = await this.store.head(key).then(
        () => true,
        (err: unknown) => {
          if (err instanceof TransferError && err.code === 'NOT_FOUND') return false;
          throw err;
        },
      );
      if (exists && !this.policy.allowOverwrite) throw new TransferError('EXISTS', `object ${key} exists and overwrite is off`);
    }
    const sink = this.store.createUpload(key, { ifNoneMatch: !this.policy.allowOverwrite });
    const oack = buildOack(request.options, options, options.requestedTsize);
    return { kind: 'write', key, mode, options, oack, sink };
  }

  /** Called after an upload completes, so reads see the new object at once. */
  uploaded(key: string): void {
    this.objects.invalidate(key);
  }
}
