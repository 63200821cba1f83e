import type { S3Client } from '@aws-sdk/client-s3';
import { outageCause, type OutageCause } from './s3-errors.js';

export interface ReachabilityChange {
  readonly reachable: boolean;
  /** Why S3 is deemed unreachable (when it became so). */
  readonly cause?: OutageCause;
  /** The SDK command whose outcome flipped the state. */
  readonly operation: string;
  /** How long S3 was unreachable (when it became reachable again). */
  readonly downMs?: number;
}

/**
 * Whether S3 answers, from the outcome of every S3 call the gateway makes: unreachable after a
 * call fails with an outage-type error (5xx, throttling, no answer, no connection), reachable again
 * when S3 answers one. An answer about an object (404, 403, 412) is S3 answering: reachable.
 */
export class S3Health {
  private state = true;
  private since = Date.now();
  /** Start of the latest successful call: a failure of a call started before it is old news. */
  private lastSuccessStart = -Infinity;
  private lastCause: OutageCause | undefined;

  constructor(private readonly onChange?: (change: ReachabilityChange) => void) {}

  get reachable(): boolean {
    return this.state;
  }

  /** When the state last changed (Date.now()). */
  get changedAt(): number {
    return this.since;
  }

  /** The cause of the current outage, when unreachable. */
  get cause(): OutageCause | undefined {
    return this.state ? undefined : this.lastCause;
  }

  succeeded(operation: string, startedAt: number): void {
    this.lastSuccessStart = Math.max(this.lastSuccessStart, startedAt);
    if (this.state) return;
    const downMs = Date.now() - this.since;
    this.state = true;
    this.since = Date.now();
    this.onChange?.({ reachable: true, operation, downMs });
  }

  failed(operation: string, startedAt: number, err: unknown): void {
    const cause = outageCause(err);
    if (cause === undefined) {
      // An HTTP answer about the object is S3 answering; a local abort says nothing.
      if ((err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode !== undefined) this.succeeded(operation, startedAt);
      return;
    }
    if (startedAt < this.lastSuccessStart) return;
    this.lastCause = cause;
    if (!this.state) return;
    this.state = false;
    this.since = Date.now();
    this.onChange?.({ reachable: false, cause, operation });
  }
}

/** Feeds every call the S3 client makes (reads, lib-storage's multipart calls, HeadBucket) into `health`. */
export function trackS3Health(client: S3Client, health: S3Health): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const operation = (context.commandName ?? 'Unknown').replace(/Command$/, '');
      const startedAt = Date.now();
      try {
        const result = await next(args);
        health.succeeded(operation, startedAt);
        return result;
      } catch (err) {
        health.failed(operation, startedAt, err);
        throw err;
      }
    },
    { step: 'initialize', name: 'tftpGatewayS3Health', override: true },
  );
}
