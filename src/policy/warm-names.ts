import fs from 'node:fs';
import type { GatewayConfig } from '../config/config.js';
import { errorMessage } from '../errors.js';
import { MAX_NAME_LENGTH } from './from-config.js';
import { keyUnder, normalisePrefix, relativePathFor } from './keys.js';

/**
 * The warm set as the operator wrote it (--warm, --warm-file) turned into S3 keys. A name is what a
 * client would ask for, relative to the served tree (--s3-prefix), and goes through the same name
 * rules as a request (no `..`, no control characters, no drive letters, not above the tree); the
 * map rules and --client-prefix trees are not applied (they depend on the client). A name ending in
 * `/` is a path: every object under it (listed at each warm pass); `/` alone is the whole tree.
 */

export type WarmTarget =
  | { readonly kind: 'object'; readonly name: string; readonly key: string }
  | { readonly kind: 'prefix'; readonly name: string; readonly prefix: string };

export interface WarmSetFromConfig {
  readonly targets: readonly WarmTarget[];
  readonly problems: readonly string[];
}

/** Names of a --warm-file: one per line; blank lines and lines starting with `#` are ignored. */
export function parseWarmFile(text: string): { line: number; name: string }[] {
  const out: { line: number; name: string }[] = [];
  for (const [i, raw] of text.split(/\r?\n/).entries()) {
    const name = raw.trim();
    if (name === '' || name.startsWith('#')) continue;
    out.push({ line: i + 1, name });
  }
  return out;
}

/** One warm name → its target under `prefix` (normalised), or throws with the reason. */
export function warmTarget(name: string, prefix: string): WarmTarget {
  if (name.endsWith('/')) {
    // The path is checked as the name of an object in it (so `boot/./` is `boot/`, `../` is refused);
    // its key ends in '/', so `boot/` never takes in `bootx/`.
    const inside = relativePathFor(`${name}x`, MAX_NAME_LENGTH);
    return { kind: 'prefix', name, prefix: keyUnder(prefix, inside.slice(0, -1)) };
  }
  return { kind: 'object', name, key: keyUnder(prefix, relativePathFor(name, MAX_NAME_LENGTH)) };
}

/** The warm set of a configuration, with every problem (bad names, an unreadable file). Deduplicated, in order. */
export function warmSetFromConfig(config: Pick<GatewayConfig, 'warm' | 'warmFile' | 's3Prefix'>): WarmSetFromConfig {
  const problems: string[] = [];
  const prefix = normalisePrefix(config.s3Prefix);
  const named: { name: string; where: string }[] = config.warm.map((name) => ({ name, where: '--warm' }));
  if (config.warmFile !== undefined) {
    try {
      for (const { line, name } of parseWarmFile(fs.readFileSync(config.warmFile, 'utf8'))) named.push({ name, where: `--warm-file ${config.warmFile} line ${line}` });
    } catch (err) {
      problems.push(`--warm-file: cannot read '${config.warmFile}': ${errorMessage(err)}`);
    }
  }
  const targets: WarmTarget[] = [];
  const seen = new Set<string>();
  for (const { name, where } of named) {
    try {
      const target = warmTarget(name, prefix);
      const id = target.kind === 'object' ? `o:${target.key}` : `p:${target.prefix}`;
      if (seen.has(id)) continue;
      seen.add(id);
      targets.push(target);
    } catch (err) {
      problems.push(`${where}: '${printable(name)}' is not a servable name (${errorMessage(err)})`);
    }
  }
  return { targets, problems };
}

/** A name for an error message: control characters shown escaped. */
function printable(name: string): string {
  // eslint-disable-next-line no-control-regex
  return name.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}
