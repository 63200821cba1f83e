// EXPERIMENT, not product code: loaded with `node --import` into a gateway process by
// cold-zero-copy.ts. It replaces the body read of S3ObjectStore with a GetObject that the SDK signs
// but that is sent over a plain TCP socket whose reads land straight in the cache range
// (net.Socket's `onread`): no HTTP parser copy, no copy into the range, no SDK stream per chunk.
// Plain HTTP only (no TLS), one connection per GET, no retries or error bodies: just enough to
// measure what the copies on the ingest path cost a cold transfer.
import { Buffer } from 'node:buffer';
import net from 'node:net';
import process from 'node:process';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { S3ObjectStore } from '../../dist/storage/s3-store.js';

const signed = new Map();
const signer = new S3Client({
  region: process.env.AWS_REGION,
  endpoint: process.env.ZERO_COPY_ENDPOINT,
  forcePathStyle: true,
  maxAttempts: 1,
  credentials: { accessKeyId: process.env.AWS_ACCESS_KEY_ID, secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY },
  // Keeps the signed request instead of sending it.
  requestHandler: {
    handle: async (request) => {
      signed.set(`${request.path} ${request.headers.range}`, request);
      throw new Error('signed, not sent');
    },
  },
});

async function signGet(bucket, key, etag, from, to) {
  await signer.send(new GetObjectCommand({ Bucket: bucket, Key: key, IfMatch: etag, Range: `bytes=${from}-${to}` })).catch(() => {});
  const id = [...signed.keys()].find((k) => k.endsWith(`/${key} bytes=${from}-${to}`));
  const request = signed.get(id);
  signed.delete(id);
  return request;
}

function readInto(request, target, from, onChunk, signal) {
  return new Promise((resolve, reject) => {
    const query = Object.entries(request.query ?? {}).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`).join('&');
    const head = `GET ${request.path}${query ? `?${query}` : ''} HTTP/1.1\r\n${Object.entries(request.headers).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\nconnection: close\r\n\r\n`;
    const header = Buffer.allocUnsafe(16384);
    let headerBytes = 0;
    let inHeader = true;
    let filled = from;
    const socket = net.connect({
      host: request.hostname,
      port: request.port,
      onread: {
        buffer: () => (inHeader ? header.subarray(headerBytes) : target.subarray(filled)),
        callback: (n) => {
          if (inHeader) {
            headerBytes += n;
            const end = header.subarray(0, headerBytes).indexOf('\r\n\r\n');
            if (end < 0) return true;
            const status = header.toString('latin1', 9, 12);
            if (status !== '206' && status !== '200') {
              socket.destroy();
              reject(new Error(`GetObject: HTTP ${status}`));
              return false;
            }
            inHeader = false;
            const body = header.subarray(end + 4, headerBytes);
            body.copy(target, filled);
            filled += body.length;
            if (body.length > 0) onChunk(body.length, filled);
          } else {
            filled += n;
            onChunk(n, filled);
          }
          if (filled >= target.length) {
            socket.destroy();
            resolve(filled);
            return false;
          }
          return true;
        },
      },
    });
    // The store's deadline (a stalled body) or a shutdown ends the socket, as it ends the SDK's.
    const onAbort = () => socket.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    socket.on('error', reject);
    socket.on('close', () => {
      signal.removeEventListener('abort', onAbort);
      reject(new Error('GetObject: connection closed early'));
    });
    socket.write(head);
  });
}

S3ObjectStore.prototype.readOnce = async function readOnce(key, etag, start, target, from, onData, deadline) {
  const request = await signGet(this.options.bucket, key, etag, start + from, start + target.length - 1);
  return readInto(
    request,
    target,
    from,
    (n, filled) => {
      this.options.onBytesFetched?.(n);
      onData(filled);
    },
    deadline.signal,
  );
};
process.stderr.write('zero-copy GetObject experiment loaded\n');
