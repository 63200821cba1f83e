import http from 'node:http';
import type { Registry } from 'prom-client';

export interface HealthProbe {
  /** Process alive and UDP sockets bound. */
  live(): boolean;
  /**
   * Ready to take traffic (not draining, content servable). Returns the reason when not, and a
   * note when ready in a degraded way (S3 unreachable, cached content served).
   */
  ready(): Promise<{ ok: boolean; reason?: string; note?: string }>;
}

/** HTTP endpoint for Prometheus (/metrics) and the platform's health checks (/healthz, /readyz). */
export function createMetricsServer(registry: Pick<Registry, 'metrics' | 'contentType'>, health: HealthProbe): http.Server {
  return http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (url === '/metrics') {
      registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
        (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(String(err)),
      );
      return;
    }
    if (url === '/healthz') {
      const ok = health.live();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'not listening\n');
      return;
    }
    if (url === '/readyz') {
      health.ready().then(
        (r) =>
          res
            .writeHead(r.ok ? 200 : 503, { 'content-type': 'text/plain' })
            .end(r.ok ? `ready${r.note ? `: ${r.note}` : ''}\n` : `not ready: ${r.reason ?? ''}\n`),
        (err: unknown) => res.writeHead(503, { 'content-type': 'text/plain' }).end(`not ready: ${String(err)}\n`),
      );
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
  });
}
