import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { testS3, type TestS3 } from '../support/s3.js';
import { REPO_ROOT, scrape, startGateway, type Exposition, type StartedGateway } from './helpers.js';

interface Target {
  expr?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  panels: Panel[];
  templating: { list: { name: string; type: string; query: unknown; definition?: string; datasource?: { uid?: string } }[] };
}

const DASHBOARD = path.join(REPO_ROOT, 'dashboards/tftp-gateway.json');
const PROMQL_WORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);

/** The metric names a PromQL expression reads (functions, keywords, labels and literals removed). */
export function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // label values, regexes
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // range selectors
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' '); // grouping labels
  const names: string[] = [];
  const re = /\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?/g;
  for (let m = re.exec(stripped); m; m = re.exec(stripped)) {
    if (m[2]) continue; // a function or aggregation
    if (PROMQL_WORDS.has(m[1]!.toLowerCase())) continue;
    names.push(m[1]!);
  }
  return names;
}

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

describe('Grafana dashboard', () => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
  const panels = allPanels(dashboard.panels).filter((p) => p.type !== 'row');
  const queries = [
    ...panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: p.title, expr: t.expr ?? '' }))),
    ...dashboard.templating.list.filter((v) => v.type === 'query').map((v) => ({ where: `variable ${v.name}`, expr: v.definition ?? '' })),
  ];
  let s3: TestS3;
  let gw: StartedGateway;
  let exported: Exposition;

  before(async () => {
    s3 = await testS3();
    // Process metrics on, as in production: the dashboard's memory and CPU panels read them.
    gw = await startGateway(s3, await s3.createBucket(), [], { defaultMetrics: true });
    exported = await scrape(gw.http);
  });
  after(async () => {
    await gw?.stop();
    await s3?.cleanup();
  });

  test('the metric-name extractor understands the PromQL the dashboard uses', () => {
    assert.deepEqual(
      metricNames('sum by (le, op) (rate(a_bucket{x=~"b|c", y="d{e}"}[$__rate_interval])) / clamp_min(sum(rate(b_total[5m])), 1e-9) and on(instance) c'),
      ['a_bucket', 'b_total', 'c'],
    );
    assert.deepEqual(metricNames('label_values(tftp_gateway_transfers_started_total{job=~"$job"}, instance)'), ['tftp_gateway_transfers_started_total', 'instance']);
  });

  test('every metric named in the dashboard queries is exported by the gateway', () => {
    const names = exported.queryableNames();
    let checked = 0;
    for (const q of queries) {
      const found = q.where.startsWith('variable') ? metricNames(q.expr).slice(0, 1) : metricNames(q.expr);
      assert.ok(found.length > 0, `${q.where}: no metric in ${q.expr}`);
      for (const name of found) {
        assert.ok(name.startsWith('tftp_gateway_'), `${q.where}: ${name} is not a gateway metric`);
        assert.ok(names.has(name), `${q.where}: ${name} is not exported by the gateway`);
        checked++;
      }
    }
    assert.ok(checked >= 30, `checked ${checked} names`);
  });

  test('the datasource is a template variable used by every panel and query', () => {
    const ds = dashboard.templating.list.find((v) => v.type === 'datasource');
    assert.equal(ds?.name, 'datasource');
    assert.equal(ds?.query, 'prometheus');
    for (const p of panels) {
      assert.equal(p.datasource?.uid, '${datasource}', p.title);
      for (const t of p.targets ?? []) assert.equal(t.datasource?.uid, '${datasource}', p.title);
    }
    for (const v of dashboard.templating.list.filter((x) => x.type === 'query')) assert.equal(v.datasource?.uid, '${datasource}', v.name);
    assert.doesNotMatch(JSON.stringify(dashboard), /"uid":\s*"(?!\$\{datasource\}|tftp-gateway")[^"]*"/, 'no hard-wired datasource uid');
  });

  test('it has the panels operators asked for', () => {
    const titles = panels.map((p) => p.title);
    for (const wanted of [
      'Transfer rate by result',
      'Throughput',
      'Active sessions',
      'Transfer duration percentiles',
      'TFTP ERROR packets sent by code',
      'S3 latency percentiles',
      'S3 error rate',
      'Cache hit ratio',
      'S3 bytes per served byte',
      'Memory',
      'CPU',
      'HTTP responses by status code',
      'HTTP 5xx share',
      'HTTP throughput by instance',
      'Open HTTP connections',
      'HTTP connections refused by cap',
    ]) {
      assert.ok(titles.includes(wanted), `panel '${wanted}'`);
    }
    const exprOf = (title: string): string => panels.filter((p) => p.title === title).flatMap((p) => p.targets ?? []).map((t) => t.expr).join(' ');
    assert.match(exprOf('Transfer duration percentiles'), /histogram_quantile\(0\.99, .*tftp_gateway_transfer_duration_seconds_bucket/);
    assert.match(exprOf('S3 latency percentiles'), /histogram_quantile\(0\.99, .*tftp_gateway_s3_request_duration_seconds_bucket/);
    assert.match(exprOf('S3 bytes per served byte'), /tftp_gateway_s3_bytes_fetched_total.*\/.*tftp_gateway_transfer_bytes_total\{[^}]*direction="sent"/);
    // HTTP boot shares the transfer metrics: the transfer panels split them by protocol.
    for (const title of ['Transfer rate by result', 'Throughput', 'Active sessions', 'Transfer duration percentiles']) {
      assert.match(exprOf(title), /by \([^)]*\bprotocol\b/, `${title} splits by protocol`);
    }
    assert.match(exprOf('HTTP responses by status code'), /sum by \(code\) \(rate\(tftp_gateway_http_responses_total/);
    assert.match(exprOf('HTTP throughput by instance'), /tftp_gateway_transfer_bytes_total\{[^}]*protocol="http"/);
    assert.match(exprOf('Open HTTP connections'), /tftp_gateway_http_connections\{/);
    assert.match(exprOf('HTTP connections refused by cap'), /sum by \(reason\) \(rate\(tftp_gateway_http_connections_refused_total/);
  });
});
