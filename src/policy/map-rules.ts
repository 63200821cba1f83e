import { errorMessage } from '../errors.js';

/**
 * tftp-hpa-style file name remapping (`--map-file`, tftpd(8) "FILENAME REMAPPING"), pure.
 *
 * One rule per line: `FLAGS REGEX [REPLACEMENT]`; `#` starts a comment; a backslash keeps the
 * next character from ending a field (`\ ` is a space, `\#` a hash). Flags:
 *   r  replace the matched part of the name with REPLACEMENT
 *   g  global: apply the rule again until it no longer matches
 *   i  case-insensitive match
 *   e  end: if the rule matched, stop here and use the name as it is
 *   s  start over from the first rule if the rule matched
 *   a  abort: if the rule matched, refuse the request (ERROR 2)
 *   G  only for read requests   P  only for write requests
 *   ~  invert: the rule "matches" when the regex does not (not with r)
 * REPLACEMENT: `\0` the whole match, `\1`–`\9` groups, `\i` the client's IP address, `\x` the
 * client's IP as hex digits (8 for IPv4, as PXELINUX uses), `\\` a backslash, `\c` the character c.
 * REGEX is an extended regular expression; POSIX bracket classes (`[[:alpha:]]`) are translated.
 * Like tftp-hpa, every regex application counts against a budget (1024): a rule set that loops
 * refuses the request instead of spinning.
 */

export interface MapRuleFlags {
  readonly replace: boolean;
  readonly global: boolean;
  readonly caseInsensitive: boolean;
  readonly end: boolean;
  readonly restart: boolean;
  readonly abort: boolean;
  readonly readOnly: boolean;
  readonly writeOnly: boolean;
  readonly invert: boolean;
}

export interface MapRule {
  /** Line in the map file (1-based), for logs and map-test. */
  readonly line: number;
  readonly flags: MapRuleFlags;
  readonly regex: RegExp;
  readonly replacement: string;
  /** The rule as written, for logs. */
  readonly source: string;
}

export interface MapContext {
  readonly operation: 'read' | 'write';
  /** The client's address as shown in logs (IPv4-mapped IPv6 already shown as IPv4). */
  readonly clientAddress: string;
  /** The client's address as hex digits, for `\x`. */
  readonly clientHex: string;
}

export type MapOutcome =
  | { readonly kind: 'mapped'; readonly name: string; /** Lines of the rules that matched, in order. */ readonly applied: readonly number[] }
  | { readonly kind: 'denied'; readonly line: number; readonly applied: readonly number[] }
  | { readonly kind: 'error'; readonly reason: string; readonly applied: readonly number[] };

export class MapFileError extends Error {
  override readonly name = 'MapFileError';
  constructor(readonly problems: readonly string[]) {
    super(problems.join('; '));
  }
}

/** Budget of regex applications per name (tftp-hpa's "deadman"). */
export const MAP_ITERATION_LIMIT = 1024;
/** A name that grows past this while being rewritten is refused. */
export const MAP_MAX_LENGTH = 8192;

const FLAG_CHARS = 'rgiesaGP~';

const POSIX_CLASSES: Record<string, string> = {
  alpha: 'a-zA-Z',
  digit: '0-9',
  alnum: 'a-zA-Z0-9',
  upper: 'A-Z',
  lower: 'a-z',
  space: ' \\t\\n\\r\\f\\v',
  blank: ' \\t',
  punct: '!-\\/:-@\\[-`{-~',
  xdigit: '0-9A-Fa-f',
  print: ' -~',
  graph: '!-~',
  cntrl: '\\x00-\\x1f\\x7f',
};

/** Splits a line into whitespace-separated fields; backslash escapes are kept (the regex needs them). */
function splitFields(line: string): string[] {
  const fields: string[] = [];
  let current = '';
  let inField = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length) {
      current += c + line[i + 1]!;
      inField = true;
      i++;
      continue;
    }
    if (c === '#') break;
    if (c === ' ' || c === '\t') {
      if (inField) fields.push(current);
      current = '';
      inField = false;
      continue;
    }
    current += c;
    inField = true;
  }
  if (inField) fields.push(current);
  return fields;
}

function translateRegex(text: string): string {
  return text.replace(/\[:([a-z]+):\]/g, (whole, name: string) => POSIX_CLASSES[name] ?? whole);
}

/** Parses a map file; throws MapFileError listing every bad line. */
export function parseMapRules(text: string): MapRule[] {
  const rules: MapRule[] = [];
  const problems: string[] = [];
  const lines = text.split(/\r?\n/);
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n]!;
    const fields = splitFields(line);
    if (fields.length === 0) continue;
    const where = `line ${n + 1}`;
    const [flagText, regexText, replacement] = fields;
    if (fields.length > 3) {
      problems.push(`${where}: too many fields (escape spaces with '\\ ')`);
      continue;
    }
    const bad = [...flagText!].filter((c) => !FLAG_CHARS.includes(c) && c !== '-');
    if (bad.length > 0) {
      problems.push(`${where}: unknown flag(s) '${bad.join('')}' (flags: ${FLAG_CHARS})`);
      continue;
    }
    const flags: MapRuleFlags = {
      replace: flagText!.includes('r'),
      global: flagText!.includes('g'),
      caseInsensitive: flagText!.includes('i'),
      end: flagText!.includes('e'),
      restart: flagText!.includes('s'),
      abort: flagText!.includes('a'),
      readOnly: flagText!.includes('G'),
      writeOnly: flagText!.includes('P'),
      invert: flagText!.includes('~'),
    };
    if (regexText === undefined) {
      problems.push(`${where}: missing regular expression`);
      continue;
    }
    if (flags.replace && replacement === undefined) {
      problems.push(`${where}: flag r needs a replacement`);
      continue;
    }
    if (flags.replace && flags.invert) {
      problems.push(`${where}: flags r and ~ cannot be combined`);
      continue;
    }
    if (flags.readOnly && flags.writeOnly) {
      problems.push(`${where}: flags G and P cannot be combined`);
      continue;
    }
    let regex: RegExp;
    try {
      regex = new RegExp(translateRegex(regexText), flags.caseInsensitive ? 'i' : '');
    } catch (err) {
      problems.push(`${where}: bad regular expression: ${errorMessage(err)}`);
      continue;
    }
    rules.push({ line: n + 1, flags, regex, replacement: replacement ?? '', source: line.trim() });
  }
  if (problems.length > 0) throw new MapFileError(problems);
  return rules;
}

/** Expands REPLACEMENT for one match. */
function expand(replacement: string, match: RegExpExecArray, ctx: MapContext): string {
  let out = '';
  for (let i = 0; i < replacement.length; i++) {
    const c = replacement[i]!;
    if (c !== '\\' || i + 1 >= replacement.length) {
      out += c;
      continue;
    }
    const next = replacement[++i]!;
    if (next >= '0' && next <= '9') out += match[Number(next)] ?? '';
    else if (next === 'i') out += ctx.clientAddress;
    else if (next === 'x') out += ctx.clientHex;
    else out += next;
  }
  return out;
}

/** Runs the rules over a name (tftp-hpa's rewrite_string semantics). */
export function applyMapRules(rules: readonly MapRule[], name: string, ctx: MapContext): MapOutcome {
  let current = name;
  let budget = MAP_ITERATION_LIMIT;
  const applied: number[] = [];
  for (let index = 0; index < rules.length; index++) {
    const rule = rules[index]!;
    if ((rule.flags.readOnly && ctx.operation !== 'read') || (rule.flags.writeOnly && ctx.operation !== 'write')) continue;
    let matched = false;
    for (;;) {
      if (--budget < 0) return { kind: 'error', reason: 'too many rewrite rule iterations', applied };
      const m = rule.regex.exec(current);
      const hit = rule.flags.invert ? m === null : m !== null;
      if (!hit) break;
      matched = true;
      if (rule.flags.abort) return { kind: 'denied', line: rule.line, applied: [...applied, rule.line] };
      if (rule.flags.replace && m) {
        current = current.slice(0, m.index) + expand(rule.replacement, m, ctx) + current.slice(m.index + m[0].length);
        if (current.length > MAP_MAX_LENGTH) return { kind: 'error', reason: 'rewritten name too long', applied };
      }
      if (!rule.flags.global) break;
    }
    if (!matched) continue;
    applied.push(rule.line);
    if (rule.flags.end) break;
    if (rule.flags.restart) index = -1;
  }
  return { kind: 'mapped', name: current, applied };
}
