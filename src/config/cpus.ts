import fs from 'node:fs';
import os from 'node:os';

/**
 * CPUs this process may use: the scheduler's view (`os.availableParallelism()`: the affinity
 * mask) capped by a cgroup v2 CPU quota (`/sys/fs/cgroup/cpu.max`, "QUOTA PERIOD" or "max PERIOD"),
 * rounded up. A Fargate task of 0.5 vCPU gets 1 (single-threaded mode), one of 4 vCPU gets 4.
 */
export function usableCpus(cpuMaxPath = '/sys/fs/cgroup/cpu.max', parallelism = os.availableParallelism()): number {
  const quota = cgroupCpuQuota(cpuMaxPath);
  const n = quota === undefined ? parallelism : Math.min(parallelism, Math.ceil(quota));
  return Math.max(1, n);
}

/** The cgroup v2 CPU quota in CPUs, or undefined when there is none (or no cgroup v2 file). */
export function cgroupCpuQuota(cpuMaxPath: string): number | undefined {
  let text: string;
  try {
    text = fs.readFileSync(cpuMaxPath, 'utf8');
  } catch {
    return undefined;
  }
  const [quota, period] = text.trim().split(/\s+/);
  if (quota === undefined || quota === 'max') return undefined;
  const q = Number(quota);
  const p = Number(period ?? 100_000);
  if (!Number.isFinite(q) || !Number.isFinite(p) || q <= 0 || p <= 0) return undefined;
  return q / p;
}
