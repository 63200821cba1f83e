/**
 * Just enough PromQL reading for the tests: the vector selectors of an expression (metric name and
 * label matchers) and the label names its grouping clauses use. Strings may hold any character
 * (regexes, `{`, `}`), range and subquery brackets and Grafana's `$variables` are skipped. The
 * parse is checked against the real parser elsewhere: every expression also goes to Prometheus.
 */

export type MatchOp = '=' | '!=' | '=~' | '!~';
export interface Matcher {
  readonly label: string;
  readonly op: MatchOp;
  readonly value: string;
}
export interface Selector {
  readonly name: string;
  readonly matchers: readonly Matcher[];
}

type Token =
  | { readonly kind: 'ident'; readonly text: string }
  | { readonly kind: 'string'; readonly text: string }
  | { readonly kind: 'punct'; readonly text: string }
  | { readonly kind: 'other'; readonly text: string };

const AGGREGATIONS = new Set(['sum', 'avg', 'min', 'max', 'count', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile', 'count_values', 'group']);
const GROUPING = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'atan2', 'inf', 'nan']);

function tokenize(expr: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < expr.length) {
    const c = expr[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      let text = '';
      while (j < expr.length && expr[j] !== c) {
        if (expr[j] === '\\' && c !== '`') {
          const next = expr[j + 1] ?? '';
          text += next === 'n' ? '\n' : next === 't' ? '\t' : next;
          j += 2;
        } else {
          text += expr[j];
          j++;
        }
      }
      if (j >= expr.length) throw new Error(`unterminated string in ${expr}`);
      tokens.push({ kind: 'string', text });
      i = j + 1;
    } else if (c === '[') {
      // Range or subquery: durations and variables only.
      const j = expr.indexOf(']', i);
      if (j === -1) throw new Error(`unterminated [ in ${expr}`);
      i = j + 1;
    } else if (/[a-zA-Z_:]/.test(c)) {
      const m = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(expr.slice(i))!;
      tokens.push({ kind: 'ident', text: m[0] });
      i += m[0].length;
    } else if (/[0-9.]/.test(c)) {
      const m = /^[0-9.]+(?:e[+-]?[0-9]+)?[a-z]*/i.exec(expr.slice(i))!;
      tokens.push({ kind: 'other', text: m[0] });
      i += m[0].length;
    } else if (c === '$') {
      const m = /^\$\{?[a-zA-Z0-9_]+\}?/.exec(expr.slice(i));
      tokens.push({ kind: 'other', text: m?.[0] ?? c });
      i += m?.[0].length ?? 1;
    } else if ('=!~<>'.includes(c)) {
      const m = /^(=~|!~|!=|==|>=|<=|=|>|<)/.exec(expr.slice(i));
      tokens.push({ kind: 'punct', text: m?.[0] ?? c });
      i += m?.[0].length ?? 1;
    } else {
      tokens.push({ kind: 'punct', text: c });
      i++;
    }
  }
  return tokens;
}

export interface Parsed {
  readonly selectors: readonly Selector[];
  /** Label names in by/without/on/ignoring/group_left/group_right clauses. */
  readonly groupingLabels: readonly string[];
}

export function parsePromql(expr: string): Parsed {
  const t = tokenize(expr);
  const selectors: Selector[] = [];
  const groupingLabels: string[] = [];
  let i = 0;
  const readMatchers = (): Matcher[] => {
    // t[i] is '{'
    const matchers: Matcher[] = [];
    i++;
    while (i < t.length && t[i]!.text !== '}') {
      const label = t[i];
      const op = t[i + 1];
      const value = t[i + 2];
      if (label?.kind !== 'ident' || op?.kind !== 'punct' || value?.kind !== 'string') throw new Error(`unreadable matcher near ${label?.text} in ${expr}`);
      matchers.push({ label: label.text, op: op.text as MatchOp, value: value.text });
      i += 3;
      if (t[i]?.text === ',') i++;
    }
    i++; // '}'
    return matchers;
  };
  while (i < t.length) {
    const tok = t[i]!;
    const next = t[i + 1];
    if (tok.kind === 'ident' && GROUPING.has(tok.text)) {
      i++;
      if (t[i]?.text === '(') {
        i++;
        while (i < t.length && t[i]!.text !== ')') {
          if (t[i]!.kind === 'ident') groupingLabels.push(t[i]!.text);
          i++;
        }
        i++;
      }
      continue;
    }
    if (tok.kind === 'ident' && (AGGREGATIONS.has(tok.text) || KEYWORDS.has(tok.text.toLowerCase()))) {
      i++;
      continue;
    }
    if (tok.kind === 'ident' && next?.text === '(') {
      i++; // a function
      continue;
    }
    if (tok.kind === 'ident') {
      i++;
      selectors.push({ name: tok.text, matchers: t[i]?.text === '{' ? readMatchers() : [] });
      continue;
    }
    if (tok.text === '{') {
      const matchers = readMatchers();
      const name = matchers.find((m) => m.label === '__name__' && m.op === '=')?.value;
      if (name === undefined) throw new Error(`selector without a metric name in ${expr}`);
      selectors.push({ name, matchers: matchers.filter((m) => m.label !== '__name__') });
      continue;
    }
    i++;
  }
  return { selectors, groupingLabels };
}

/** Whether `value` satisfies the matcher (Prometheus anchors regexes at both ends). */
export function matches(m: Matcher, value: string | undefined): boolean {
  const v = value ?? '';
  switch (m.op) {
    case '=':
      return v === m.value;
    case '!=':
      return v !== m.value;
    case '=~':
      return new RegExp(`^(?:${m.value})$`).test(v);
    case '!~':
      return !new RegExp(`^(?:${m.value})$`).test(v);
  }
}
