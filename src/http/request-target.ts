/**
 * The request target of an HTTP GET or HEAD, turned into the file name the access policy decides
 * on: the path, percent-decoded to bytes (one char per byte, as a TFTP name arrives). Pure; never
 * throws. What is refused here never reaches the policy:
 * - 414 for an overlong target;
 * - 400 for a malformed one: not origin-form or absolute-form, a bad percent escape, an encoded
 *   `/` (a name containing a separator the URL does not show), NUL or another control byte
 *   (literal or encoded), and non-canonical paths (`.` or `..` segments, empty segments), so one
 *   object has one URL and nothing climbs out of the served tree;
 * - 403 for a directory-like name (ends in `/`): there are no directory listings.
 */

/** Longest request target accepted (S3 keys are at most 1024 bytes: 3 KiB fully percent-encoded). */
export const MAX_TARGET_LENGTH = 4096;

export type RequestTarget =
  | { readonly ok: true; readonly name: string }
  | { readonly ok: false; readonly status: 400 | 403 | 414; readonly reason: string };

const HEX = /^[0-9a-fA-F]{2}$/;

export function parseRequestTarget(target: string): RequestTarget {
  if (target.length > MAX_TARGET_LENGTH) return refuse(414, 'request target too long');
  let path = target;
  // absolute-form (RFC 9112 §3.2.2): a client that thinks it talks to a proxy; the authority is ignored.
  const absolute = /^https?:\/\/[^/?#]*/i.exec(path);
  if (absolute) path = path.slice(absolute[0].length) || '/';
  if (!path.startsWith('/')) return refuse(400, 'request target is not an absolute path');
  const query = path.search(/[?#]/);
  if (query >= 0) path = path.slice(0, query);

  // Node hands the request line over as latin1: one char per byte.
  const bytes: number[] = [];
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i);
    if (c === 0x25 /* % */) {
      const hex = path.slice(i + 1, i + 3);
      if (!HEX.test(hex)) return refuse(400, 'malformed percent escape');
      const b = parseInt(hex, 16);
      if (b === 0x2f) return refuse(400, 'encoded / in path');
      if (b < 0x20 || b === 0x7f) return refuse(400, 'encoded control byte in path');
      bytes.push(b);
      i += 2;
      continue;
    }
    if (c < 0x20 || c === 0x7f || c > 0xff) return refuse(400, 'control byte in path');
    bytes.push(c);
  }
  const name = Buffer.from(bytes).toString('latin1');
  const segments = name.split('/').slice(1);
  if (segments.length === 1 && segments[0] === '') return refuse(403, 'no directory listings');
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    if (s === '.' || s === '..') return refuse(400, 'dot segment in path');
    if (s === '' && i < segments.length - 1) return refuse(400, 'empty segment in path');
  }
  if (segments[segments.length - 1] === '') return refuse(403, 'no directory listings');
  return { ok: true, name };
}

function refuse(status: 400 | 403 | 414, reason: string): RequestTarget {
  return { ok: false, status, reason };
}
