/**
 * netascii (RFC 764 as used by RFC 1350) as streams: the local form is Unix text (LF),
 * the wire form has CR LF for a newline and CR NUL for a bare CR. The encoder needs no state
 * (each local byte maps on its own); the decoder keeps state across chunks, because a CR may
 * end one block and its partner (LF or NUL) start the next.
 */

const CR = 0x0d;
const LF = 0x0a;
const NUL = 0x00;

/** Local bytes → wire bytes: LF → CR LF, CR → CR NUL. Stateless per byte, so chunks convert independently. */
export function encodeNetascii(chunk: Buffer): Buffer {
  let extra = 0;
  for (let i = 0; i < chunk.length; i++) {
    const b = chunk[i];
    if (b === LF || b === CR) extra++;
  }
  if (extra === 0) return chunk;
  const out = Buffer.allocUnsafe(chunk.length + extra);
  let o = 0;
  for (let i = 0; i < chunk.length; i++) {
    const b = chunk[i]!;
    if (b === LF) {
      out[o++] = CR;
      out[o++] = LF;
    } else if (b === CR) {
      out[o++] = CR;
      out[o++] = NUL;
    } else {
      out[o++] = b;
    }
  }
  return out;
}

/** Wire bytes → local bytes: CR LF → LF, CR NUL → CR; a CR followed by anything else is kept as is. */
export class NetasciiDecoder {
  private pendingCr = false;

  decode(chunk: Buffer): Buffer {
    const out = Buffer.allocUnsafe(chunk.length + 1);
    let o = 0;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i]!;
      if (this.pendingCr) {
        this.pendingCr = false;
        if (b === LF) {
          out[o++] = LF;
          continue;
        }
        if (b === NUL) {
          out[o++] = CR;
          continue;
        }
        out[o++] = CR; // lone CR: keep it, then handle this byte normally
      }
      if (b === CR) this.pendingCr = true;
      else out[o++] = b;
    }
    return out.subarray(0, o);
  }

  /** Flushes a CR left dangling at the end of the stream. */
  end(): Buffer {
    if (!this.pendingCr) return Buffer.alloc(0);
    this.pendingCr = false;
    return Buffer.from([CR]);
  }
}
