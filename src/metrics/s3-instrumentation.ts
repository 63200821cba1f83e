import type { S3Client } from '@aws-sdk/client-s3';
import { isDeadlineAbort } from '../storage/s3-errors.js';
import type { GatewayMetrics } from './metrics.js';

/** How an S3 call ended, as a bounded label value. */
export type S3Outcome =
  | 'ok'
  | 'not_found'
  | 'denied'
  | 'precondition_failed'
  | 'client_error'
  | 'throttled'
  | 'server_error'
  | 'network_error'
  | 'aborted';

const THROTTLING = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'TooManyRequestsException', 'RequestLimitExceeded']);

/** Classifies an SDK error. A 404 (a PXE client probing config names) is not a failure of S3. */
export function classifyS3Error(err: unknown): S3Outcome {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  const name = e?.name ?? '';
  const status = e?.$metadata?.httpStatusCode;
  // Cut off by the gateway's own deadline (no answer in time): a network failure, like the SDK's timeouts.
  if (isDeadlineAbort(err)) return 'network_error';
  if (name === 'AbortError') return 'aborted';
  if (THROTTLING.has(name) || status === 429 || status === 503) return 'throttled';
  if (status === 404 || name === 'NotFound' || name === 'NoSuchKey' || name === 'NoSuchUpload') return 'not_found';
  if (status === 403 || name === 'AccessDenied') return 'denied';
  if (status === 412 || status === 409 || name === 'PreconditionFailed') return 'precondition_failed';
  if (status !== undefined && status >= 500) return 'server_error';
  if (status !== undefined && status >= 400) return 'client_error';
  return 'network_error';
}

function attemptsOf(x: unknown): number {
  const n = (x as { $metadata?: { attempts?: number } } | undefined)?.$metadata?.attempts;
  return typeof n === 'number' && n > 0 ? n : 1;
}

function bodyLength(body: unknown): number {
  if (body instanceof Uint8Array) return body.byteLength;
  if (typeof body === 'string') return Buffer.byteLength(body);
  return 0;
}

const MIDDLEWARE_NAME = 'tftpGatewayMetrics';

/**
 * Counts every S3 API call the client makes (the store's own calls, lib-storage's multipart calls,
 * the readiness HeadBucket) once per call at the outermost step, so one call that took three
 * attempts is one request and two retries. Operation labels are SDK command names (bounded);
 * keys and buckets are never labels.
 */
export function instrumentS3Client(client: S3Client, metrics: GatewayMetrics): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const operation = (context.commandName ?? 'Unknown').replace(/Command$/, '');
      const started = performance.now();
      const record = (outcome: S3Outcome, attempts: number): void => {
        metrics.s3Requests.inc({ operation, outcome });
        metrics.s3Latency.observe({ operation }, (performance.now() - started) / 1000);
        if (attempts > 1) metrics.s3Retries.inc({ operation }, attempts - 1);
      };
      let result;
      try {
        result = await next(args);
      } catch (err) {
        record(classifyS3Error(err), attemptsOf(err));
        throw err;
      }
      record('ok', attemptsOf(result.output));
      const input = args.input as { Body?: unknown };
      switch (operation) {
        case 'UploadPart':
        case 'PutObject':
          metrics.s3BytesUploaded.inc(bodyLength(input.Body));
          break;
        case 'CreateMultipartUpload':
          metrics.multipartStarted.inc();
          break;
        case 'CompleteMultipartUpload':
          metrics.multipartCompleted.inc();
          break;
        case 'AbortMultipartUpload':
          metrics.multipartAborted.inc();
          break;
      }
      return result;
    },
    { step: 'initialize', name: MIDDLEWARE_NAME, override: true },
  );
}
