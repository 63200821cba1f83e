import { CLIENT_NAMES, CLIENTS, type ClientName } from '../support/clients.js';

/**
 * The interop matrix, generated from what each client can ask for (CLIENTS). Every cell the issue
 * asks for is either run or listed in `exclusions` with its reason; the suites turn each exclusion
 * into a visible skipped test, and `verify` (where given) checks that the reason still holds.
 */

export const MiB = 1024 * 1024;
/** 65,537 blocks at blksize 512: the block number wraps past 65535. */
export const ROLLOVER_SIZE = 32 * MiB + 1;
export const SMALL_SIZES = [0, 511, 512, 513, MiB] as const;
export const BLKSIZES = [512, 1468, 8192] as const;
export const WINDOWSIZES = [1, 16] as const;

/** Gateway flags for every interop suite. */
export const GATEWAY_FLAGS = ['--max-blksize', '8192', '--max-windowsize', '64', '--allow-write'] as const;

export interface Cell {
  readonly client: ClientName;
  readonly blksize: number;
  readonly windowsize: number;
  readonly sizes: readonly number[];
}

export type ExclusionKind = 'client-cannot' | 'budget';

export interface Exclusion {
  readonly kind: ExclusionKind;
  /** What is not run, e.g. "tftp-hpa blksize 1468 windowsize 1, all sizes". */
  readonly what: string;
  readonly reason: string;
  readonly client: ClientName;
  /** Checked in the suite: the limitation is still there (so a client upgrade flags a stale exclusion). */
  readonly verify?: 'no-options-sent' | 'no-windowsize-flag';
}

export function sizeLabel(size: number): string {
  if (size < MiB) return `${size} B`;
  const rest = size % MiB;
  return `${Math.floor(size / MiB)} MiB${rest ? ` + ${rest} B` : ''}`;
}

function cannotReason(client: ClientName, blksize: number, windowsize: number): { reason: string; verify: Exclusion['verify'] } | undefined {
  const info = CLIENTS[client];
  if (blksize !== 512 && !info.blksize) {
    return { reason: `${client} sends no options at all (no blksize/tsize/windowsize): every transfer is blksize 512, windowsize 1`, verify: 'no-options-sent' };
  }
  if (windowsize !== 1 && !info.windowsize) {
    return info.blksize
      ? { reason: `${client} has no windowsize option (RFC 7440 not implemented): its transfers are lock-step`, verify: 'no-windowsize-flag' }
      : { reason: `${client} sends no options at all: windowsize cannot be asked`, verify: 'no-options-sent' };
  }
  return undefined;
}

/** Downloads: every client × blksize × windowsize × size, minus the exclusions. */
export function downloadMatrix(): { cells: Cell[]; rollover: Cell[]; exclusions: Exclusion[] } {
  const cells: Cell[] = [];
  const rollover: Cell[] = [];
  const exclusions: Exclusion[] = [];
  for (const client of CLIENT_NAMES) {
    for (const blksize of BLKSIZES) {
      for (const windowsize of WINDOWSIZES) {
        const cannot = cannotReason(client, blksize, windowsize);
        if (cannot) {
          exclusions.push({ kind: 'client-cannot', client, what: `${client} download at blksize ${blksize} windowsize ${windowsize} (all sizes)`, ...cannot });
          continue;
        }
        cells.push({ client, blksize, windowsize, sizes: SMALL_SIZES });
        // The 32 MiB + 1 file is the rollover case: run at blksize 512 only (65,537 blocks). atftp
        // runs it at windowsize 1 and 16 (a window straddling the wrap); the rest are lock-step.
        if (blksize === 512) rollover.push({ client, blksize, windowsize, sizes: [ROLLOVER_SIZE] });
      }
    }
    const bigBlk = BLKSIZES.filter((b) => b !== 512 && !cannotReason(client, b, 1));
    if (bigBlk.length > 0) {
      exclusions.push({
        kind: 'budget',
        client,
        what: `${client} 32 MiB + 1 B at blksize ${bigBlk.join(', ')}`,
        reason: 'the block number only wraps at blksize 512 (65,537 blocks; 22,858 at 1468, 4,097 at 8192): run once per client at 512, large transfers at bigger blksizes are covered by 1 MiB',
      });
    }
  }
  return { cells, rollover, exclusions };
}

export const UPLOAD_SIZES = [0, 513, 9 * MiB + 3] as const;

/** Uploads: every client that can upload × blksize × windowsize, sizes 0, 513 and 9 MiB + 3 (multipart at the default 8 MiB parts). */
export function uploadMatrix(): { cells: Cell[]; exclusions: Exclusion[] } {
  const cells: Cell[] = [];
  const exclusions: Exclusion[] = [];
  for (const client of CLIENT_NAMES) {
    if (!CLIENTS[client].upload) continue;
    for (const blksize of BLKSIZES) {
      for (const windowsize of WINDOWSIZES) {
        const cannot = cannotReason(client, blksize, windowsize);
        if (cannot) {
          exclusions.push({ kind: 'client-cannot', client, what: `${client} upload at blksize ${blksize} windowsize ${windowsize} (all sizes)`, ...cannot });
          continue;
        }
        cells.push({ client, blksize, windowsize, sizes: UPLOAD_SIZES });
      }
    }
  }
  return { cells, exclusions };
}
