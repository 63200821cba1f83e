/**
 * HTTP preconditions and byte ranges for one object version (RFC 9110 §13, §14), as pure
 * decisions: which status a GET or HEAD gets, and which bytes its body carries.
 */

export interface Representation {
  readonly size: number;
  /** Strong entity tag, quoted (S3's ETag). */
  readonly etag: string;
  readonly lastModifiedMs: number | undefined;
}

export interface RequestConditions {
  readonly method: 'GET' | 'HEAD';
  readonly ifMatch?: string | undefined;
  readonly ifNoneMatch?: string | undefined;
  readonly ifModifiedSince?: string | undefined;
  readonly ifUnmodifiedSince?: string | undefined;
  readonly range?: string | undefined;
  readonly ifRange?: string | undefined;
}

export type Decision =
  | { readonly status: 200; readonly start: 0; readonly end: number }
  /** `end` is exclusive. */
  | { readonly status: 206; readonly start: number; readonly end: number }
  | { readonly status: 304 }
  | { readonly status: 412 }
  | { readonly status: 416 };

/** Splits an entity-tag list header; weak tags keep their `W/` prefix. `*` is its own entry. */
export function parseEtagList(header: string): string[] {
  const tags: string[] = [];
  const re = /\s*(\*|(?:W\/)?"[^"]*")\s*(?:,|$)/gy;
  let m: RegExpExecArray | null;
  while ((m = re.exec(header)) !== null) {
    tags.push(m[1]!);
    if (re.lastIndex >= header.length) break;
  }
  return tags;
}

const opaque = (tag: string): string => (tag.startsWith('W/') ? tag.slice(2) : tag);

/** Weak comparison (If-None-Match): the opaque tags are equal. */
function weakMatch(header: string, etag: string): boolean {
  return parseEtagList(header).some((t) => t === '*' || opaque(t) === opaque(etag));
}

/** Strong comparison (If-Match, If-Range): neither tag is weak and they are equal. */
function strongMatch(header: string, etag: string): boolean {
  return parseEtagList(header).some((t) => t === '*' || (!t.startsWith('W/') && !etag.startsWith('W/') && t === etag));
}

/** An HTTP-date in ms, whole seconds; undefined when unparseable. */
export function parseHttpDate(text: string): number | undefined {
  const ms = Date.parse(text);
  return Number.isFinite(ms) ? Math.floor(ms / 1000) * 1000 : undefined;
}

const seconds = (ms: number): number => Math.floor(ms / 1000) * 1000;

/**
 * The outcome of a GET or HEAD for `rep` (RFC 9110 §13.2.2 order: If-Match, If-Unmodified-Since,
 * If-None-Match, If-Modified-Since, then Range with If-Range). One byte range is served as 206; a
 * multi-range or unparseable Range header gets the whole object (allowed by §14.2).
 */
export function decide(rep: Representation, req: RequestConditions): Decision {
  const whole = { status: 200, start: 0, end: rep.size } as const;
  if (req.ifMatch !== undefined) {
    if (!strongMatch(req.ifMatch, rep.etag)) return { status: 412 };
  } else if (req.ifUnmodifiedSince !== undefined && rep.lastModifiedMs !== undefined) {
    const since = parseHttpDate(req.ifUnmodifiedSince);
    if (since !== undefined && seconds(rep.lastModifiedMs) > since) return { status: 412 };
  }
  if (req.ifNoneMatch !== undefined) {
    if (weakMatch(req.ifNoneMatch, rep.etag)) return { status: 304 };
  } else if (req.ifModifiedSince !== undefined && rep.lastModifiedMs !== undefined) {
    const since = parseHttpDate(req.ifModifiedSince);
    if (since !== undefined && seconds(rep.lastModifiedMs) <= since) return { status: 304 };
  }
  if (req.method !== 'GET' || req.range === undefined) return whole;
  if (req.ifRange !== undefined && !ifRangeHolds(req.ifRange, rep)) return whole;
  const range = parseSingleRange(req.range, rep.size);
  if (range === 'ignore') return whole;
  if (range === 'unsatisfiable') return { status: 416 };
  return { status: 206, start: range.start, end: range.end };
}

/** If-Range: an entity tag must match strongly; a date must equal Last-Modified exactly. */
function ifRangeHolds(value: string, rep: Representation): boolean {
  const v = value.trim();
  if (v.startsWith('"') || v.startsWith('W/')) return !v.startsWith('W/') && v === rep.etag;
  const date = parseHttpDate(v);
  return date !== undefined && rep.lastModifiedMs !== undefined && date === seconds(rep.lastModifiedMs);
}

/**
 * `bytes=a-b`, `bytes=a-` or `bytes=-n` against `size` (end exclusive in the answer). Another
 * unit, a syntax error or several ranges: 'ignore' (the whole object is sent).
 */
export function parseSingleRange(header: string, size: number): { start: number; end: number } | 'ignore' | 'unsatisfiable' {
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return 'ignore';
  const [, first, last] = m;
  if (first === '' && last === '') return 'ignore';
  if (first === '') {
    const suffix = Number(last);
    if (!Number.isSafeInteger(suffix)) return 'ignore';
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size };
  }
  const start = Number(first);
  const end = last === '' ? Number.MAX_SAFE_INTEGER : Number(last);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || end < start) return 'ignore';
  if (start >= size) return 'unsatisfiable';
  return { start, end: Math.min(end, size - 1) + 1 };
}
