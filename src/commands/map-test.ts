import { parseClientAddress } from '../policy/client-address.js';
import { resolveRequest, PolicyRefusal, type AccessPolicyOptions, type Operation } from '../policy/access-policy.js';

/**
 * `tftp-gateway map-test`: runs the policy over names read from stdin, without traffic, so an
 * operator can try map rules, name conveniences, client prefixes and client rules.
 *
 * Input, one request a line: `NAME [CLIENT-IP] [get|put]` (a tab may separate the fields when the
 * name has spaces; the client defaults to 0.0.0.0 and the operation to get / --write's put).
 * Output, one line each: `NAME<TAB>CLIENT<TAB>OP<TAB>-> KEY` or `...<TAB>refused: REASON (detail)`.
 */
export interface MapTestLine {
  readonly name: string;
  readonly client: string;
  readonly operation: Operation;
}

export function parseMapTestLine(line: string, defaultOperation: Operation): MapTestLine | undefined {
  const text = line.replace(/\r$/, '');
  if (text.trim().length === 0 || text.trimStart().startsWith('#')) return undefined;
  let fields = text.includes('\t') ? text.split('\t') : text.trim().split(/ +/);
  let operation = defaultOperation;
  const last = fields[fields.length - 1]!.toLowerCase();
  if (fields.length > 1 && ['get', 'put', 'read', 'write', 'rrq', 'wrq'].includes(last)) {
    operation = ['get', 'read', 'rrq'].includes(last) ? 'read' : 'write';
    fields = fields.slice(0, -1);
  }
  let client = '0.0.0.0';
  if (fields.length > 1 && parseClientAddress(fields[fields.length - 1]!).family !== undefined) {
    client = fields[fields.length - 1]!;
    fields = fields.slice(0, -1);
  }
  return { name: text.includes('\t') ? fields.join('\t') : fields.join(' '), client, operation };
}

export function mapTestLine(policy: AccessPolicyOptions, req: MapTestLine): string {
  const head = `${req.name}\t${req.client}\t${req.operation === 'read' ? 'get' : 'put'}`;
  try {
    const r = resolveRequest(policy, wireName(req.name), req.operation, parseClientAddress(req.client));
    const rules = r.rulesApplied.length > 0 ? ` (rules on lines ${r.rulesApplied.join(',')})` : '';
    return `${head}\t-> ${r.key}${rules}`;
  } catch (err) {
    if (err instanceof PolicyRefusal) return `${head}\trefused: ${err.reason} (${err.message})`;
    throw err;
  }
}

/** The name as the wire would carry it: UTF-8 bytes, with `\xNN` escapes for raw bytes (junk, controls). */
export function wireName(name: string): string {
  const bytes: Buffer[] = [];
  let last = 0;
  for (const m of name.matchAll(/\\x([0-9a-fA-F]{2})/g)) {
    bytes.push(Buffer.from(name.slice(last, m.index), 'utf8'), Buffer.from([parseInt(m[1]!, 16)]));
    last = m.index + m[0].length;
  }
  bytes.push(Buffer.from(name.slice(last), 'utf8'));
  return Buffer.concat(bytes).toString('latin1');
}

/** Maps every line of `input`. */
export function runMapTest(policy: AccessPolicyOptions, input: string, defaultOperation: Operation): string[] {
  const out: string[] = [];
  for (const line of input.split('\n')) {
    const req = parseMapTestLine(line, defaultOperation);
    if (req) out.push(mapTestLine(policy, req));
  }
  return out;
}

const MAP_TEST_USAGE = `Usage: tftp-gateway map-test [--write] [serve flags: --map-file, --map-*, --client-prefix, --s3-prefix, --read-*/--write-*]
Reads requests on stdin, one a line: NAME [CLIENT-IP] [get|put] (\\xNN for raw bytes), and prints the
key each maps to, or why it is refused. No traffic, no S3. Exit status 2 on a configuration problem.`;

/** The `map-test` command: configuration from the serve flags, requests from `input`. Returns the exit code. */
export async function mapTestCommand(
  argv: readonly string[],
  input: AsyncIterable<Buffer | string>,
  out: (text: string) => void,
  err: (text: string) => void,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    out(`${MAP_TEST_USAGE}\n`);
    return 0;
  }
  const { ConfigError } = await import('../config/config.js');
  const { loadGatewaySetup } = await import('../gateway/compose.js');
  const write = argv.includes('--write');
  const flags = argv.filter((a) => a !== '--write');
  // The bucket does not matter here; only the policy flags do.
  const hasBucket = flags.some((a) => a === '--s3-bucket' || a.startsWith('--s3-bucket=')) || env.TFTP_GATEWAY_S3_BUCKET;
  let policy;
  try {
    policy = loadGatewaySetup(hasBucket ? flags : [...flags, '--s3-bucket', 'map-test'], env).access;
  } catch (e) {
    if (e instanceof ConfigError) {
      err(`tftp-gateway map-test: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  let pending = '';
  for await (const chunk of input) {
    pending += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of runMapTest(policy, lines.join('\n'), write ? 'write' : 'read')) out(`${line}\n`);
  }
  for (const line of runMapTest(policy, pending, write ? 'write' : 'read')) out(`${line}\n`);
  return 0;
}
