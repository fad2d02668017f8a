// Failures the core must not turn into answers: a listed entry whose object cannot be stat'ed
// has no d_ino 0 (readdir(3) callers take that for a deleted entry), and a reader following a
// copy-up that fails to reach the upper file hears of it instead of reading stale data.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { C } from '../../src/host/native';
import { FsError } from '../../src/core/errors';
import { coreStack } from '../lib/stack';
import { writeAt } from '../lib/write-helpers';

t.test('an upper entry gone since the listing: ENOENT for its d_ino, never 0', async (t) => {
  const s = coreStack([{ low: 'l' }], { upper: { up: 'u' } }, t);
  const listedAt = s.ov.generation;
  const listing = s.ov.readdirNames('/');
  const up = listing.find((e) => e.name === 'up');
  t.ok(up);
  fs.unlinkSync(path.join(s.upper as string, 'up'));
  t.throws(() => s.ov.listedIno('/', up as (typeof listing)[number], listedAt), { code: 'ENOENT' });
  t.same(s.ov.readdir('/').map((e) => e.name), ['low'], 'a fresh listing leaves it out');
  t.notOk(s.ov.readdir('/').some((e) => e.ino === 0n), 'and has no d_ino 0');
});

/** Runs fn with every fd of this process taken, so that any open inside it fails with EMFILE. */
function withoutFds<T>(fn: () => T): T {
  const held: number[] = [];
  try {
    for (;;) {
      try {
        held.push(fs.openSync('/dev/null', 'r'));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EMFILE') break;
        throw err;
      }
    }
    return fn();
  } finally {
    for (const fd of held) fs.closeSync(fd);
  }
}

t.test('a reader that cannot follow a copy-up says why, and follows once it can', async (t) => {
  const s = coreStack([{ f: 'oldcontent' }], {}, t);
  const { ov } = s;
  const r = ov.open('/f', C.O_RDONLY);
  t.teardown(() => ov.release(r));
  await writeAt(ov, '/f', 'NEW', 0);
  const err = withoutFds(() => {
    try {
      ov.readFd(r);
      return undefined;
    } catch (e) {
      return e;
    }
  });
  t.ok(err instanceof FsError && err.code === 'EMFILE', 'EMFILE, not the lower file read on in silence');
  const buf = Buffer.alloc(64);
  const n = await ov.read(r, buf, 64, 0);
  t.equal(buf.subarray(0, n).toString(), 'NEWcontent', 'the next read follows the copy-up');
});
