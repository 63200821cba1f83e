/**
 * Real firmware for the boot tests: QEMU (TCG) running iPXE as a BIOS option ROM under SeaBIOS or as
 * a UEFI driver under OVMF, on QEMU's user-mode network (slirp), with the serial console captured.
 *
 * The guest reaches the host's 127.0.0.1 as 10.0.2.2 (UDP and TCP). Scripts given to the guest must
 * name no other address: slirp forwards every other destination to the real network.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

export type FirmwareKind = 'bios' | 'uefi';

/** The guest's name for the host's loopback (slirp). */
export const HOST_FROM_GUEST = '10.0.2.2';

const QEMU = 'qemu-system-x86_64';
/** Debian's ipxe-qemu: pxe-*.rom is iPXE's legacy option ROM alone; efi-*.rom (QEMU's default) adds the UEFI driver. */
const BIOS_ROM = '/usr/lib/ipxe/qemu/pxe-e1000.rom';
const UEFI_ROM = '/usr/lib/ipxe/qemu/efi-e1000.rom';
/** Debian's ovmf: code (read-only) and a template of the variable store (copied per boot). */
const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';

function onPath(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** Why a boot of `kind` cannot run here (for node:test's `skip`), or false when everything is present. */
export function firmwareMissing(kind: FirmwareKind): string | false {
  if (!onPath(QEMU)) return `${QEMU} is not installed (Debian package qemu-system-x86)`;
  if (!onPath('timeout')) return 'coreutils timeout is not installed';
  const files = kind === 'bios' ? [BIOS_ROM] : [UEFI_ROM, OVMF_CODE, OVMF_VARS];
  const absent = files.filter((f) => !existsSync(f));
  if (absent.length > 0) return `firmware files absent: ${absent.join(', ')} (Debian packages ipxe-qemu, ovmf)`;
  return false;
}

/**
 * A self-checking iPXE script of about `size` bytes. Every line checks the value the line before it
 * stored and stores a fresh pseudo-random one:
 *
 *     iseq ${c} <previous value> && set c <next value> || goto bad
 *
 * so every value is compared with its copy on the next line. A truncated body, or one with bytes
 * missing, repeated, shifted, reordered or taken from another object or offset, ends at `:bad` or in
 * a script error, never at the marker; so does a changed byte in a value (about 98% of the body). A
 * changed byte in the ~35 bytes of syntax per ~2 KiB line is caught only when it breaks the command
 * (Debian's iPXE has no digest or imgverify commands to check the rest).
 * Only the last line, reached with the whole chain intact, echoes `marker`; the marker carries a
 * hash of everything before that line, so it appears nowhere else.
 */
export function selfCheckingScript(size: number, seed: string): { body: Buffer; marker: string } {
  const valueHexChars = 1000;
  let counter = 0;
  const value = (): string => {
    let hex = '';
    while (hex.length < valueHexChars) hex += createHash('sha256').update(`${seed}:${counter++}`).digest('hex');
    return hex.slice(0, valueHexChars);
  };
  const lines: string[] = ['#!ipxe', '# self-checking payload: each line checks the previous value and sets the next'];
  let prev = value();
  lines.push(`set c ${prev}`);
  let length = lines.reduce((n, l) => n + l.length + 1, 0);
  while (length < size - 200) {
    const next = value();
    const line = `iseq \${c} ${prev} && set c ${next} || goto bad`;
    lines.push(line);
    length += line.length + 1;
    prev = next;
  }
  const head = Buffer.from(lines.map((l) => `${l}\n`).join(''));
  const marker = `FIRMWARE-HTTP-OK-${createHash('sha256').update(head).digest('hex').slice(0, 24)}`;
  const tail = [`iseq \${c} ${prev} && echo ${marker} || goto bad`, 'exit 0', ':bad', 'echo SELF-CHECK-FAILED', 'exit 1'];
  return { body: Buffer.concat([head, Buffer.from(tail.map((l) => `${l}\n`).join(''))]), marker };
}

export interface BootResult {
  /** Whether `marker` appeared on the serial console. */
  readonly found: boolean;
  /** From spawning QEMU to the marker (or to the end of the wait). */
  readonly elapsedMs: number;
  /** The serial console with terminal escapes removed. */
  readonly console: string;
  /** Why the wait ended without the marker: QEMU exited (and how), or the timeout. */
  readonly ending?: string;
}

/** The serial console as text: ANSI escapes, backspaces and carriage returns removed. */
/* eslint-disable no-control-regex -- the control bytes are what these remove */
export function plainConsole(raw: string): string {
  return raw
    .replace(/\x1b\[[0-9;?=]*[A-Za-z]/g, '')
    .replace(/\x1b[()][0-9A-Za-z]|\x1b[A-Za-z=>]/g, '')
    .replace(/[^\n]\x08/g, '')
    .replace(/\x08/g, '')
    .replace(/\r/g, '');
}
/* eslint-enable no-control-regex */

/** The last `n` non-empty lines of a console, for a failure message. */
export function lastLines(text: string, n = 40): string {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .slice(-n)
    .join('\n');
}

/**
 * Boots a guest with `kind` firmware whose DHCP boot file (from slirp) is `bootUrl`, and reads the
 * serial console until `marker` appears, QEMU exits, or `timeoutMs` passes. QEMU is always stopped
 * before this returns; it also runs under `timeout`, so it cannot outlive a test process that dies.
 */
export async function bootAndWaitFor(kind: FirmwareKind, bootUrl: string, marker: string, timeoutMs: number): Promise<BootResult> {
  if (/[,\s]/.test(bootUrl)) throw new Error(`boot URL not usable in a -netdev option: ${bootUrl}`);
  const dir = await mkdtemp(path.join(tmpdir(), `tftpgw-fw-${kind}-`));
  try {
    const args = [
      '-accel', 'tcg,tb-size=64',
      '-m', '256',
      '-nodefaults',
      '-display', 'none',
      '-monitor', 'none',
      '-serial', 'stdio',
      '-no-reboot',
      '-boot', 'n',
      '-netdev', `user,id=n0,bootfile=${bootUrl}`,
    ];
    if (kind === 'bios') {
      // SeaBIOS's serial console (it takes over int 10h, where iPXE writes) on COM1.
      const sercon = path.join(dir, 'sercon-port');
      await writeFile(sercon, Buffer.from([0xf8, 0x03]));
      args.push('-fw_cfg', `name=etc/sercon-port,file=${sercon}`, '-device', `e1000,netdev=n0,romfile=${BIOS_ROM}`);
    } else {
      // OVMF mirrors its console (iPXE's output included) to the serial port.
      const vars = path.join(dir, 'OVMF_VARS.fd');
      await copyFile(OVMF_VARS, vars);
      args.push(
        '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`,
        '-drive', `if=pflash,format=raw,unit=1,file=${vars}`,
        '-device', `e1000,netdev=n0,romfile=${UEFI_ROM}`,
      );
    }
    const hardLimitS = Math.ceil(timeoutMs / 1000) + 10;
    const started = Date.now();
    const qemu = spawn('timeout', ['-k', '5', String(hardLimitS), QEMU, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let raw = '';
    let stderr = '';
    let foundAt: number | undefined;
    let ending: string | undefined;
    const exited = new Promise<void>((resolve) => {
      qemu.on('exit', (code, signal) => {
        // SeaBIOS reads etc/sercon-port by that name, so QEMU's warning about it is noise here.
        const said = stderr
          .split('\n')
          .filter((l) => l.trim() !== '' && !l.includes('externally provided fw_cfg item names'))
          .join('\n');
        ending ??= `QEMU exited (${signal ?? `code ${String(code)}`})${said ? `: ${said}` : ''}`;
        resolve();
      });
      qemu.on('error', (err) => {
        ending ??= `could not run QEMU: ${err.message}`;
        resolve();
      });
    });
    const done = new Promise<void>((resolve) => {
      qemu.stdout.on('data', (chunk: Buffer) => {
        raw += chunk.toString('latin1');
        if (foundAt === undefined && plainConsole(raw).includes(marker)) {
          foundAt = Date.now();
          resolve();
        }
      });
      qemu.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString('utf8');
      });
      void exited.then(resolve);
      const timer = setTimeout(() => {
        ending ??= `no marker within ${timeoutMs} ms`;
        resolve();
      }, timeoutMs);
      void exited.then(() => clearTimeout(timer));
    });
    try {
      await done;
    } finally {
      if (qemu.exitCode === null && qemu.signalCode === null) qemu.kill('SIGTERM');
      await exited;
    }
    const found = foundAt !== undefined;
    return { found, elapsedMs: (foundAt ?? Date.now()) - started, console: plainConsole(raw), ...(found ? {} : { ending }) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
