import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';

/** The machine's cores. */
export function coreCount(): number {
  return (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 1;
}

/** Cores to pin servers and clients to (different ones when the machine has two or more). */
export function cores(): { server: string; client: string } {
  const n = coreCount();
  return n >= 2 ? { server: '0', client: '1' } : { server: '0', client: '0' };
}

/**
 * Every core, as a taskset list: the bench pins itself to the client core and children inherit
 * that affinity, so a server meant to use the whole machine must be given it explicitly.
 */
export function allCores(): string {
  const n = coreCount();
  return n > 1 ? `0-${n - 1}` : '0';
}

/** One core's time from /proc/stat, in clock ticks: busy (every process, kernel included) and all. */
export interface CoreTicks {
  readonly busy: number;
  readonly total: number;
}

/**
 * Every core's ticks so far, by core number ('' for all cores together), from one read of
 * /proc/stat (empty where there is none).
 */
export function coreTicks(): Map<string, CoreTicks> {
  const ticks = new Map<string, CoreTicks>();
  let stat: string;
  try {
    stat = fs.readFileSync('/proc/stat', 'utf8');
  } catch {
    return ticks;
  }
  for (const line of stat.split('\n')) {
    const m = /^cpu(\d*)\s+(.*)$/.exec(line);
    if (!m) continue;
    // user nice system idle iowait irq softirq steal ...: idle and iowait are the time nobody ran.
    const f = m[2]!.trim().split(/\s+/).slice(0, 8).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    ticks.set(m[1]!, { busy: total - (f[3] ?? 0) - (f[4] ?? 0), total });
  }
  return ticks;
}

/** The share of `before`..`after` that the core was busy (0..1), or undefined. */
export function busyShare(before: CoreTicks | undefined, after: CoreTicks | undefined): number | undefined {
  if (!before || !after || after.total <= before.total) return undefined;
  return (after.busy - before.busy) / (after.total - before.total);
}

let tasksetAvailable: boolean | undefined;
export function hasTaskset(): boolean {
  tasksetAvailable ??= ['/usr/bin/taskset', '/bin/taskset'].some((p) => fs.existsSync(p));
  return tasksetAvailable;
}

/** argv pinned to `core` with taskset (exec's in place, so the pid is the program's own). */
export function pinned(core: string | undefined, argv: readonly string[]): string[] {
  return core !== undefined && hasTaskset() ? ['taskset', '-c', core, ...argv] : [...argv];
}

/**
 * A long-running process the benchmark started: its output kept (bounded) for error messages,
 * stopped with SIGTERM then SIGKILL. Every ManagedProcess is tracked so an interrupted run
 * leaves nothing behind.
 */
export class ManagedProcess {
  private static readonly live = new Set<ManagedProcess>();
  readonly child: ChildProcess;
  private output = '';
  private exited: Promise<number | null>;
  private lineListeners: ((line: string) => void)[] = [];
  private partial = '';

  /** Counts the CPU of the process and of every process it forks, when the kernel lets us. */
  private readonly cpu: CpuGroup | undefined;

  constructor(
    readonly name: string,
    argv: readonly string[],
    options: SpawnOptions = {},
  ) {
    this.cpu = CpuGroup.create(name);
    const command = this.cpu ? this.cpu.wrap(argv) : argv;
    this.child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    ManagedProcess.live.add(this);
    const onData = (chunk: Buffer): void => {
      const text = chunk.toString();
      this.output = (this.output + text).slice(-20_000);
      if (this.lineListeners.length === 0) return;
      const lines = (this.partial + text).split('\n');
      this.partial = lines.pop() ?? '';
      for (const line of lines) for (const l of this.lineListeners) l(line);
    };
    this.child.stdout?.on('data', onData);
    this.child.stderr?.on('data', onData);
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code) => {
        ManagedProcess.live.delete(this);
        this.cpu?.close();
        resolve(code);
      });
      this.child.once('error', (err) => {
        this.output += `\nspawn error: ${err.message}`;
        ManagedProcess.live.delete(this);
        resolve(-1);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get log(): string {
    return this.output;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves with the first output line matching `pattern`; rejects on exit or timeout. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<string> {
    const seen = this.output.split('\n').find((l) => pattern.test(l));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`${this.name}: no line matching ${pattern} within ${timeoutMs} ms\n${this.output.slice(-2000)}`)), timeoutMs);
      const listener = (line: string): void => {
        if (pattern.test(line)) done(undefined, line);
      };
      const onExit = (): void => done(new Error(`${this.name} exited before it was ready:\n${this.output.slice(-2000)}`));
      const done = (err?: Error, line?: string): void => {
        clearTimeout(timer);
        this.lineListeners = this.lineListeners.filter((l) => l !== listener);
        this.child.off('exit', onExit);
        if (err) reject(err);
        else resolve(line!);
      };
      this.lineListeners.push(listener);
      this.child.once('exit', onExit);
    });
  }

  /**
   * CPU seconds used so far by the process (every thread) and every process it forked
   * (tftpd-hpa forks one per transfer and ignores SIGCHLD, so /proc's cutime never sees them):
   * its cpuacct cgroup's usage where the kernel lets us make one, else utime + stime + cutime +
   * cstime of /proc/PID/stat (reaped children only).
   */
  cpuSeconds(): number | undefined {
    return this.cpu?.seconds() ?? readCpuSeconds(this.pid);
  }

  /** How cpuSeconds() counts: 'cgroup' (process and every descendant) or 'proc' (reaped children only). */
  get cpuAccounting(): 'cgroup' | 'proc' {
    return this.cpu ? 'cgroup' : 'proc';
  }

  /** Peak resident set size in bytes (VmHWM), while the process runs. */
  peakRss(): number | undefined {
    return readStatusKb(this.pid, 'VmHWM');
  }

  rss(): number | undefined {
    return readStatusKb(this.pid, 'VmRSS');
  }

  /**
   * Sets the peak resident set size (VmHWM) back to the current RSS, so that peakRss() then gives
   * the peak since now (Linux: `5` written to /proc/PID/clear_refs). False where that is not allowed.
   */
  resetPeakRss(): boolean {
    if (this.pid === undefined) return false;
    try {
      fs.writeFileSync(`/proc/${this.pid}/clear_refs`, '5');
      return true;
    } catch {
      return false;
    }
  }

  async stop(graceMs = 5000): Promise<void> {
    if (!this.running) {
      await this.exited;
      return;
    }
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Stops every process still running (best effort; used on exit and interrupts). */
  static async stopAll(): Promise<void> {
    await Promise.all([...ManagedProcess.live].map((p) => p.stop(2000)));
  }

  static killAllSync(): void {
    for (const p of ManagedProcess.live) p.child.kill('SIGKILL');
  }
}

/**
 * A cgroup (v1 cpuacct, or v2 with the cpu controller) of our own for one process tree: the
 * process joins it before exec, so its CPU and that of everything it forks is counted, whether
 * or not anyone reaps the children. Needs write access to the cgroup file system (root here).
 */
class CpuGroup {
  private static sequence = 0;

  private constructor(
    private readonly dir: string,
    private readonly usageFile: string,
    private readonly parse: (text: string) => number,
  ) {}

  static create(name: string): CpuGroup | undefined {
    const leaf = `tftpgw-bench-${process.pid}-${CpuGroup.sequence++}-${name.replace(/[^a-z0-9-]/gi, '')}`;
    const v1 = '/sys/fs/cgroup/cpuacct';
    const v2 = '/sys/fs/cgroup';
    try {
      if (fs.existsSync(`${v1}/cpuacct.usage`)) {
        fs.mkdirSync(`${v1}/${leaf}`);
        return new CpuGroup(`${v1}/${leaf}`, 'cpuacct.usage', (t) => Number(t) / 1e9);
      }
      if (fs.existsSync(`${v2}/cgroup.controllers`)) {
        fs.mkdirSync(`${v2}/${leaf}`);
        return new CpuGroup(`${v2}/${leaf}`, 'cpu.stat', (t) => Number(/^usage_usec (\d+)/m.exec(t)?.[1]) / 1e6);
      }
    } catch {
      // not allowed here: fall back to /proc
    }
    return undefined;
  }

  /** argv run inside the group (sh joins it, then exec's the program in place: same pid). */
  wrap(argv: readonly string[]): string[] {
    return ['sh', '-c', `echo $$ > ${this.dir}/cgroup.procs && exec "$@"`, 'sh', ...argv];
  }

  seconds(): number | undefined {
    try {
      const s = this.parse(fs.readFileSync(`${this.dir}/${this.usageFile}`, 'utf8'));
      return Number.isFinite(s) ? s : undefined;
    } catch {
      return undefined;
    }
  }

  /** Removes the group once it is empty (a forked child still running keeps it; best effort). */
  close(): void {
    try {
      fs.rmdirSync(this.dir);
    } catch {
      setTimeout(() => fs.rmdir(this.dir, () => undefined), 2000).unref();
    }
  }
}

/** Clock ticks per second of /proc/PID/stat (USER_HZ: 100 on Linux for every architecture we run on). */
const CLOCK_TICKS = 100;

export function readCpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime, stime, cutime, cstime are fields 14-17, i.e. 11-14 after the name and state.
    const ticks = [11, 12, 13, 14].reduce((n, i) => n + Number(fields[i]), 0);
    return Number.isFinite(ticks) ? ticks / CLOCK_TICKS : undefined;
  } catch {
    return undefined;
  }
}

function readStatusKb(pid: number | undefined, field: string): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The kernel's TCP memory now (pages of socket buffers, every TCP socket on the machine, from
 * /proc/net/sockstat) and its limits (net.ipv4.tcp_mem: min, pressure, max pages), or undefined.
 */
export function tcpMemory(): { pages: number; limits: number[] } | undefined {
  try {
    const pages = Number(/^TCP:.* mem (\d+)/m.exec(fs.readFileSync('/proc/net/sockstat', 'utf8'))?.[1]);
    const limits = fs.readFileSync('/proc/sys/net/ipv4/tcp_mem', 'utf8').trim().split(/\s+/).map(Number);
    return Number.isFinite(pages) && limits.length === 3 && limits.every(Number.isFinite) ? { pages, limits } : undefined;
  } catch {
    return undefined;
  }
}

/** A UDP port free on 127.0.0.1 right now. */
export async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const port = s.address().port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/**
 * Waits until a TFTP server answers on 127.0.0.1:port: sends an RRQ for a file that does not
 * exist and waits for any answer (an ERROR).
 */
export async function waitForTftp(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const name = Buffer.concat([Buffer.from([0, 1]), Buffer.from('bench-readiness-probe-missing\u0000octet\u0000', 'latin1')]);
  while (Date.now() < deadline) {
    const s = dgram.createSocket('udp4');
    const answered = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 200);
      s.once('message', () => {
        clearTimeout(timer);
        resolve(true);
      });
      s.bind(0, '127.0.0.1', () => s.send(name, port, '127.0.0.1'));
    });
    s.close();
    if (answered) return;
  }
  throw new Error(`no TFTP server answered on 127.0.0.1:${port} within ${timeoutMs} ms`);
}

/** Waits until something accepts TCP connections on 127.0.0.1:port. */
export async function waitForTcp(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      const timer = setTimeout(() => done(false), 500);
      const done = (v: boolean): void => {
        clearTimeout(timer);
        s.destroy();
        resolve(v);
      };
      s.once('connect', () => done(true));
      s.once('error', () => done(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing accepted TCP connections on 127.0.0.1:${port} within ${timeoutMs} ms`);
}

/** Runs a command to completion (bounded), returning its exit code and output. */
export function run(argv: readonly string[], timeoutMs: number, options: SpawnOptions = {}): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], ...options });
    let output = '';
    const add = (c: Buffer): void => {
      output = (output + c.toString()).slice(-20_000);
    };
    child.stdout?.on('data', add);
    child.stderr?.on('data', add);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      resolve({ code: -1, output: `${output}\n${err.message}` });
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** Cleanups that must run even when the benchmark is interrupted (e.g. stopping RGW daemons). */
const cleanups = new Set<() => Promise<void>>();

export function onCleanup(fn: () => Promise<void>): () => void {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

export async function runCleanups(): Promise<void> {
  const all = [...cleanups];
  cleanups.clear();
  for (const fn of all.reverse()) await fn().catch(() => undefined);
}
