// The "Deploy on AWS" README section stays complete: every context key, the deploy command, DHCP,
// uploads, and a dated cost table whose worked figures follow from its own prices. docs/http-boot.md
// has its DHCP, iPXE and initramfs examples.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CONTEXT_KEYS } from '../../infra/lib/context.js';

function deploySection(): string {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const start = readme.indexOf('## Deploy on AWS');
  assert.ok(start !== -1, 'README.md has no "## Deploy on AWS" section');
  const next = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, next === -1 ? undefined : next);
}

const doc = deploySection();

test('documents every context key the app reads', () => {
  const missing = CONTEXT_KEYS.filter((k) => !doc.includes(`\`${k}\``));
  assert.deepEqual(missing, []);
});

test('has prerequisites, the deploy command, DHCP, uploads and costs', () => {
  for (const heading of ['### Prerequisites', '### Context values', '### Deploy', '### Point DHCP at the load balancer', '### Upload boot images', '### What it costs']) {
    assert.ok(doc.includes(heading), `missing ${heading}`);
  }
  assert.match(doc, /npx cdk deploy/);
  assert.match(doc, /next-server/);
  assert.match(doc, /aws s3 (cp|sync)/);
});

test('costs: dated list prices with a region; the per-task figure follows from the Fargate prices', () => {
  assert.match(doc, /2026-11-25/);
  assert.match(doc, /US East \(N\. Virginia\)/);
  const m = /\$([0-9.]+) per vCPU-hour, \$([0-9.]+) per GB-hour/.exec(doc);
  assert.ok(m, 'Fargate vCPU-hour and GB-hour prices');
  const perHour = 0.5 * Number(m[1]) + 1 * Number(m[2]);
  assert.ok(doc.includes(`$${perHour.toFixed(5)}/hour`), `0.5 vCPU + 1 GB should read $${perHour.toFixed(5)}/hour`);
  assert.ok(doc.includes(`$${(perHour * 730).toFixed(2)} per task-month`), `per task-month should be $${(perHour * 730).toFixed(2)}`);
  assert.match(doc, /per GB/);
});

// docs/http-boot.md: stage 2 over HTTP. The DHCP examples hand out a TFTP first stage and then an
// iPXE script over HTTP; the examples are checked by the real tools where they are installed.
describe('docs/http-boot.md', () => {
  const httpBoot = readFileSync(new URL('../../docs/http-boot.md', import.meta.url), 'utf8');
  const blocks = [...httpBoot.matchAll(/```(\w*)\n([\s\S]*?)```/g)].map((m) => ({ lang: m[1]!, body: m[2]! }));
  const block = (what: string, test: (b: { lang: string; body: string }) => boolean): string => {
    const found = blocks.filter(test);
    assert.equal(found.length, 1, `one ${what} example`);
    return found[0]!.body;
  };
  const dnsmasq = block('dnsmasq', (b) => b.body.includes('dhcp-range='));
  const kea = block('Kea', (b) => b.lang === 'json');
  const ipxe = block('iPXE script', (b) => b.body.startsWith('#!ipxe'));
  const initramfs = block('initramfs script', (b) => b.body.startsWith('#!/bin/sh') && b.body.includes('wget'));

  test('says how to turn it on: the flag, its environment variable, the connection caps', () => {
    for (const s of ['--http-boot-listen', 'TFTP_GATEWAY_HTTP_BOOT_LISTEN', '--http-max-connections', '--http-max-connections-per-client']) {
      assert.ok(httpBoot.includes(`\`${s}`), `mentions ${s}`);
    }
  });

  test('documents every httpBoot* context key', () => {
    const keys = CONTEXT_KEYS.filter((k) => k.startsWith('httpBoot'));
    assert.ok(keys.length >= 2);
    assert.deepEqual(keys.filter((k) => !httpBoot.includes(`| \`${k}\` |`)), []);
  });

  test('dnsmasq: iPXE over TFTP for BIOS and UEFI by client arch, the script over HTTP for user class iPXE, UEFI HTTP Boot', () => {
    assert.match(dnsmasq, /^dhcp-match=set:bios,option:client-arch,0$/m);
    assert.match(dnsmasq, /^dhcp-match=set:efi64,option:client-arch,7$/m);
    assert.match(dnsmasq, /^dhcp-userclass=set:ipxe,iPXE$/m);
    assert.match(dnsmasq, /^dhcp-boot=tag:bios,tag:!ipxe,ipxe\/undionly\.kpxe,,/m);
    assert.match(dnsmasq, /^dhcp-boot=tag:efi64,tag:!ipxe,.*ipxe\/ipxe\.efi,,/m);
    assert.match(dnsmasq, /^dhcp-boot=tag:ipxe,http:\/\/\S+\/boot\.ipxe$/m);
    assert.match(dnsmasq, /^dhcp-vendorclass=set:httpboot,HTTPClient$/m);
    assert.match(dnsmasq, /^dhcp-option-force=tag:httpboot,option:vendor-class,HTTPClient$/m);
  });

  test('Kea: valid JSON whose client classes do the same', () => {
    const config = JSON.parse(kea) as { Dhcp4: { 'client-classes': Array<Record<string, unknown>> } };
    const classes = config.Dhcp4['client-classes'];
    const byName: Record<string, Record<string, unknown> | undefined> = Object.fromEntries(classes.map((c) => [String(c['name']), c]));
    assert.match(String(byName['ipxe']?.['test']), /option\[77\]/);
    assert.match(String(byName['ipxe']?.['boot-file-name']), /^http:\/\/.*\/boot\.ipxe$/);
    assert.equal(byName['bios-pxe']?.['boot-file-name'], 'ipxe/undionly.kpxe');
    assert.equal(byName['uefi-pxe']?.['boot-file-name'], 'ipxe/ipxe.efi');
    assert.match(String(byName['uefi-http']?.['test']), /HTTPClient/);
    assert.match(JSON.stringify(byName['uefi-http']?.['option-data']), /"vendor-class-identifier".*"HTTPClient"/);
    for (const name of ['bios-pxe', 'uefi-pxe']) assert.ok(byName[name]?.['next-server'], `${name} names the TFTP server`);
  });

  test('the iPXE script fetches the kernel and initrd over HTTP from the gateway', () => {
    assert.match(ipxe, /^set base http:\/\/\S+$/m);
    assert.match(ipxe, /^kernel \$\{base\}\//m);
    assert.match(ipxe, /^initrd (--name \S+ )?\$\{base\}\//m);
    assert.match(ipxe, /^boot\b/m);
  });

  test('covers UEFI HTTP Boot, HTTPS through the load balancer, and busybox wget', () => {
    assert.match(httpBoot, /## UEFI HTTP Boot/);
    assert.match(httpBoot, /HTTPClient/);
    assert.match(httpBoot, /## HTTPS through the load balancer/);
    assert.match(httpBoot, /httpBootCertificateArn=arn:aws:acm:/);
    assert.match(initramfs, /wget -c /);
  });

  test('the initramfs script is valid shell (busybox sh -n)', { skip: hasCommand('busybox') ? false : 'busybox is not installed' }, () => {
    const r = spawnSync('busybox', ['sh', '-n'], { input: initramfs, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  });

  test('dnsmasq accepts the dnsmasq example (dnsmasq --test)', { skip: hasCommand('dnsmasq') ? false : 'dnsmasq is not installed (Debian: dnsmasq-base)' }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'http-boot-doc-'));
    try {
      writeFileSync(join(dir, 'dnsmasq.conf'), dnsmasq);
      const r = spawnSync('dnsmasq', ['--test', '-C', join(dir, 'dnsmasq.conf')], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('Kea accepts the Kea example, class expressions included (kea-dhcp4 -t)', { skip: hasCommand('kea-dhcp4') ? false : 'kea-dhcp4 is not installed (Debian: kea-dhcp4-server)' }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'http-boot-doc-'));
    try {
      // The lease file is the only path the check opens: keep it in the scratch directory.
      writeFileSync(join(dir, 'kea.json'), kea.replace('/var/lib/kea/kea-leases4.csv', join(dir, 'leases4.csv')));
      const r = spawnSync('kea-dhcp4', ['-t', join(dir, 'kea.json')], { encoding: 'utf8' });
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('no real public hosts: names under example.internal, addresses from RFC 5737 or private ranges', () => {
    const hosts = [...httpBoot.matchAll(/\b(?:https?|tftp):\/\/([^/\s:`"'|)]+)/g)].map((m) => m[1]!).filter((h) => !h.startsWith('$'));
    const ips = [...httpBoot.matchAll(/\b(\d{1,3}(?:\.\d{1,3}){3})\b/g)].map((m) => m[1]!);
    const documentation = /^(192\.0\.2|198\.51\.100|203\.0\.113)\.\d+$/;
    const privateOrLocal = /^(10\.\d+\.\d+\.\d+|192\.168\.\d+\.\d+|172\.(1[6-9]|2\d|3[01])\.\d+\.\d+|127\.0\.0\.1|0\.0\.0\.0)$/;
    const bad = [...hosts, ...ips].filter((h) => !(h.endsWith('.example.internal') || documentation.test(h) || privateOrLocal.test(h)));
    assert.deepEqual(bad, []);
    assert.ok(hosts.length > 5);
  });
});

function hasCommand(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}
