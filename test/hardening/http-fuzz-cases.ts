import { mulberry32 } from '../support/prng.js';

/**
 * Malformed (and a few accidentally valid) HTTP requests for the HTTP boot front end's fuzz, from
 * a seeded PRNG: every case is repeatable from (seed, index). Each case says what the server may
 * answer: any status of `allowed`, or exactly `exact` for the kinds whose answer is certain.
 */

/** Objects the fuzz's gateway holds (the multi-MiB download object is not among them: HEAD only). */
export const FUZZ_OBJECTS = {
  small: 'small.bin',
  mid: 'mid.bin',
  nested: 'dir/nested.bin',
  spaced: 'sp ace.bin',
  big: 'big.bin',
} as const;

/**
 * What a fuzz connection may get back. 412: garbage If-Match/If-Unmodified-Since on an existing
 * object is a failed precondition (RFC 9110 §13.1.1), an answer as correct as 400.
 */
export const ALLOWED = new Set([400, 403, 404, 405, 408, 412, 414, 416, 429, 431, 503, 200, 206, 304]);

export interface FuzzCase {
  readonly index: number;
  readonly kind: string;
  /** Written one after another, a turn apart. */
  readonly chunks: Buffer[];
  /** The method of each request sent, in order (for HEAD: no body in its answer). */
  readonly methods: string[];
  /**
   * Half-close after the last chunk. Cases of complete requests do not: a half-close while an
   * answer waits on S3 ends the connection unanswered (Node's http server without
   * httpAllowHalfOpen), so they close once every request is answered instead; left open, an
   * unfinished head must be timed out by the server.
   */
  readonly end: boolean;
  /** The first answer must be exactly this status. */
  readonly exact?: number | readonly number[] | undefined;
  /** A narrower set than ALLOWED. */
  readonly allowed?: ReadonlySet<number> | undefined;
  /** The client sends more than the server reads (oversized head): the close may be a reset. */
  readonly oversized?: boolean | undefined;
}

const CRLF = '\r\n';

export function fuzzCases(seed: number, count: number, etag: string): FuzzCase[] {
  const rnd = mulberry32(seed);
  const int = (n: number): number => Math.floor(rnd() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const chance = (p: number): boolean => rnd() < p;
  const latin1 = (n: number, from = 0, to = 256): string => {
    let s = '';
    for (let i = 0; i < n; i++) s += String.fromCharCode(from + int(to - from));
    return s;
  };
  const visible = (n: number): string => latin1(n, 0x21, 0x7f);
  const b = (s: string): Buffer => Buffer.from(s, 'latin1');
  const anyName = (): string => pick([FUZZ_OBJECTS.small, FUZZ_OBJECTS.mid, FUZZ_OBJECTS.nested, 'missing.bin', 'dir/missing', 'sp%20ace.bin']);
  const host = (): string => pick(['x', 'gateway', '127.0.0.1', '[::1]:80', 'a.example:8080', '']);
  const request = (method: string, target: string, headers: string[] = [], version = 'HTTP/1.1'): string =>
    `${method} ${target} ${version}${CRLF}${[`Host: ${host() || 'x'}`, ...headers].map((h) => h + CRLF).join('')}${CRLF}`;

  const PATH_PIECES = [
    '..', '.', '%2e%2e', '%2E%2e', '.%2e', '%2e.', '%2e', '%2F', '%2f', '%00', '%0a', '%0d%0a', '%7f', '%1f', '%', '%z', '%4',
    '%zz', '%25', '%252e%252e', '%c0%ae%c0%ae', '%e2%80%ae', '\\', '..\\..', '%5c', '%5C..', '~', '*', ';a=1', '', '%20', ' ',
    '\t', '\x01', '\x7f', '\x00', '\xff', '\xc3\xa9', 'dir', 'small.bin', 'mid.bin', 'nested.bin', 'boot', '?x=1', '#f', 'a'.repeat(300),
  ];
  const fuzzedPath = (): string => {
    const n = 1 + int(5);
    const parts: string[] = [];
    for (let i = 0; i < n; i++) parts.push(chance(0.15) ? latin1(1 + int(6)) : pick(PATH_PIECES));
    return (chance(0.9) ? '/' : '') + parts.join(chance(0.8) ? '/' : '');
  };
  const rangeValue = (): string =>
    pick([
      () => `bytes=${int(70000)}-${int(70000)}`,
      () => `bytes=${int(70000)}-`,
      () => `bytes=-${int(70000)}`,
      () => `bytes=-0`,
      () => `bytes=0-0,1-1`,
      () => `bytes=${int(10)}-${int(10)}, ${int(100)}-${int(200)}`,
      () => `bytes=99999999999999999999-`,
      () => `bytes=-99999999999999999999`,
      () => `bytes=${-int(100)}-${int(100)}`,
      () => `bytes = ${int(100)} - ${int(200)}`,
      () => `BYTES=${int(100)}-`,
      () => `items=0-1`,
      () => `bytes=`,
      () => `bytes=-`,
      () => `bytes=a-b`,
      () => `bytes=1-2-3`,
      () => `bytes=0x10-0x20`,
      () => `bytes=1e3-2e3`,
      () => visible(int(40)),
      () => '',
    ])();
  const dateValue = (): string =>
    pick([
      () => new Date(int(2 ** 31) * 1000).toUTCString(),
      () => 'Sun, 06 Nov 1994 08:49:37 GMT',
      () => 'Sunday, 06-Nov-94 08:49:37 GMT',
      () => 'Sun Nov  6 08:49:37 1994',
      () => 'Thu, 01 Jan 1970 00:00:00 GMT',
      () => 'Fri, 31 Dec 9999 23:59:59 GMT',
      () => 'not a date',
      () => String(int(2 ** 31)),
      () => visible(int(30)),
      () => '',
    ])();
  const etagValue = (): string => pick([etag, `W/${etag}`, '*', '"x"', 'W/"x"', `${etag}, "y"`, `"y", ${etag}`, etag.slice(0, -1), '"', ',,,', visible(int(30)), '']);

  const kinds: { weight: number; make: (index: number) => FuzzCase }[] = [
    {
      // Paths built from traversal pieces, percent escapes, control bytes and raw bytes.
      weight: 18,
      make: (index) => {
        const method = pick(['GET', 'GET', 'HEAD']);
        return { index, kind: 'path', chunks: [b(request(method, fuzzedPath()))], methods: [method], end: false };
      },
    },
    {
      // Traversal and separator tricks with an answer that is certain: 400 (403 for a directory-like name).
      weight: 8,
      make: (index) => {
        const method = pick(['GET', 'HEAD']);
        const [target, exact] = pick<[string, number]>([
          [`/${pick(['%2e%2e', '%2E%2E', '..', '.%2e', '%2e.'])}/${FUZZ_OBJECTS.small}`, 400],
          [`/dir/${pick(['%2e%2e', '..', '%2e', '.'])}/${FUZZ_OBJECTS.small}`, 400],
          [`/dir/nested.bin/${pick(['..', '%2e%2e'])}`, 400],
          [`/dir${pick(['%2F', '%2f'])}nested.bin`, 400],
          [`/${FUZZ_OBJECTS.small}${pick(['%00', '%01', '%0a', '%0d', '%1f', '%7f', '%7F'])}`, 400],
          [`/${pick(['%', '%2', '%g0', '%%', '%2x'])}${FUZZ_OBJECTS.small}`, 400],
          [`/dir//nested.bin`, 400],
          [`//${FUZZ_OBJECTS.small}`, 400],
          [`/dir/`, 403],
          [`/`, 403],
          [`/?${visible(10)}`, 403],
          [`${pick(['', '*', 'small.bin', 'ftp://x/small.bin', 'x:/small.bin'])}`, 400],
        ]);
        return { index, kind: 'path-exact', chunks: [b(request(method, target))], methods: [method], end: false, exact };
      },
    },
    {
      // Overlong targets: 414 while the head fits the parser's 32 KiB, 431 beyond.
      weight: 3,
      make: (index) => {
        const band = int(3);
        const length = band === 0 ? 4097 + int(27 * 1024) : band === 1 ? 31 * 1024 + int(2 * 1024) : 33 * 1024 + int(31 * 1024);
        const target = `/${pick(['a', '%41', 'dir/'])}`.repeat(length).slice(0, length);
        const exact = band === 0 ? 414 : band === 1 ? [414, 431] : 431;
        return { index, kind: 'long-url', chunks: [b(request('GET', target))], methods: ['GET'], end: false, exact, oversized: band !== 0 };
      },
    },
    {
      // absolute-form and other target forms.
      weight: 5,
      make: (index) => {
        const method = pick(['GET', 'HEAD']);
        const target = pick([
          () => `http://${host() || 'h'}/${anyName()}`,
          () => `HTTP://H/${anyName()}`,
          () => `https://h:443/${anyName()}?q`,
          () => `http://user:pw@h/${anyName()}`,
          () => `http://h`,
          () => `http://h?x=/small.bin`,
          () => `http://h/%2e%2e/${anyName()}`,
          () => `http://h/dir%2fnested.bin`,
          () => `ftp://h/${anyName()}`,
          () => `file:///etc/passwd`,
          () => `h:80`,
          () => `http:/small.bin`,
          () => `http:///small.bin`,
          () => `*`,
        ])();
        return { index, kind: 'absolute-form', chunks: [b(request(method, target))], methods: [method], end: false };
      },
    },
    {
      // Methods: known ones other than GET/HEAD (405), unknown tokens and garbage (400), CONNECT.
      weight: 7,
      make: (index) => {
        const method = pick([
          'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE', 'PROPFIND', 'MKCOL', 'LOCK', 'COPY', 'MOVE', 'SEARCH', 'PURGE',
          'get', 'Get', 'GETX', 'GE', 'G ET', 'HEADS', 'BREW', 'CONNECT', '', '-', 'GET\x00', 'GET\t', visible(1 + int(12)), latin1(1 + int(8)),
        ]);
        const body = method === 'POST' || method === 'PUT' ? visible(int(200)) : '';
        const headers = body ? [`Content-Length: ${body.length}`] : [];
        const known = ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE', 'PROPFIND', 'MKCOL', 'LOCK', 'COPY', 'MOVE', 'SEARCH', 'PURGE'].includes(method);
        return {
          index,
          kind: 'method',
          chunks: [b(request(method, `/${anyName()}`, headers) + body)],
          methods: [method],
          end: false,
          ...(known ? { allowed: new Set([400, 405]) } : {}),
        };
      },
    },
    {
      // HTTP versions that are not 1.0 or 1.1, and broken request-line spacing.
      weight: 5,
      make: (index) => {
        const version = pick([
          'HTTP/1.2', 'HTTP/2.0', 'HTTP/3.0', 'HTTP/0.9', 'HTTP/1', 'HTTP/1.1.1', 'http/1.1', 'HTTP/01.1', 'HTTP/1.10', 'HTTP/9.9',
          'HTTP/-1.1', 'HTTP/1.x', 'HTTPS/1.1', 'ICAP/1.0', 'HTTP/ 1.1', 'HTTP/1.1 extra', 'HTTP/1.1\t', '', visible(int(10)),
        ]);
        const lineForm = int(4);
        const name = `/${anyName()}`;
        const line =
          lineForm === 0 ? `GET ${name} ${version}`
          : lineForm === 1 ? `GET  ${name}  ${version}`
          : lineForm === 2 ? `GET\t${name}\t${version}`
          : ` GET ${name} ${version}`;
        return { index, kind: 'version', chunks: [b(`${line}${CRLF}Host: x${CRLF}${CRLF}`)], methods: ['GET'], end: false };
      },
    },
    {
      // Header floods: many headers, huge values, huge names; 431 past the 32 KiB head.
      weight: 5,
      make: (index) => {
        const form = int(4);
        const headers: string[] = [];
        if (form === 0) for (let i = 0, n = int(4000); i < n; i++) headers.push(`X-${i}: ${visible(int(8))}`);
        else if (form === 1) headers.push(`X-Big: ${visible(1000 + int(60_000))}`);
        else if (form === 2) headers.push(`${'X'.repeat(1000 + int(40_000))}: v`);
        else for (let i = 0, n = int(3000); i < n; i++) headers.push(`Cookie: ${visible(int(20))}`);
        const head = request('GET', `/${FUZZ_OBJECTS.small}`, headers);
        const size = Buffer.byteLength(head, 'latin1');
        // Node's parser refuses a head past maxHeaderSize (32 KiB) and also past about 1,000 header
        // lines (HPE_HEADER_OVERFLOW either way): a margin around both.
        const count = headers.length + 1;
        const exact = size > 33 * 1024 || count > 1100 ? 431 : size < 31 * 1024 && count < 900 ? 200 : [200, 431];
        return { index, kind: 'header-flood', chunks: [b(head)], methods: ['GET'], end: false, exact, oversized: size > 31 * 1024 };
      },
    },
    {
      // Range headers: garbage, multiple ranges, several Range fields.
      weight: 8,
      make: (index) => {
        const ranges = Array.from({ length: 1 + int(3) }, () => `${pick(['Range', 'range', 'RANGE'])}: ${rangeValue()}`);
        const name = pick([FUZZ_OBJECTS.small, FUZZ_OBJECTS.mid, FUZZ_OBJECTS.nested]);
        return { index, kind: 'range', chunks: [b(request('GET', `/${name}`, ranges))], methods: ['GET'], end: false, allowed: new Set([200, 206, 416]) };
      },
    },
    {
      // Preconditions: If-* with garbage, real and near-miss validators, combined with Range.
      weight: 7,
      make: (index) => {
        const headers: string[] = [];
        for (let i = 1 + int(4); i > 0; i--) {
          const h = pick(['If-Match', 'If-None-Match', 'If-Modified-Since', 'If-Unmodified-Since', 'If-Range', 'Range']);
          const v = h === 'Range' ? rangeValue() : h.endsWith('Since') ? dateValue() : h === 'If-Range' ? pick([etagValue, dateValue])() : etagValue();
          headers.push(`${h}: ${v}`);
        }
        const method = pick(['GET', 'GET', 'HEAD']);
        const name = pick([FUZZ_OBJECTS.small, FUZZ_OBJECTS.mid]);
        return {
          index,
          kind: 'conditional',
          chunks: [b(request(method, `/${name}`, headers))],
          methods: [method],
          end: false,
          allowed: new Set([200, 206, 304, 412, 416]),
        };
      },
    },
    {
      // NUL and other control bytes in header names and values: 400.
      weight: 5,
      make: (index) => {
        const bad = pick(['\x00', '\x00', '\x01', '\x08', '\x0b', '\x0c', '\x1b', '\x7f']);
        const where = int(3);
        const header = where === 0 ? `X-A${bad}B: v` : where === 1 ? `X-A: v${bad}w` : `Range${bad}: bytes=0-1`;
        // DEL and some control bytes are allowed in values by the parser (obs-text): not exact there.
        const exact = where === 1 && bad !== '\x00' ? undefined : 400;
        return { index, kind: 'header-control', chunks: [b(request('GET', `/${FUZZ_OBJECTS.small}`, [header]))], methods: ['GET'], end: false, exact };
      },
    },
    {
      // Bare LF (and bare CR) line ends in place of some or all CRLFs.
      weight: 5,
      make: (index) => {
        const text = request('GET', `/${FUZZ_OBJECTS.small}`, [`Accept: */*`, `X-Y: z`]);
        const replaceWith = pick(['\n', '\n', '\r', '\r\r\n', '\n\r']);
        const all = chance(0.4);
        let seen = 0;
        const target = int(4);
        const out = text.replace(/\r\n/g, (m) => (all || seen++ === target ? replaceWith : m));
        return { index, kind: 'bare-lf', chunks: [b(out)], methods: ['GET'], end: true };
      },
    },
    {
      // Pipelined requests: valid and invalid, GET and HEAD, some with bodies.
      weight: 8,
      make: (index) => {
        const methods: string[] = [];
        let text = '';
        for (let i = 2 + int(5); i > 0; i--) {
          const form = int(8);
          if (form <= 3) {
            const name = pick([FUZZ_OBJECTS.small, FUZZ_OBJECTS.nested, 'missing.bin', FUZZ_OBJECTS.big]);
            // The multi-MiB object only by HEAD: a fuzz connection reads whatever it is sent.
            const m = name === FUZZ_OBJECTS.big ? 'HEAD' : pick(['GET', 'HEAD']);
            methods.push(m);
            text += request(m, `/${name}`, chance(0.3) ? [`Range: ${rangeValue()}`] : [], chance(0.2) ? 'HTTP/1.0' : 'HTTP/1.1');
          } else if (form === 4) {
            methods.push('GET');
            text += request('GET', fuzzedPath());
          } else if (form === 5) {
            methods.push('POST');
            const body = visible(int(50));
            text += request('POST', `/${FUZZ_OBJECTS.small}`, [`Content-Length: ${body.length}`]) + body;
          } else if (form === 6) {
            methods.push('GET');
            text += request('GET', `/${FUZZ_OBJECTS.small}`, ['Connection: close']);
          } else {
            methods.push('GET');
            text += `GET /${FUZZ_OBJECTS.small} HTTP/1.1${CRLF}Host: x${CRLF}${visible(int(20))}${CRLF}${CRLF}`;
          }
        }
        return { index, kind: 'pipeline', chunks: [b(text)], methods, end: false };
      },
    },
    {
      // A valid request with a few random byte mutations.
      weight: 8,
      make: (index) => {
        const method = pick(['GET', 'HEAD']);
        const bytes = [...b(request(method, `/${anyName()}`, chance(0.5) ? [`Range: ${rangeValue()}`] : []))];
        for (let i = 1 + int(5); i > 0; i--) {
          const at = int(bytes.length);
          const op = int(4);
          if (op === 0) bytes[at] = int(256);
          else if (op === 1) bytes.splice(at, 0, int(256));
          else if (op === 2) bytes.splice(at, 1 + int(4));
          else bytes.splice(at, 0, ...bytes.slice(at, at + int(20)));
        }
        const buf = Buffer.from(bytes);
        const sentMethod = /^(GET|HEAD) /.exec(buf.toString('latin1'))?.[1] ?? method;
        return { index, kind: 'mutation', chunks: [buf], methods: [sentMethod], end: true };
      },
    },
    {
      // Noise.
      weight: 3,
      make: (index) => ({ index, kind: 'noise', chunks: [b(latin1(int(3000)))], methods: [], end: true }),
    },
    {
      // A valid request cut short (then end of input): 400 or a quiet close.
      weight: 4,
      make: (index) => {
        const text = request('GET', `/${FUZZ_OBJECTS.small}`, ['Accept: */*']);
        return { index, kind: 'truncated', chunks: [b(text.slice(0, int(text.length - 1)))], methods: ['GET'], end: true, allowed: new Set([400]) };
      },
    },
    {
      // A valid request in many small writes: served as if sent at once.
      weight: 3,
      make: (index) => {
        const name = pick([FUZZ_OBJECTS.small, FUZZ_OBJECTS.nested, FUZZ_OBJECTS.spaced]);
        const text = request('GET', `/${name.replace(' ', '%20')}`, ['Accept: */*', 'User-Agent: iPXE/1.21.1']);
        const chunks: Buffer[] = [];
        for (let at = 0; at < text.length; ) {
          const n = 1 + int(12);
          chunks.push(b(text.slice(at, at + n)));
          at += n;
        }
        return { index, kind: 'split', chunks, methods: ['GET'], end: false, exact: 200 };
      },
    },
    {
      // Message framing: bad or conflicting Content-Length, Transfer-Encoding games, bad chunks.
      weight: 5,
      make: (index) => {
        const framing = pick([
          ['Content-Length: abc'],
          ['Content-Length: -1'],
          ['Content-Length: 1, 2'],
          ['Content-Length: 5', 'Content-Length: 6'],
          ['Content-Length: 99999999999999999999'],
          ['Transfer-Encoding: chunked', 'Content-Length: 3'],
          ['Transfer-Encoding: gzip'],
          ['Transfer-Encoding: chunked, gzip'],
          ['Transfer-Encoding: chunked'],
          ['Transfer-Encoding:  chunked '],
          ['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'],
          ['Content-Length : 3'],
          [' Content-Length: 3'],
          ['Host: second'],
          ['X: a', ' folded'],
          [': empty-name'],
          ['NoColon'],
          ['Connection: upgrade', 'Upgrade: websocket'],
          ['Connection: close, keep-alive, ' + visible(10)],
        ]);
        const body = pick(['', 'abc', '5\r\nhello\r\n0\r\n\r\n', 'zz\r\nxx\r\n0\r\n\r\n', 'ffffffffffffffffff\r\n', '3\r\nab', visible(int(100))]);
        return { index, kind: 'framing', chunks: [b(request('GET', `/${FUZZ_OBJECTS.small}`, framing) + body)], methods: ['GET', 'GET'], end: true };
      },
    },
    {
      // A request head never finished, input left open: the header timeout answers 408.
      weight: 1,
      make: (index) => {
        const text = request('GET', `/${FUZZ_OBJECTS.small}`, ['Accept: */*']);
        return { index, kind: 'unfinished', chunks: [b(text.slice(0, 1 + int(text.length - 4)))], methods: ['GET'], end: false, exact: 408 };
      },
    },
  ];
  const total = kinds.reduce((s, k) => s + k.weight, 0);
  const cases: FuzzCase[] = [];
  for (let i = 0; i < count; i++) {
    let r = int(total);
    const kind = kinds.find((k) => (r -= k.weight) < 0)!;
    cases.push(kind.make(i));
  }
  return cases;
}

/** A case's bytes as JSON text (shortened), for a failure message. */
export function describeCase(c: FuzzCase): string {
  const text = Buffer.concat(c.chunks).toString('latin1');
  const shown = text.length > 600 ? `${text.slice(0, 400)}…(${text.length} bytes)…${text.slice(-100)}` : text;
  return `#${c.index} ${c.kind}${c.end ? '' : ' (input left open)'}: ${JSON.stringify(shown)}`;
}
