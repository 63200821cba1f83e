/**
 * Built-in file name conveniences for clients seen in the field, applied before the map rules:
 * old ROMs that append junk bytes (`--map-strip-junk`), Windows/WDS clients that send backslashes
 * (`--map-backslashes`) and any letter case (`--map-lowercase`, for trees stored in lower case).
 */
export interface NameOptions {
  readonly stripJunk: boolean;
  readonly backslashes: boolean;
  readonly lowercase: boolean;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The request carries bytes (decoded latin1 so each byte is one char); S3 keys are UTF-8. A name
 * that is valid UTF-8 becomes the key with exactly the client's bytes. A name that is not has no
 * key that keeps its bytes (reading it as Latin-1 would give `caf\xe9` the key of `café` sent as
 * UTF-8): undefined, and the request is refused. `--map-strip-junk` cuts such junk off first.
 */
export function decodeFileName(raw: string): string | undefined {
  if (!/[\x80-\xff]/.test(raw)) return raw;
  try {
    return utf8.decode(Buffer.from(raw, 'latin1'));
  } catch {
    return undefined;
  }
}

/**
 * Cuts the name at the first junk byte: a control byte (C0, DEL) or a byte that does not start or
 * continue valid UTF-8 (0xff and friends); trailing spaces go too. Valid UTF-8 names survive.
 */
export function stripJunk(raw: string): string {
  const bytes = Buffer.from(raw, 'latin1');
  let end = 0;
  while (end < bytes.length) {
    const b = bytes[end]!;
    if (b < 0x20 || b === 0x7f) break;
    if (b < 0x80) {
      end++;
      continue;
    }
    const len = b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    if (len === 0 || end + len > bytes.length) break;
    let ok = true;
    for (let i = 1; i < len; i++) if ((bytes[end + i]! & 0xc0) !== 0x80) ok = false;
    if (!ok) break;
    end += len;
  }
  return raw.slice(0, end).replace(/ +$/, '');
}

/** Raw request name → the name the map rules see; undefined when it is not valid UTF-8. */
export function normaliseName(raw: string, options: NameOptions): string | undefined {
  let name = decodeFileName(options.stripJunk ? stripJunk(raw) : raw);
  if (name === undefined) return undefined;
  if (options.backslashes) name = name.replace(/\\/g, '/');
  if (options.lowercase) name = name.toLowerCase();
  return name;
}
