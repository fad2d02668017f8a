// The daemon's logger: pino JSON lines appended to a file, warn by default, and a write that
// fails (stderr closed under a detached daemon) never throws into the caller.
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { createDaemonLogger, createLogger, isLogLevel, SafeDestination } from '../../src/log/logger';
import { tmpdir } from '../lib/tree';

const lines = (f: string): Record<string, unknown>[] =>
  fs.readFileSync(f, 'utf8').trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);

t.test('JSON lines appended to a file, warn by default', async (t) => {
  const f = path.join(tmpdir(), 'sub', 'dir', 'overlayd.log');
  fs.mkdirSync(path.dirname(path.dirname(f)), { recursive: true });
  const log = createLogger(undefined, f);
  log.info('not at warn');
  log.debug('nor this');
  log.warn({ n: 1 }, 'a warning');
  log.error({ err: 'x' }, 'an error');
  const got = lines(f);
  t.same(got.map((l) => [l.level, l.msg]), [[40, 'a warning'], [50, 'an error']]);
  t.equal(got[0].n, 1);
  t.equal(got[0].name, 'overlayd');
  t.equal(got[0].pid, process.pid);
  t.match(got[0].time, /^\d{4}-\d\d-\d\dT/, 'ISO time');
  const again = createLogger('debug', f);
  again.debug({ op: 'getattr', result: 0, us: 12 }, 'fuse op');
  t.equal(lines(f).length, 3, 'appends, never truncates');
  t.equal(lines(f)[2].op, 'getattr');
});

t.test('a failing destination drops the line, not the daemon', async (t) => {
  const f = path.join(tmpdir(), 'x.log');
  const fd = fs.openSync(f, 'a');
  fs.closeSync(fd);
  const dest = new SafeDestination(fd); // closed: every write fails with EBADF
  t.doesNotThrow(() => dest.write('{"msg":"lost"}\n'));
  const { log, dest: d } = createDaemonLogger('info', path.join(tmpdir(), 'y.log'));
  d.detach();
  t.doesNotThrow(() => log.error('after detach: written nowhere'));
});

t.test('levels', async (t) => {
  for (const l of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) t.ok(isLogLevel(l), l);
  t.notOk(isLogLevel('verbose'));
});
