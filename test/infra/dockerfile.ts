// A minimal Dockerfile reader shared by the Dockerfile property tests and the image build test.
import assert from 'node:assert/strict';

export interface Instruction {
  readonly keyword: string;
  readonly args: string;
}
export interface Stage {
  readonly from: string;
  readonly platform: string | undefined;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

/** Minimal Dockerfile reader: comments, line continuations, global ARGs, stages. */
export function parseDockerfile(text: string): { globalArgs: Record<string, string>; stages: Stage[] } {
  const logical: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (current === '' && /^\s*#/.test(line)) continue;
    if (current !== '' && /^\s*#/.test(line)) continue; // comment inside a continuation
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    current += line;
    if (current.trim() !== '') logical.push(current.trim());
    current = '';
  }
  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const line of logical) {
    const m = /^(\w+)\s+(.*)$/s.exec(line);
    assert.ok(m, `unparsable line: ${line}`);
    const keyword = m[1]!.toUpperCase();
    const args = m[2]!.trim();
    if (keyword === 'FROM') {
      const fm = /^(?:--platform=(\S+)\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      assert.ok(fm, `unparsable FROM: ${args}`);
      const image = fm[2]!.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => globalArgs[(a ?? b)!] ?? '');
      stages.push({ from: image, platform: fm[1], name: fm[3], instructions: [] });
    } else if (stages.length === 0) {
      assert.equal(keyword, 'ARG', `only ARG may precede the first FROM (got ${keyword})`);
      const [name, value] = args.split('=', 2);
      globalArgs[name!] = value ?? '';
    } else {
      stages.at(-1)!.instructions.push({ keyword, args });
    }
  }
  return { globalArgs, stages };
}
