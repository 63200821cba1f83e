import { resolveRequest, type AccessPolicyOptions, type Operation, type Resolution } from '../policy/access-policy.js';
import type { ClientAddress } from '../policy/client-address.js';
import { CachedObjectSource } from '../storage/object-source.js';
import type { RangeCache } from '../storage/range-cache.js';
import type { ObjectInfo } from '../storage/s3-store.js';

/**
 * The protocol-neutral core both front ends (TFTP, HTTP) read through: a client's name becomes a
 * key under the one access policy, the key's current version is looked up through the shared cache
 * (single flight, stale-if-error), and its bytes are read through the shared block cache pinned to
 * that version (If-Match), so a reader never mixes two versions of an object.
 */

/** One version of an object, opened for a client. */
export interface OpenedObject {
  readonly key: string;
  /** Size, ETag (pinned for every byte read) and Last-Modified of the version served. */
  readonly info: ObjectInfo;
  /** Served past a failed refresh (stale-if-error): S3 could not confirm this version. */
  readonly stale: boolean;
  /** A reader of this version's bytes through the shared cache; the caller closes it. */
  reader(): CachedObjectSource;
}

export class ObjectAccess {
  constructor(
    private readonly access: AccessPolicyOptions,
    private readonly cache: RangeCache,
    /** Ranges fetched ahead of a reader. */
    private readonly readAhead: number,
  ) {}

  /**
   * Where `name` (bytes, one char per byte) leads for `client`: client rules, name normalisation,
   * map rules, the client's key prefix, write locations. Throws PolicyRefusal.
   */
  resolve(name: string, operation: Operation, client: ClientAddress): Resolution {
    return resolveRequest(this.access, name, operation, client);
  }


  /** Looks up the current version of an already resolved key. Throws TransferError. */
  async openKey(key: string): Promise<OpenedObject> {
    const { info, stale } = await this.cache.lookup(key);
    const { cache, readAhead } = this;
    return { key, info, stale, reader: () => new CachedObjectSource(cache, key, info, readAhead) };
  }

  /** Forgets what is known of `key` (after an upload), so reads see the new object at once. */
  invalidate(key: string): void {
    this.cache.invalidate(key);
  }
}
