import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { cgroupCpuQuota, usableCpus } from '../../src/config/cpus.js';
import { loadConfig } from '../../src/config/config.js';

describe('usable CPUs (the --workers default)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tftpgw-cpus-'));
  const cpuMax = (text: string): string => {
    const p = path.join(dir, `cpu.max.${Math.random().toString(36).slice(2)}`);
    fs.writeFileSync(p, text);
    return p;
  };

  test('no cgroup file or no quota: the scheduler’s CPUs', () => {
    assert.equal(usableCpus(path.join(dir, 'missing'), 8), 8);
    assert.equal(usableCpus(cpuMax('max 100000\n'), 8), 8);
  });

  test('a quota caps it, rounded up; never below 1', () => {
    assert.equal(usableCpus(cpuMax('50000 100000\n'), 8), 1, 'Fargate 0.5 vCPU: single-threaded');
    assert.equal(usableCpus(cpuMax('150000 100000\n'), 8), 2);
    assert.equal(usableCpus(cpuMax('400000 100000\n'), 8), 4);
    assert.equal(usableCpus(cpuMax('1600000 100000\n'), 8), 8, 'the affinity mask still bounds it');
    assert.equal(cgroupCpuQuota(cpuMax('garbage')), undefined);
  });

  test('--workers: defaults to the usable CPUs, 1 and explicit values kept, 0 refused', () => {
    assert.equal(loadConfig(['--local'], {}).workers, usableCpus());
    assert.equal(loadConfig(['--local', '--workers', '1'], {}).workers, 1);
    assert.equal(loadConfig(['--local'], { TFTP_GATEWAY_WORKERS: '3' }).workers, 3);
    assert.throws(() => loadConfig(['--local', '--workers', '0'], {}), /--workers/);
  });
});
