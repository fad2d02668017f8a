// Mounting without privilege, as libfuse 3 does it: fusermount3, installed setuid root, opens
// /dev/fuse, mounts it (fuse.SUBTYPE, with the caller's uid as user_id) after checking that the
// caller may (a mountpoint it can write, only the options it lets users give, allow_other only
// with user_allow_other in /etc/fuse.conf), and sends the open device back over the socket
// named by env _FUSE_COMMFD with SCM_RIGHTS. Unmounting is `fusermount3 -u [-z]`.
//
// Both run as child processes the daemon never waits for synchronously: fusermount3 stats the
// mountpoint, which, once mounted, only the serving daemon can answer.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { E, FsError } from '../core/errors';
import { fuseDevice } from '../host/native';

export const FUSERMOUNT = 'fusermount3';
export const FUSE_CONF = '/etc/fuse.conf';

/** fusermount3 on PATH (then /usr/bin, /bin), or undefined. */
export function findFusermount(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const dirs = [...(env.PATH ?? '').split(':').filter((d) => d !== ''), '/usr/bin', '/bin', '/usr/local/bin'];
  for (const d of dirs) {
    const p = path.join(d, FUSERMOUNT);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch { /* not here */ }
  }
  return undefined;
}

/**
 * Whether this process can mount FUSE through fusermount3: it is there, setuid root (or we are
 * root), and /dev/fuse exists and is open to us. Undefined when it can, else why not.
 */
export function fusermountUnusable(): string | undefined {
  const p = findFusermount();
  if (p === undefined) return `${FUSERMOUNT} is not installed (Debian: apt-get install fuse3)`;
  try {
    const st = fs.statSync(p);
    if (process.getuid?.() !== 0 && !(st.uid === 0 && (st.mode & 0o4000) !== 0)) return `${p} is not setuid root`;
  } catch (err) {
    return `${p}: ${(err as Error).message}`;
  }
  try {
    if (!fs.statSync('/dev/fuse').isCharacterDevice()) return '/dev/fuse is not a character device';
  } catch {
    return '/dev/fuse does not exist (modprobe fuse)';
  }
  // fusermount3 opens the device with the user's own credentials.
  try {
    fs.accessSync('/dev/fuse', fs.constants.R_OK | fs.constants.W_OK);
  } catch {
    return '/dev/fuse is not open to this user (it is usually mode 0666)';
  }
  return undefined;
}


/** Whether /etc/fuse.conf has `user_allow_other` on a line of its own (comments stripped), as fusermount3 reads it. */
export function userAllowOther(conf = FUSE_CONF): boolean {
  let text: string;
  try { text = fs.readFileSync(conf, 'utf8'); } catch { return false; }
  return text.split('\n').some((l) => l.replace(/#.*/, '').trim() === 'user_allow_other');
}

/** An option value fusermount3 splits on `,` and unescapes with `\`. */
export function escapeOption(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/,/g, '\\,');
}

interface Ran { code: number | null; signal: NodeJS.Signals | null; stderr: string }

function runHelper(args: string[], extraFd?: number): Promise<Ran> {
  const bin = findFusermount();
  if (bin === undefined) return Promise.reject(new Error(`${FUSERMOUNT} is not installed`));
  return new Promise((resolve, reject) => {
    const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', 'ignore', 'pipe'];
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env._FUSE_COMMFD;
    if (extraFd !== undefined) {
      stdio.push(extraFd);
      env._FUSE_COMMFD = String(stdio.length - 1);
    }
    const child = spawn(bin, args, { stdio, env, cwd: '/' });
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => { stderr += d; });
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

/** fusermount3's complaint, one line, without its program-name prefix. */
function why(r: Ran): string {
  const lines = r.stderr.split('\n').map((l) => l.trim()).filter((l) => l !== '');
  const last = lines.map((l) => l.replace(/^\S*fusermount3?:\s*/, '')).join('; ');
  if (last !== '') return last;
  return r.signal ? `killed by ${r.signal}` : `exit code ${r.code}`;
}

/**
 * Mounts through fusermount3 with `options` (fusermount3's -o: fsname=, subtype=, ro, nosuid,
 * default_permissions, allow_other, ...); resolves with the /dev/fuse fd, non-blocking and
 * close-on-exec, ready to serve.
 */
export async function fusermountMount(mountpoint: string, options: string[]): Promise<number> {
  const dev = fuseDevice();
  const pair = dev.socketpair();
  if (typeof pair === 'number') throw new FsError(-pair, 'socketpair');
  const [ours, theirs] = pair;
  let r: Ran;
  try {
    r = await runHelper(['-o', options.join(','), '--', mountpoint], theirs);
  } catch (err) {
    fs.closeSync(ours);
    fs.closeSync(theirs);
    throw err;
  }
  fs.closeSync(theirs);
  // The helper sends the fd before it exits: whatever it sent is queued on our end by now.
  const fd = dev.recvFd(ours);
  fs.closeSync(ours);
  if (r.code !== 0) {
    if (fd >= 0) fs.closeSync(fd);
    throw new Error(`${FUSERMOUNT}: ${why(r)}`);
  }
  if (fd < 0) throw new Error(`${FUSERMOUNT} exited without sending the /dev/fuse fd (${fd === -E.EAGAIN ? 'nothing received' : `errno ${-fd}`})`);
  return fd;
}

/** strerror texts fusermount3 prints, back to errno. */
const ERRNO_TEXT: [RegExp, number][] = [
  [/Device or resource busy/i, E.EBUSY],
  [/Invalid argument|not mounted|not found in/i, E.EINVAL],
  [/Operation not permitted|not owned|Permission denied/i, E.EPERM],
  [/No such file or directory/i, E.ENOENT],
];

/** `fusermount3 -u [-z] MOUNTPOINT`: 0, or -errno as umount2 would say it (EBUSY, EINVAL, EPERM, else EIO). */
export async function fusermountUnmount(mountpoint: string, lazy: boolean): Promise<{ rc: number; message: string }> {
  let r: Ran;
  try {
    r = await runHelper(lazy ? ['-u', '-z', '--', mountpoint] : ['-u', '--', mountpoint]);
  } catch (err) {
    return { rc: -E.ENOENT, message: (err as Error).message };
  }
  if (r.code === 0) return { rc: 0, message: '' };
  const message = why(r);
  const hit = ERRNO_TEXT.find(([re]) => re.test(message));
  return { rc: -(hit ? hit[1] : E.EIO), message };
}
