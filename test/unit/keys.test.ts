import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCode } from '../../src/tftp/protocol/packet.js';
import { tftpErrorFor, TransferError } from '../../src/errors.js';
import { keyUnder, normalisePrefix, relativePathFor } from '../../src/policy/keys.js';

/** A file name's key under a prefix, as the access policy composes it (src/policy/access-policy.ts). */
function objectKeyFor(filename: string, options: { readonly prefix: string; readonly maxNameLength: number }): string {
  return keyUnder(options.prefix, relativePathFor(filename, options.maxNameLength));
}

const opts = { prefix: 'tftp/', maxNameLength: 255 };

function rejects(name: string, o = opts): void {
  assert.throws(
    () => objectKeyFor(name, o),
    (err: unknown) => {
      assert.ok(err instanceof TransferError, `not a TransferError for ${JSON.stringify(name)}`);
      assert.equal(err.code, 'INVALID_PATH', JSON.stringify(name));
      assert.equal(tftpErrorFor(err).code, ErrorCode.AccessViolation);
      return true;
    },
    `accepted ${JSON.stringify(name)}`,
  );
}

describe('objectKeyFor: normal names', () => {
  test('joined under the prefix', () => {
    assert.equal(objectKeyFor('pxelinux.0', opts), 'tftp/pxelinux.0');
    assert.equal(objectKeyFor('boot/grub/grub.cfg', opts), 'tftp/boot/grub/grub.cfg');
  });

  test('an empty prefix serves the bucket root', () => {
    assert.equal(objectKeyFor('a/b', { prefix: '', maxNameLength: 255 }), 'a/b');
  });

  test('a leading slash means the root of the served tree', () => {
    assert.equal(objectKeyFor('/pxelinux.0', opts), 'tftp/pxelinux.0');
    assert.equal(objectKeyFor('///boot/x', opts), 'tftp/boot/x');
  });

  test('empty and "." segments collapse', () => {
    assert.equal(objectKeyFor('boot//grub/./x', opts), 'tftp/boot/grub/x');
    assert.equal(objectKeyFor('./x', opts), 'tftp/x');
  });

  test('a name ending in a separator (or "/.") names a directory and is refused, never read as the file', () => {
    for (const name of ['x/', 'f513/', 'f513/.', 'f513//', 'dir\\', 'a/b/']) {
      assert.throws(() => objectKeyFor(name, opts), (e: unknown) => e instanceof TransferError && e.code === 'INVALID_PATH', name);
    }
  });

  test('case and non-ASCII latin1 bytes are kept', () => {
    assert.equal(objectKeyFor('EFI/Boot/BOOTX64.EFI', opts), 'tftp/EFI/Boot/BOOTX64.EFI');
    assert.equal(objectKeyFor('caf\u00e9', opts), 'tftp/caf\u00e9');
  });

  test('dots that are not a parent reference are fine', () => {
    assert.equal(objectKeyFor('...', opts), 'tftp/...');
    assert.equal(objectKeyFor('a..b/c.', opts), 'tftp/a..b/c.');
    assert.equal(objectKeyFor('..a', opts), 'tftp/..a');
    assert.equal(objectKeyFor('%2e', opts), 'tftp/%2e');
  });

  test('backslash names (Windows clients) keep their backslashes, minus leading separators', () => {
    assert.equal(objectKeyFor('\\boot\\wdsnbp.com', opts), 'tftp/boot\\wdsnbp.com');
    assert.equal(objectKeyFor('Boot\\x64\\wdsmgfw.efi', opts), 'tftp/Boot\\x64\\wdsmgfw.efi');
  });

  test('a name exactly at the length limit is accepted', () => {
    const name = 'a'.repeat(255);
    assert.equal(objectKeyFor(name, opts), `tftp/${name}`);
  });
});

describe('objectKeyFor: refused names (INVALID_PATH)', () => {
  test('parent references in every form', () => {
    for (const name of [
      '..', '../', '../etc/passwd', '/..', '/../x', 'a/../b', 'a/..', 'a/b/../../..',
      '..\\x', '\\..\\x', 'a\\..\\b', 'a\\..', 'a/..\\b',
      '%2e%2e/x', '%2E%2E/x', '%2e%2E\\x', '.%2e/x', '%2e./x', 'a/%2e%2e/b', 'a/%2e%2e', '/%2e%2e', '%2e%2e',
    ]) rejects(name);
  });

  test('control characters and NUL', () => {
    for (const name of ['a\x00b', '\x00', 'a\nb', 'a\rb', 'a\tb', '\x1f', 'a\x7fb', 'x\x01']) rejects(name);
  });

  test('drive letters', () => {
    for (const name of ['C:\\boot\\x', 'c:/x', 'Z:', 'd:file']) rejects(name);
  });

  test('overlong names', () => {
    rejects('a'.repeat(256));
    rejects('x'.repeat(10), { prefix: '', maxNameLength: 9 });
  });

  test('empty names and names that only name a directory', () => {
    for (const name of ['', '/', '//', '.', './', '/./', '\\']) rejects(name);
  });
});

describe('normalisePrefix', () => {
  test('no leading slash, exactly one trailing slash, empty stays empty', () => {
    const cases: [string, string][] = [
      ['', ''], ['/', ''], ['///', ''], ['tftp', 'tftp/'], ['tftp/', 'tftp/'], ['/tftp/', 'tftp/'],
      ['a/b', 'a/b/'], ['a/b//', 'a/b/'], ['///a', 'a/'],
    ];
    for (const [input, want] of cases) assert.equal(normalisePrefix(input), want, JSON.stringify(input));
  });

  test('a normalised prefix composes with objectKeyFor', () => {
    assert.equal(objectKeyFor('/x', { prefix: normalisePrefix('/images'), maxNameLength: 255 }), 'images/x');
  });
});
