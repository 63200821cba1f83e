/**
 * Option negotiation (RFC 2347 blksize/2348, timeout+tsize/2349, windowsize/7440).
 * Unknown options are ignored; the OACK carries only options the client asked for and we accept.
 */

export const DEFAULT_BLKSIZE = 512;
export const MIN_BLKSIZE = 8;
export const MAX_BLKSIZE = 65464;
export const MAX_WINDOWSIZE = 65535;
export const MIN_TIMEOUT_S = 1;
export const MAX_TIMEOUT_S = 255;

export interface NegotiationLimits {
  /** Largest blksize granted (a client asking more gets this). */
  readonly maxBlksize: number;
  /** Largest windowsize granted. */
  readonly maxWindowsize: number;
  /** Option names the operator refuses to grant (tftp-hpa --refuse). */
  readonly refused?: ReadonlySet<string>;
}

export interface NegotiatedOptions {
  readonly blksize: number;
  readonly windowsize: number;
  /** Retransmission timeout pinned by the client, in ms; undefined means "server decides" (adaptive). */
  readonly timeoutMs: number | undefined;
  /** tsize the client sent (WRQ: announced size; RRQ: normally 0). */
  readonly requestedTsize: number | undefined;
  /** True when the client asked for tsize and it is accepted (server fills in the value for RRQ). */
  readonly tsizeRequested: boolean;
  /** Options to put in the OACK, in the client's order, without tsize (filled in by the caller). Empty: no OACK. */
  readonly oack: Map<string, string>;
}

/** Parses a decimal option value strictly: digits only, no sign, no spaces; undefined if invalid. */
export function parseOptionInt(value: string): number | undefined {
  if (!/^[0-9]{1,12}$/.test(value)) return undefined;
  return Number(value);
}

export function negotiateOptions(requested: ReadonlyMap<string, string>, limits: NegotiationLimits): NegotiatedOptions {
  const oack = new Map<string, string>();
  let blksize = DEFAULT_BLKSIZE;
  let windowsize = 1;
  let timeoutMs: number | undefined;
  let requestedTsize: number | undefined;
  let tsizeRequested = false;
  const refused = limits.refused;

  for (const [name, raw] of requested) {
    if (refused?.has(name)) continue;
    const value = parseOptionInt(raw);
    switch (name) {
      case 'blksize':
        // Out-of-range values are ignored (not an error): the transfer proceeds at 512.
        if (value !== undefined && value >= MIN_BLKSIZE) {
          blksize = Math.min(value, MAX_BLKSIZE, limits.maxBlksize);
          oack.set(name, String(blksize));
        }
        break;
      case 'windowsize':
        if (value !== undefined && value >= 1) {
          windowsize = Math.min(value, MAX_WINDOWSIZE, limits.maxWindowsize);
          oack.set(name, String(windowsize));
        }
        break;
      case 'timeout':
        if (value !== undefined && value >= MIN_TIMEOUT_S && value <= MAX_TIMEOUT_S) {
          timeoutMs = value * 1000;
          oack.set(name, String(value));
        }
        break;
      case 'tsize':
        if (value !== undefined) {
          requestedTsize = value;
          tsizeRequested = true;
        }
        break;
      default:
        break; // unknown options are ignored, never refused
    }
  }
  return { blksize, windowsize, timeoutMs, requestedTsize, tsizeRequested, oack };
}

/** Builds the final OACK: negotiated options plus tsize (when the client asked for it) in the client's order. */
export function buildOack(
  requested: ReadonlyMap<string, string>,
  negotiated: NegotiatedOptions,
  tsize: number | undefined,
): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of requested.keys()) {
    const v = negotiated.oack.get(name);
    if (v !== undefined) out.set(name, v);
    else if (name === 'tsize' && negotiated.tsizeRequested && tsize !== undefined) out.set(name, String(tsize));
  }
  return out;
}
