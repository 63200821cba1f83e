import { TransferError } from '../session/errors.js';

export interface KeyMappingOptions {
  /** Key prefix every request is confined to ('' or ending in '/'). */
  readonly prefix: string;
  /** Longest file name accepted, in bytes. */
  readonly maxNameLength: number;
}

/**
 * Turns a client's file name into an S3 key under the prefix, or throws INVALID_PATH.
 * A leading slash means "root of the served tree" (as tftp-hpa -s), never the host's root.
 * Refused: empty names, `..` segments (with / or \ as separator, literal or percent-encoded),
 * NUL and control characters, Windows drive letters, names longer than the limit.
 */
export function objectKeyFor(filename: string, options: KeyMappingOptions): string {
  if (filename.length === 0) throw invalid('empty file name');
  if (filename.length > options.maxNameLength) throw invalid('file name too long');
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(filename)) throw invalid('control character in file name');
  if (/^[a-zA-Z]:/.test(filename)) throw invalid('drive letter in file name');
  if (/%2e/i.test(filename) && /(^|[/\\])(\.|%2e){2}([/\\]|$)/i.test(filename)) throw invalid('encoded parent reference');
  const segments = filename.split(/[/\\]/);
  const kept: string[] = [];
  for (const segment of segments) {
    if (segment === '..') throw invalid('parent reference in file name');
    if (segment === '' || segment === '.') continue;
    kept.push(segment);
  }
  if (kept.length === 0) throw invalid('file name names a directory');
  // Backslashes are separators only for the check above; the key keeps the name as sent
  // (mapping them to slashes is an explicit operator choice).
  const relative = filename.includes('\\') ? filename.replace(/^[/\\]+/, '') : kept.join('/');
  return options.prefix + relative;
}

function invalid(reason: string): TransferError {
  return new TransferError('INVALID_PATH', reason);
}

/** Normalises a configured prefix: no leading slash, one trailing slash unless empty. */
export function normalisePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+/, '').replace(/\/+$/, '');
  return trimmed.length === 0 ? '' : `${trimmed}/`;
}
