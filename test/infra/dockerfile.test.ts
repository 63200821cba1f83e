// The container image's key properties, read from the Dockerfile (no Docker engine here).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { CACHE_DIR_PATH, GATEWAY_HTTP_BOOT_PORT, GATEWAY_HTTP_PORT, GATEWAY_TFTP_PORT } from '../../infra/lib/tftp-gateway-stack.js';
import { parseDockerfile, type Stage } from './dockerfile.js';

const dockerfile = readFileSync(new URL('../../Dockerfile', import.meta.url), 'utf8');
const { stages } = parseDockerfile(dockerfile);
const final = stages.at(-1)!;
const all = (stage: Stage, keyword: string) => stage.instructions.filter((i) => i.keyword === keyword);

test('multi-stage: a build stage and a separate final stage', () => {
  assert.ok(stages.length >= 2, 'at least two stages');
  assert.ok(stages.some((s) => s !== final && all(s, 'RUN').some((r) => /npm ci(?!.*--omit=dev)/.test(r.args))), 'a stage installs dev dependencies');
  assert.ok(stages.some((s) => s !== final && all(s, 'RUN').some((r) => /npm run build|tsc /.test(r.args))), 'a stage compiles TypeScript');
});

test('every stage, the final one included, is a current Node.js LTS slim image', () => {
  for (const stage of stages) {
    const m = /^node:(\d+)(?:\.\d+)*-(?:(?:trixie|bookworm)-)?slim(?:@sha256:[a-f0-9]{64})?$/.exec(stage.from);
    assert.ok(m, `${stage.from} is not a node slim image`);
    const major = Number(m[1]);
    assert.ok(major % 2 === 0 || major >= 27, `Node ${major} is not an LTS line`);
    assert.ok(major >= 24, `Node ${major} is older than the current LTS lines`);
  }
});

test('the build stage runs on the build platform (cross-builds for arm64 and amd64 do not emulate tsc)', () => {
  const build = stages.find((s) => all(s, 'RUN').some((r) => /npm run build|tsc /.test(r.args)))!;
  assert.equal(build.platform, '$BUILDPLATFORM');
  assert.equal(final.platform, undefined, 'the final stage follows the target platform');
});

test('final stage: production dependencies only', () => {
  const copies = all(final, 'COPY').map((c) => c.args);
  const nodeModules = copies.filter((c) => /node_modules/.test(c));
  assert.equal(nodeModules.length, 1, 'node_modules comes from exactly one place');
  const fromStage = /--from=(\S+)/.exec(nodeModules[0]!)?.[1];
  const source = stages.find((s) => s.name === fromStage);
  assert.ok(source, `node_modules copied from a named stage (${fromStage})`);
  const installs = all(source, 'RUN').filter((r) => /npm (ci|install)/.test(r.args));
  assert.ok(installs.length > 0 && installs.every((r) => /--omit=dev/.test(r.args)), 'that stage installs with --omit=dev only');
  assert.ok(!all(final, 'RUN').some((r) => /npm (ci|install)/.test(r.args) && !/--omit=dev/.test(r.args)), 'no dev install in the final stage');
  assert.ok(copies.some((c) => /--from=\S+\s+\S*dist\b/.test(c)), 'compiled dist/ copied from the build stage');
  assert.ok(!copies.some((c) => /(^|\s)(src|\.)\s/.test(c) && !/--from/.test(c)), 'sources are not copied into the final stage');
});

test('final stage runs as a non-root user', () => {
  const users = all(final, 'USER');
  assert.ok(users.length > 0, 'USER is set');
  const user = users.at(-1)!.args.split(':')[0]!;
  assert.notEqual(user, 'root');
  assert.notEqual(user, '0');
});

test('CMD is exec form ["node", "dist/cli.js", "serve"], no npm wrapper, no ENTRYPOINT', () => {
  const cmds = all(final, 'CMD');
  assert.equal(cmds.length, 1);
  assert.deepEqual(JSON.parse(cmds[0]!.args), ['node', 'dist/cli.js', 'serve']);
  assert.equal(all(final, 'ENTRYPOINT').length, 0);
  assert.doesNotMatch(cmds[0]!.args, /npm|yarn|pnpm|sh -c/);
});

test(`exposes UDP ${GATEWAY_TFTP_PORT}, TCP ${GATEWAY_HTTP_PORT} (ops) and TCP ${GATEWAY_HTTP_BOOT_PORT} (HTTP boot)`, () => {
  const exposed = all(final, 'EXPOSE').flatMap((e) => e.args.split(/\s+/));
  assert.deepEqual(exposed.sort(), [`${GATEWAY_TFTP_PORT}/udp`, `${GATEWAY_HTTP_PORT}/tcp`, `${GATEWAY_HTTP_BOOT_PORT}/tcp`].sort());
});

test('HTTP boot is off in the image: no TFTP_GATEWAY_HTTP_BOOT_LISTEN (the deployment turns it on)', () => {
  const env = stages.flatMap((s) => all(s, 'ENV')).map((e) => e.args).join(' ');
  assert.doesNotMatch(env, /TFTP_GATEWAY_HTTP_BOOT_LISTEN/);
  assert.ok(!all(final, 'CMD').some((c) => /http-boot/.test(c.args)), 'nor a --http-boot-listen flag in CMD');
});

test('configured through the environment: single-port mode and listen addresses default in the image', () => {
  const env = all(final, 'ENV').map((e) => e.args).join(' ');
  assert.match(env, new RegExp(`TFTP_GATEWAY_LISTEN=0\\.0\\.0\\.0:${GATEWAY_TFTP_PORT}`));
  assert.match(env, /TFTP_GATEWAY_PORT_MODE=single/);
  assert.match(env, new RegExp(`TFTP_GATEWAY_HTTP_LISTEN=0\\.0\\.0\\.0:${GATEWAY_HTTP_PORT}`));
  assert.match(env, /NODE_ENV=production/);
});

test('package.json is in the final image ("type": "module" makes dist/*.js ES modules)', () => {
  assert.ok(all(final, 'COPY').some((c) => /(^|\s)package\.json\s/.test(c.args) && !/--from/.test(c.args)));
});

test('.dockerignore is an allow-list that keeps node_modules, dist, cdk.out and .git out of the context', () => {
  const lines = readFileSync(new URL('../../.dockerignore', import.meta.url), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  assert.equal(lines[0], '*', 'everything is excluded first');
  const allowed = lines.slice(1).map((l) => l.replace(/^!/, '').replace(/\/$/, ''));
  for (const name of ['node_modules', 'dist', 'cdk.out', '.git', 'infra', 'test']) assert.ok(!allowed.includes(name), `${name} is not allowed in`);
  // what the Dockerfile copies from the context must be allowed in
  const contextCopies = stages
    .flatMap((s) => all(s, 'COPY'))
    .filter((c) => !/--from/.test(c.args))
    .flatMap((c) => c.args.replace(/--\S+/g, '').trim().split(/\s+/).slice(0, -1));
  for (const src of contextCopies) assert.ok(allowed.includes(src.replace(/\/$/, '')), `${src} is copied but not in .dockerignore's allow-list`);
});

test(`the disk cache tier's directory ${CACHE_DIR_PATH}: created owned by the runtime user before USER, declared a VOLUME; the tier stays off in the image`, () => {
  const user = all(final, 'USER').at(-1)!.args.split(':')[0]!;
  const index = (i: { keyword: string }) => final.instructions.indexOf(i as (typeof final.instructions)[number]);
  const volumes = all(final, 'VOLUME');
  assert.equal(volumes.length, 1, 'one VOLUME');
  // The path the CDK stack mounts its task volume at: Fargate gives that volume the image directory's owner.
  assert.deepEqual(JSON.parse(volumes[0]!.args), [CACHE_DIR_PATH]);
  const creates = all(final, 'RUN').filter((r) => r.args.includes(CACHE_DIR_PATH));
  assert.equal(creates.length, 1);
  assert.match(creates[0]!.args, new RegExp(`^mkdir -p ${CACHE_DIR_PATH} && chown ${user}:${user} ${CACHE_DIR_PATH}$`));
  // Created and owned before the volume is declared (changes after VOLUME would be discarded) and as root, before USER.
  assert.ok(index(creates[0]!) < index(volumes[0]!));
  assert.ok(index(volumes[0]!) < index(all(final, 'USER').at(-1)!));
  // Stateless by default: nothing in the image points the gateway at the directory.
  const env = stages.flatMap((s) => all(s, 'ENV')).map((e) => e.args).join(' ');
  assert.doesNotMatch(env, /TFTP_GATEWAY_CACHE_DIR|TFTP_GATEWAY_WARM/);
  assert.ok(!all(final, 'CMD').some((c) => /cache-dir|warm/.test(c.args)), 'nor a --cache-dir flag in CMD');
});
