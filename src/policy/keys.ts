import { TransferError } from '../errors.js';

/** S3's limit on a key, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 1024;

/**
 * Turns a client's file name into its path relative to the served tree, or throws INVALID_PATH.
 * A leading slash means "root of the served tree" (as tftp-hpa -s), never the host's root.
 * Refused: empty names, `..` segments (with / or \ as separator, literal or percent-encoded),
 * NUL and control characters (C0, DEL and C1), Windows drive letters, names longer than the limit.
 */
export function relativePathFor(filename: string, maxNameLength: number): string {
  if (filename.length === 0) throw invalid('empty file name');
  if (filename.length > maxNameLength) throw invalid('file name too long');
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f-\x9f]/.test(filename)) throw invalid('control character in file name');
  if (/^[/\\]*[a-zA-Z]:/.test(filename)) throw invalid('drive letter in file name');
  if (/^[/\\]{2}/.test(filename) && filename.includes('\\')) throw invalid('UNC path in file name');
  if (/%2e/i.test(filename) && /(^|[/\\])(\.|%2e){2}([/\\]|$)/i.test(filename)) throw invalid('encoded parent reference');
  const segments = filename.split(/[/\\]/);
  const kept: string[] = [];
  for (const segment of segments) {
    if (segment === '..') throw invalid('parent reference in file name');
    if (segment === '' || segment === '.') continue;
    kept.push(segment);
  }
  // A name ending in a separator (or `/.`) names a directory, never the object without it: refused.
  const last = segments[segments.length - 1];
  if (kept.length === 0 || last === '' || last === '.') throw invalid('file name names a directory');
  // Backslashes are separators only for the check above; the key keeps the name as sent
  // (mapping them to slashes is an explicit operator choice: --map-backslashes).
  return filename.includes('\\') ? filename.replace(/^[/\\]+/, '') : kept.join('/');
}

/** Joins a prefix and a relative path, refusing keys S3 would not take. */
export function keyUnder(prefix: string, relative: string): string {
  const key = prefix + relative;
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) throw invalid('key too long');
  return key;
}

function invalid(reason: string): TransferError {
  return new TransferError('INVALID_PATH', reason);
}

/** Normalises a configured prefix: no leading slash, one trailing slash unless empty. */
export function normalisePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+/, '').replace(/\/+$/, '');
  return trimmed.length === 0 ? '' : `${trimmed}/`;
}
