// The image's runtime stage, built by hand and booted (no Docker engine here). A small builder reads
// the Dockerfile: it assembles exactly what the final stage COPYs, building each stage it copies
// from by replaying that stage's COPY and RUN lines (the production `npm ci --omit=dev` runs for
// real against the npm registry; the build stage's full `npm ci` reuses this checkout's
// node_modules, installed by `npm ci` from the same lockfile, and its `npm run build` runs for
// real). Stages are cached under node_modules/.cache, keyed by their instructions and the content
// of the files they copy, like Docker's layer cache. The tree is root-owned and read-only to the
// runtime user; the Dockerfile's CMD then runs as an unprivileged uid with the Dockerfile's ENV
// against the test S3 server: the HEALTHCHECK must pass, a real client must download, and SIGTERM
// must drain and exit 0. Then the same CMD runs with the disk cache tier on the image's VOLUME
// directory (owned by the runtime user, as a mounted volume is): the download fills it with range
// files while the app tree stays unwritten, and a second boot from that directory serves the file
// with S3 unreachable.
//
// The image runs Node.js 26 (its base image, pinned to the release in tools/node-runtime); npm test
// runs this on that same release (node_modules/.bin/node), so the booted CMD runs the image's Node.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { describeRun, download, sha256 } from '../support/clients.js';
import { putObject, testS3, type TestS3 } from '../support/s3.js';
import { freeTcpPort } from '../support/prometheus.js';
import { until } from '../support/wait.js';
import { CACHE_DIR_PATH } from '../../infra/lib/tftp-gateway-stack.js';
import { parseDockerfile, type Instruction, type Stage } from './dockerfile.js';

const REPO = path.resolve(new URL('../..', import.meta.url).pathname);
const CACHE = path.join(REPO, 'node_modules/.cache/tftpgw-image-stages');
/** The base image's `node` user (USER node): uid and gid 1000 in the official Node.js images. */
const IMAGE_USER = { uid: 1000, gid: 1000 };
const isRoot = process.getuid?.() === 0;
const RUNTIME = isRoot ? IMAGE_USER : { uid: process.getuid!(), gid: process.getgid!() };

interface Copy {
  readonly from: string | undefined;
  readonly sources: string[];
  readonly dest: string;
}

function parseCopy(args: string): Copy {
  assert.ok(!args.trimStart().startsWith('['), `COPY in JSON form is not supported here: ${args}`);
  const words = args.trim().split(/\s+/);
  let from: string | undefined;
  while (words[0]?.startsWith('--')) {
    const flag = words.shift()!;
    const m = /^--from=(.+)$/.exec(flag);
    // --chown/--chmod would change what the runtime user may write: teach this builder first.
    assert.ok(m, `COPY flag ${flag} is not supported by this builder`);
    from = m[1];
  }
  assert.ok(words.length >= 2, `COPY needs a source and a destination: ${args}`);
  return { from, sources: words.slice(0, -1), dest: words.at(-1)! };
}

function parseEnv(args: string): Record<string, string> {
  const env: Record<string, string> = {};
  const words = args.trim().split(/\s+/);
  if (!words[0]!.includes('=')) {
    env[words[0]!] = words.slice(1).join(' ');
    return env;
  }
  for (const w of words) {
    const i = w.indexOf('=');
    assert.ok(i > 0, `ENV ${w}`);
    env[w.slice(0, i)] = w.slice(i + 1).replace(/^"(.*)"$/, '$1');
  }
  return env;
}

/** .dockerignore as an allow-list (`*`, then `!path` lines): what a build context holds. */
async function contextAllows(): Promise<(p: string) => boolean> {
  const lines = (await readFile(path.join(REPO, '.dockerignore'), 'utf8'))
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  assert.equal(lines[0], '*', '.dockerignore is an allow-list');
  const allowed = lines.slice(1).map((l) => l.replace(/^!/, '').replace(/\/$/, ''));
  return (p) => allowed.some((a) => p === a || p.startsWith(`${a}/`));
}

/** Runs a command with a hard timeout; the whole process group is killed on expiry. */
function run(
  file: string,
  args: readonly string[],
  opts: { cwd: string; env: Record<string, string>; timeoutMs: number; uid?: number; gid?: number },
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: opts.cwd, env: opts.env, uid: opts.uid, gid: opts.gid, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const keep = (c: Buffer): void => {
      if (output.length < 100_000) output += c.toString('utf8');
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => {
      output += `\n[killed after ${opts.timeoutMs} ms]`;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, opts.timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** Copies a file, or a directory's contents into `target`, keeping modes, owners and symlinks (coreutils cp: far faster than fs.cp). */
async function copyTree(source: string, target: string, isDir: boolean): Promise<void> {
  if (isDir) await mkdir(target, { recursive: true });
  const r = await run('cp', ['-a', isDir ? `${source}/.` : source, target], { cwd: '/', env: { PATH: '/usr/bin:/bin' }, timeoutMs: 120_000 });
  assert.equal(r.code, 0, `cp -a ${source} ${target}: ${r.output}`);
}

async function walk(dir: string, visit: (p: string, isDir: boolean, isLink: boolean) => Promise<void>): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    await visit(p, entry.isDirectory(), entry.isSymbolicLink());
    if (entry.isDirectory()) await walk(p, visit);
  }
}

async function hashPath(hash: ReturnType<typeof createHash>, p: string, rel: string): Promise<void> {
  const st = await stat(p);
  if (st.isDirectory()) {
    for (const name of (await readdir(p)).sort()) await hashPath(hash, path.join(p, name), `${rel}/${name}`);
  } else {
    hash.update(`${rel}\0${st.mode & 0o111 ? 'x' : '-'}\0`);
    hash.update(await readFile(p));
  }
}

interface BuiltStage {
  /** The stage's file system root (absolute image paths map under it). */
  readonly root: string;
  readonly workdir: string;
  readonly env: Record<string, string>;
  readonly cached: boolean;
}

class MiniBuilder {
  private readonly built = new Map<string, Promise<BuiltStage>>();
  readonly log: string[] = [];

  constructor(
    private readonly stages: readonly Stage[],
    private readonly scratch: string,
    private readonly allows: (p: string) => boolean,
  ) {}

  /** Maps an absolute image path into a stage root. */
  static inRoot(root: string, imagePath: string): string {
    assert.ok(imagePath.startsWith('/'), `absolute path expected: ${imagePath}`);
    return path.join(root, imagePath);
  }

  stage(name: string): Promise<BuiltStage> {
    const index = this.stages.findIndex((s) => s.name === name);
    assert.ok(index >= 0, `no stage named ${name}`);
    let p = this.built.get(name);
    if (!p) {
      p = this.build(this.stages[index]!, name);
      this.built.set(name, p);
    }
    return p;
  }

  /** Builds a stage into scratch/<name>; stages that copy from no other stage are cached by content. */
  async build(stage: Stage, name: string, useCache = true): Promise<BuiltStage> {
    const root = path.join(this.scratch, name);
    const cacheable = useCache && !stage.instructions.some((i) => i.keyword === 'COPY' && parseCopy(i.args).from !== undefined);
    let key = '';
    if (cacheable) {
      const hash = createHash('sha256').update(JSON.stringify(stage.instructions));
      for (const i of stage.instructions.filter((x) => x.keyword === 'COPY')) {
        for (const src of parseCopy(i.args).sources) await hashPath(hash, path.join(REPO, src), src);
      }
      key = `${name}-${hash.digest('hex').slice(0, 24)}`;
      const cached = path.join(CACHE, key);
      if (await stat(cached).then(() => true, () => false)) {
        // Only read from (COPY --from): the cache entry itself serves as the stage's root.
        this.log.push(`stage ${name}: from the cache (${key})`);
        return { ...this.replayMeta(stage), root: cached, cached: true };
      }
    }
    const started = Date.now();
    await mkdir(root, { recursive: true });
    let workdir = '/';
    const env: Record<string, string> = {};
    for (const ins of stage.instructions) {
      await this.apply(ins, root, () => workdir, (w) => (workdir = w), env);
    }
    this.log.push(`stage ${name}: built in ${Date.now() - started} ms`);
    if (cacheable) {
      await mkdir(CACHE, { recursive: true });
      const tmp = path.join(CACHE, `${key}.tmp-${process.pid}`);
      await copyTree(root, tmp, true);
      await rename(tmp, path.join(CACHE, key)).catch(() => rm(tmp, { recursive: true, force: true }));
      // Older builds of this stage are not needed any more.
      for (const old of await readdir(CACHE)) {
        if (old.startsWith(`${name}-`) && old !== key && !old.includes('.tmp-')) await rm(path.join(CACHE, old), { recursive: true, force: true });
      }
    }
    return { root, workdir, env, cached: false };
  }

  private replayMeta(stage: Stage): { workdir: string; env: Record<string, string> } {
    let workdir = '/';
    const env: Record<string, string> = {};
    for (const ins of stage.instructions) {
      if (ins.keyword === 'WORKDIR') workdir = path.posix.resolve(workdir, ins.args.trim());
      if (ins.keyword === 'ENV') Object.assign(env, parseEnv(ins.args));
    }
    return { workdir, env };
  }

  private async apply(ins: Instruction, root: string, workdir: () => string, setWorkdir: (w: string) => void, env: Record<string, string>): Promise<void> {
    switch (ins.keyword) {
      case 'WORKDIR': {
        const w = path.posix.resolve(workdir(), ins.args.trim());
        await mkdir(MiniBuilder.inRoot(root, w), { recursive: true });
        setWorkdir(w);
        return;
      }
      case 'ENV':
        Object.assign(env, parseEnv(ins.args));
        return;
      case 'COPY': {
        const c = parseCopy(ins.args);
        const destImage = path.posix.resolve(workdir(), c.dest);
        const destIsDir = c.dest.endsWith('/') || c.sources.length > 1;
        const from = c.from === undefined ? undefined : await this.stage(c.from);
        for (const src of c.sources) {
          let source: string;
          if (from) {
            source = MiniBuilder.inRoot(from.root, path.posix.resolve(from.workdir, src));
          } else {
            assert.ok(this.allows(src.replace(/^\.\//, '').replace(/\/$/, '')), `COPY ${src}: not in the build context (.dockerignore)`);
            source = path.join(REPO, src);
          }
          const st = await lstat(source).catch(() => undefined);
          assert.ok(st, `COPY ${src}: no such file in ${from ? `stage ${c.from}` : 'the build context'}`);
          const target = MiniBuilder.inRoot(root, st.isDirectory() || !destIsDir ? destImage : path.posix.join(destImage, path.basename(src)));
          await mkdir(path.dirname(target), { recursive: true });
          await copyTree(source, target, st.isDirectory());
        }
        return;
      }
      case 'RUN': {
        const cwd = MiniBuilder.inRoot(root, workdir());
        const command = ins.args.trim();
        assert.ok(!command.startsWith('['), `RUN in exec form is not supported here: ${command}`);
        // `mkdir -p DIRS && chown USER:GROUP DIRS` with absolute paths: done inside the stage root
        // (run for real it would touch this machine's /). The base image's user is `node` (IMAGE_USER).
        const mkdirChown = /^mkdir -p ((?:\/\S+ )+)&& chown (\w+):(\w+) ((?:\/\S+ ?)+)$/.exec(command);
        if (mkdirChown) {
          const made = mkdirChown[1]!.trim().split(' ');
          const owned = mkdirChown[4]!.trim().split(' ');
          assert.ok(mkdirChown[2] === 'node' && mkdirChown[3] === 'node', `RUN ${command}: only the base image's node user is known here`);
          for (const d of made) await mkdir(MiniBuilder.inRoot(root, d), { recursive: true });
          // As root, the runtime uid is the image's; otherwise the directories already belong to this (runtime) user.
          if (isRoot) for (const d of owned) await chown(MiniBuilder.inRoot(root, d), IMAGE_USER.uid, IMAGE_USER.gid);
          this.log.push(`RUN ${command}: in the stage root`);
          return;
        }
        assert.doesNotMatch(command, /(^|\s)\/(?!dev\/null)/, `RUN ${command}: an absolute path would name this machine's file, not the image's`);
        if (/^npm ci\b/.test(command) && !/--omit=dev/.test(command)) {
          // The full install of the build stage: this checkout's node_modules came from `npm ci`
          // with the same lockfile (checked), so it stands in for it.
          assert.equal(await readFile(path.join(cwd, 'package-lock.json'), 'utf8'), await readFile(path.join(REPO, 'package-lock.json'), 'utf8'));
          await symlink(path.join(REPO, 'node_modules'), path.join(cwd, 'node_modules'));
          this.log.push(`RUN ${command}: this checkout's node_modules`);
          return;
        }
        const home = path.join(this.scratch, 'home');
        await mkdir(home, { recursive: true });
        const r = await run('/bin/sh', ['-c', command], {
          cwd,
          // A scratch npm cache: the stage's own `npm cache clean --force` must not empty the developer's.
          env: {
            PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin`,
            HOME: home,
            npm_config_cache: path.join(this.scratch, 'npm-cache'),
            npm_config_update_notifier: 'false',
            // This machine's extra CA (a TLS-inspecting proxy to the registry): the official Node.js
            // binary npm test runs on trusts only its bundled CAs, unlike Debian's nodejs, which
            // reads the system store. Passed through when set; the image build itself needs none.
            ...(process.env.NODE_EXTRA_CA_CERTS ? { NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS } : {}),
            ...env,
          },
          timeoutMs: 300_000,
        });
        assert.equal(r.code, 0, `RUN ${command}\n${r.output}`);
        this.log.push(`RUN ${command}: ok`);
        return;
      }
      case 'ARG':
      case 'LABEL':
      case 'USER':
      case 'EXPOSE':
      case 'HEALTHCHECK':
      case 'CMD':
      case 'STOPSIGNAL':
      case 'VOLUME':
        return; // runtime metadata, read by the test itself
      default:
        assert.fail(`instruction ${ins.keyword} is not supported by this builder`);
    }
  }
}

/** One run of the image's CMD. */
interface Booted {
  readonly child: ChildProcess;
  /** Exit code, or the signal name. */
  readonly exited: Promise<number | string>;
  readonly out: { stdout: string; stderr: string };
  /** The JSON log lines so far. */
  lines(): Record<string, unknown>[];
  readonly udpPort: number;
  readonly httpPort: number;
}

/** Names and attributes of every entry of a tree: a changed, added or removed file shows up as a difference. */
async function treeListing(dir: string): Promise<string[]> {
  const out: string[] = [];
  await walk(dir, async (p) => {
    const st = await lstat(p);
    out.push(`${path.relative(dir, p)} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} ${st.mtimeMs}`);
  });
  return out.sort();
}

describe('the image runtime stage, built by hand from the Dockerfile and booted', () => {
  const { stages } = parseDockerfile(readFileSync(path.join(REPO, 'Dockerfile'), 'utf8'));
  const final = stages.at(-1)!;
  const all = (keyword: string): Instruction[] => final.instructions.filter((i) => i.keyword === keyword);
  let scratch: string;
  let image: BuiltStage;
  let builder: MiniBuilder;
  let s3: TestS3;
  let bucket: string;
  const runs: Booted[] = [];
  /** The stateless boot (the image's defaults). */
  let first: Booted | undefined;
  let imageEnv: Record<string, string> = {};
  let runtimeEnv: Record<string, string> = {};
  /** The app tree (WORKDIR) as it was built: every boot must leave it exactly so. */
  let appListing: string[] = [];
  const boot = randomBytes(300 * 1024 + 17);

  const appDir = (): string => MiniBuilder.inRoot(image.root, image.workdir);
  /** The image's VOLUME directory, as the gateway sees it (no chroot here: its place in the built tree). */
  const volumeDir = (): string => MiniBuilder.inRoot(image.root, CACHE_DIR_PATH);

  /** The HEALTHCHECK's exec-form command, its port moved to the one this run listens on. */
  const healthcheck = (httpPort: number): { argv: string[]; timeoutMs: number } => {
    const hc = all('HEALTHCHECK');
    assert.equal(hc.length, 1, 'one HEALTHCHECK');
    const m = /^(.*?)\bCMD\s+(\[.*\])\s*$/s.exec(hc[0]!.args);
    assert.ok(m, `HEALTHCHECK in exec form: ${hc[0]!.args}`);
    const timeout = /--timeout=(\d+)s/.exec(m[1]!);
    const argv = JSON.parse(m[2]!) as string[];
    const imagePort = /:(\d+)$/.exec(imageEnv.TFTP_GATEWAY_HTTP_LISTEN ?? '')?.[1];
    assert.ok(imagePort, 'the image sets TFTP_GATEWAY_HTTP_LISTEN');
    const joined = JSON.stringify(argv);
    assert.ok(joined.includes(`:${imagePort}/`), `the HEALTHCHECK probes the port the image listens on (${imagePort}): ${joined}`);
    assert.equal(argv[0], 'node');
    // `node` of the image is the machine's node here (see the top of this file).
    return {
      argv: [process.execPath, ...argv.slice(1).map((a) => a.replaceAll(`:${imagePort}/`, `:${httpPort}/`))],
      timeoutMs: timeout ? Number(timeout[1]) * 1000 : 30_000,
    };
  };

  const runHealthcheck = async (httpPort: number): Promise<{ code: number | null; output: string }> => {
    const hc = healthcheck(httpPort);
    return run(hc.argv[0]!, hc.argv.slice(1), { cwd: '/', env: { PATH: runtimeEnv.PATH! }, timeoutMs: hc.timeoutMs, uid: RUNTIME.uid, gid: RUNTIME.gid });
  };

  /** Runs the Dockerfile's CMD as the runtime user in WORKDIR with `env`, until it logs that it listens. */
  const bootCmd = async (env: Record<string, string>, httpPort: number): Promise<Booted> => {
    const cmd = all('CMD');
    assert.equal(cmd.length, 1);
    const argv = JSON.parse(cmd[0]!.args) as string[];
    assert.equal(argv[0], 'node');
    const child = spawn(process.execPath, argv.slice(1), { cwd: appDir(), env, uid: RUNTIME.uid, gid: RUNTIME.gid, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = { stdout: '', stderr: '' };
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out.stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (out.stderr += c));
    const exited = new Promise<number | string>((resolve) => child.once('close', (code, signal) => resolve(code ?? signal ?? 'unknown')));
    const lines = (): Record<string, unknown>[] =>
      out.stdout
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => {
          try {
            return JSON.parse(l) as Record<string, unknown>;
          } catch {
            return {};
          }
        });
    const partial = { child, exited, out, lines, udpPort: 0, httpPort };
    runs.push(partial);
    let done = false;
    void exited.then(() => (done = true));
    const deadline = Date.now() + 20_000;
    let listening: Record<string, unknown> | undefined;
    while (!listening) {
      listening = lines().find((l) => l.msg === 'tftp-gateway listening');
      if (listening) break;
      assert.ok(!done, `the gateway exited at start\nstdout:\n${out.stdout}\nstderr:\n${out.stderr}`);
      assert.ok(Date.now() < deadline, `the gateway did not listen in 20 s\nstdout:\n${out.stdout}\nstderr:\n${out.stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    const udp = (listening.udp as string[])[0]!;
    partial.udpPort = Number(udp.slice(udp.lastIndexOf(':') + 1));
    return partial;
  };

  /** SIGTERM: the drain runs and the process exits 0 within 15 s, with nothing on stderr but the SDK's Node version warning. */
  const stopCmd = async (b: Booted): Promise<void> => {
    b.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([b.exited, new Promise<string>((r) => (timer = setTimeout(() => r('still running after 15 s'), 15_000)))]);
    clearTimeout(timer);
    assert.equal(code, 0, `exit ${code}\nstdout:\n${b.out.stdout.slice(-3000)}\nstderr:\n${b.out.stderr}`);
    const msgs = b.lines().map((l) => l.msg);
    assert.ok(msgs.includes('stopping: draining transfers'), 'the drain started');
    assert.equal(msgs.at(-1), 'tftp-gateway stopped');
    // The AWS SDK warns about Node 20 (the machine's node, not the image's 26): that warning only.
    const nodeVersionWarning = /\(node:\d+\) Warning: NodeVersionSupportWarning[\s\S]*?--trace-warnings[^\n]*\n?/;
    assert.equal(b.out.stderr.replace(nodeVersionWarning, '').trim(), '', 'nothing else on stderr (no warning, no failed write)');
  };

  before(async () => {
    scratch = await mkdtemp(path.join(os.tmpdir(), 'tftpgw-image-'));
    // Node looks for packages in every parent's node_modules: none may exist above the image tree
    // (this checkout's dev dependencies must not be reachable from it).
    for (let dir = path.dirname(scratch); ; dir = path.dirname(dir)) {
      assert.ok(!(await stat(path.join(dir, 'node_modules')).then(() => true, () => false)), `${dir}/node_modules would leak into the image`);
      if (dir === path.dirname(dir)) break;
    }
    // The runtime user must be able to reach the tree (mkdtemp makes the directory 0700).
    await chmod(scratch, 0o755);
    builder = new MiniBuilder(stages, scratch, await contextAllows());
    image = await builder.build(final, 'runtime', false);
    // Root-owned (the COPYs run as root, as in a build) and read-only to everyone else.
    await walk(appDir(), async (p, isDir, isLink) => {
      if (isLink) return;
      const st = await stat(p);
      await chmod(p, isDir ? 0o755 : st.mode & 0o755);
    });
    appListing = await treeListing(appDir());
    s3 = await testS3();
    bucket = await s3.createBucket();
    await putObject(s3, bucket, 'boot/pxelinux.0', boot);
  });

  after(async () => {
    for (const r of runs) {
      if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
      await r.exited;
    }
    await s3?.cleanup();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  test('the tree holds exactly what the final stage COPYs: production dependencies only, root-owned, read-only to the runtime user', async (t) => {
    for (const l of builder.log) t.diagnostic(l);
    const app = appDir();
    const copiedNames = new Set<string>();
    for (const c of all('COPY')) {
      const p = parseCopy(c.args);
      const dest = path.posix.normalize(p.dest).replace(/\/$/, '');
      if (dest === '.' || p.dest.endsWith('/')) for (const s of p.sources) copiedNames.add(path.basename(s));
      else copiedNames.add(dest);
    }
    assert.ok(copiedNames.size > 0);
    assert.deepEqual((await readdir(app)).sort(), [...copiedNames].sort());
    const pkg = JSON.parse(await readFile(path.join(REPO, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    const modules = new Set(await readdir(path.join(app, 'node_modules')));
    for (const dep of Object.keys(pkg.dependencies)) assert.ok(modules.has(dep.split('/')[0]!), `production dependency ${dep} is installed`);
    for (const dev of Object.keys(pkg.devDependencies)) {
      if (!Object.keys(pkg.dependencies).includes(dev)) assert.ok(!(await stat(path.join(app, 'node_modules', dev)).then(() => true, () => false)), `dev dependency ${dev} is not in the image`);
    }
    assert.ok((await stat(path.join(app, 'dist/cli.js'))).isFile(), 'dist/cli.js built by the build stage');
    let entries = 0;
    await walk(app, async (p, _isDir, isLink) => {
      const st = await lstat(p);
      entries++;
      if (isRoot) assert.equal(st.uid, 0, `${p} is owned by root`);
      if (!isLink) assert.equal(st.mode & 0o022, 0, `${p} is writable by group or others`);
    });
    t.diagnostic(`${entries} files and directories in ${image.workdir}`);
  });

  test(`the VOLUME ${CACHE_DIR_PATH} exists in the tree, owned by the runtime user, empty`, async () => {
    const volumes = all('VOLUME').flatMap((v) => JSON.parse(v.args) as string[]);
    assert.deepEqual(volumes, [CACHE_DIR_PATH]);
    const st = await stat(volumeDir());
    assert.ok(st.isDirectory());
    assert.equal(st.uid, RUNTIME.uid, 'owned by the runtime user (Fargate gives a task volume mounted here this owner)');
    assert.equal(st.mode & 0o700, 0o700);
    assert.deepEqual(await readdir(volumeDir()), []);
  });

  test('the CMD runs as an unprivileged user with the image ENV: HEALTHCHECK passes, a real client downloads', async (t) => {
    imageEnv = image.env;
    assert.ok(imageEnv.TFTP_GATEWAY_LISTEN && imageEnv.TFTP_GATEWAY_PORT_MODE && imageEnv.TFTP_GATEWAY_HTTP_LISTEN, JSON.stringify(imageEnv));
    const httpPort = await freeTcpPort();
    runtimeEnv = {
      ...imageEnv,
      // The image's addresses (0.0.0.0:6969, 0.0.0.0:9464) moved to free loopback ports.
      TFTP_GATEWAY_LISTEN: '127.0.0.1:0',
      TFTP_GATEWAY_HTTP_LISTEN: `127.0.0.1:${httpPort}`,
      TFTP_GATEWAY_S3_BUCKET: bucket,
      TFTP_GATEWAY_S3_ENDPOINT: s3.endpoint,
      TFTP_GATEWAY_S3_REGION: s3.region,
      TFTP_GATEWAY_S3_FORCE_PATH_STYLE: 'true',
      TFTP_GATEWAY_S3_CHECKSUM: 'when-required',
      TFTP_GATEWAY_DRAIN_TIMEOUT: '10',
      AWS_ACCESS_KEY_ID: s3.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
      AWS_EC2_METADATA_DISABLED: 'true',
      PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin`,
      HOME: '/nonexistent',
    };
    t.diagnostic(`running ${all('CMD')[0]!.args} as uid ${RUNTIME.uid} in ${image.workdir} with node ${process.version} (the image has Node 26)`);
    first = await bootCmd(runtimeEnv, httpPort);

    const health = await runHealthcheck(httpPort);
    assert.equal(health.code, 0, `HEALTHCHECK failed: ${health.output}`);

    for (const client of ['tftp-hpa', 'atftp'] as const) {
      const r = await download(client, { host: '127.0.0.1', port: first.udpPort }, 'boot/pxelinux.0', client === 'atftp' ? { blksize: 1468, windowsize: 4 } : {});
      assert.ok(r.ok, describeRun(r));
      assert.equal(r.sha256, sha256(boot), `${client} got the file intact`);
    }
  });

  test('SIGTERM drains and exits 0; then the HEALTHCHECK fails; the image’s defaults wrote nothing (no disk tier unless configured)', async () => {
    assert.ok(first, 'the gateway runs');
    await stopCmd(first);
    const finished = first.lines().filter((l) => l.msg === 'transfer finished');
    assert.deepEqual(finished.map((l) => l.result), ['ok', 'ok']);
    const health = await runHealthcheck(first.httpPort);
    assert.notEqual(health.code, 0, 'the HEALTHCHECK fails once the gateway is gone');
    assert.ok(!first.lines().some((l) => l.msg === 'disk cache tier opened'), 'the disk tier is off by default');
    assert.deepEqual(await readdir(volumeDir()), [], 'nothing written to the VOLUME');
    assert.deepEqual(await treeListing(appDir()), appListing, 'the app tree is unchanged');
  });

  describe(`with the disk cache tier on the VOLUME (TFTP_GATEWAY_CACHE_DIR=${CACHE_DIR_PATH})`, () => {
    const cacheEnv = (httpPort: number, s3Endpoint: string): Record<string, string> => ({
      ...runtimeEnv,
      TFTP_GATEWAY_HTTP_LISTEN: `127.0.0.1:${httpPort}`,
      TFTP_GATEWAY_S3_ENDPOINT: s3Endpoint,
      TFTP_GATEWAY_CACHE_DIR: volumeDir(),
      TFTP_GATEWAY_CACHE_DIR_SIZE: '64MiB',
    });
    const rangeFiles = async (): Promise<string[]> => (await readdir(volumeDir())).filter((n) => n.startsWith('r-'));
    const metaFiles = async (): Promise<string[]> => (await readdir(volumeDir())).filter((n) => n.startsWith('m-'));

    test('a download fills the directory with range files owned by the runtime user; the app tree stays unwritten', async () => {
      assert.ok(runtimeEnv.PATH, 'the stateless boot ran first');
      const httpPort = await freeTcpPort();
      const gw = await bootCmd(cacheEnv(httpPort, s3.endpoint), httpPort);
      assert.ok(gw.lines().some((l) => l.msg === 'disk cache tier opened'), 'the tier is on');
      const health = await runHealthcheck(httpPort);
      assert.equal(health.code, 0, `HEALTHCHECK failed: ${health.output}`);
      const r = await download('tftp-hpa', { host: '127.0.0.1', port: gw.udpPort }, 'boot/pxelinux.0');
      assert.ok(r.ok, describeRun(r));
      assert.equal(r.sha256, sha256(boot));
      await until(async () => (await rangeFiles()).length >= 1 && (await metaFiles()).length === 1, 10_000, 'a range file and a metadata file on the volume');
      await stopCmd(gw);
      for (const name of await readdir(volumeDir())) {
        assert.match(name, /^[rm]-/, `only range and metadata files (no temp file left): ${name}`);
        assert.equal((await stat(path.join(volumeDir(), name))).uid, RUNTIME.uid, `${name} is the runtime user's`);
      }
      const held = await Promise.all((await rangeFiles()).map(async (n) => (await stat(path.join(volumeDir(), n))).size));
      assert.equal(held.reduce((a, b) => a + b, 0), boot.length, 'the range files hold the whole object');
      assert.deepEqual(await treeListing(appDir()), appListing, 'the app tree is unchanged');
    });

    test('a second boot from the same directory with S3 unreachable: ready (degraded), and the file is served from disk intact', async () => {
      assert.ok((await rangeFiles()).length >= 1, 'the previous test filled the volume');
      const httpPort = await freeTcpPort();
      // Nothing listens there: every S3 call is refused, as when the WAN link to S3 is down.
      const closedPort = await freeTcpPort();
      const gw = await bootCmd(cacheEnv(httpPort, `http://127.0.0.1:${closedPort}`), httpPort);
      const health = await runHealthcheck(httpPort);
      assert.equal(health.code, 0, `HEALTHCHECK failed: ${health.output}`);
      const ready = await fetch(`http://127.0.0.1:${httpPort}/readyz`);
      const body = await ready.text();
      assert.equal(ready.status, 200, `/readyz: ${ready.status} ${body}`);
      assert.match(body, /S3 unreachable/);
      for (const client of ['tftp-hpa', 'atftp'] as const) {
        const r = await download(client, { host: '127.0.0.1', port: gw.udpPort }, 'boot/pxelinux.0', { timeoutMs: 30_000, ...(client === 'atftp' ? { blksize: 1468, windowsize: 4 } : {}) });
        assert.ok(r.ok, describeRun(r));
        assert.equal(r.sha256, sha256(boot), `${client} got the file intact from the disk tier`);
      }
      const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
      const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN);
      assert.ok(value('tftp_gateway_cache_disk_hits_total') >= 1, 'ranges read from the disk tier');
      assert.equal(value('tftp_gateway_s3_reachable'), 0, 'S3 was unreachable all along');
      await stopCmd(gw);
      assert.deepEqual(await treeListing(appDir()), appListing, 'the app tree is unchanged');
    });
  });
});
