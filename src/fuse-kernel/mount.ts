// Mounting a FUSE file system on /dev/fuse: with CAP_SYS_ADMIN, mount(2) here; without it (or if
// mount(2) says EPERM, as in a user namespace), through fusermount3, as libfuse does. The VFS
// flags and the data string come from the mount options the way libfuse makes them.
import fs from 'node:fs';
import { toBinary } from '../host/bytes';
import { C, sys, type FuseDeviceAddon } from '../host/native';
import { E, FsError } from '../core/errors';
import type { FuseMountOptions } from '../fuse/adapter';
import type { Logger } from '../log/logger';
import { escapeOption, fusermountMount, fusermountUnmount, fusermountUnusable } from './fusermount';

export class FuseMount {
  /** Mounted through fusermount3 (not privileged, or mount(2) said EPERM): unmounted through it too. */
  viaFusermount = false;
  private readonly daemonUid = process.getuid?.() ?? 0;
  private readonly daemonGid = process.getgid?.() ?? 0;

  /** `privileged`: CAP_SYS_ADMIN (in a user namespace, that namespace's), which mount(2) of FUSE takes. */
  constructor(
    private readonly dev: FuseDeviceAddon, readonly mountpoint: string, private readonly opts: FuseMountOptions,
    private readonly readonly: boolean, private readonly privileged: boolean, private readonly log: Logger,
  ) {}

  /** Mounts; resolves with the open device the kernel sends requests on. */
  async mount(): Promise<number> {
    let fd = -1;
    if (this.privileged) {
      fd = this.dev.openDevice();
      if (fd < 0) throw new FsError(-fd, 'open', '/dev/fuse');
      const r = this.dev.mount(this.opts.fsname, this.mountpoint, 'fuse.overlayd', this.flags(), this.data(fd));
      if (r < 0) {
        fs.closeSync(fd);
        fd = -1;
        if (r !== -E.EPERM || fusermountUnusable() !== undefined) throw new FsError(-r, 'mount', this.mountpoint);
        this.log.info({ mountpoint: this.mountpoint }, 'mount(2) refused (EPERM); mounting through fusermount3');
      }
    }
    if (fd < 0) {
      const unusable = fusermountUnusable();
      if (unusable !== undefined) throw new Error(`a mount without CAP_SYS_ADMIN goes through fusermount3, but ${unusable}`);
      if (this.daemonUid !== 0) {
        this.log.info('mounted by a user: nosuid,nodev (fusermount3 allows no setuid files or devices on a user\'s mount)');
      }
      fd = await fusermountMount(this.mountpoint, this.helperOptions());
      this.viaFusermount = true;
    }
    return fd;
  }

  /**
   * Unmounts; EBUSY (a process still inside) is returned to the caller to decide. A mount made
   * through fusermount3 is unmounted through `fusermount3 -u [-z]`, a child process this one
   * never waits for synchronously (the helper stats the mountpoint, which we serve).
   */
  async unmount(lazy = false): Promise<number> {
    if (!this.viaFusermount) return sys.umount2(toBinary(this.mountpoint), lazy ? C.MNT_DETACH : 0);
    const r = await fusermountUnmount(this.mountpoint, lazy);
    if (r.rc !== 0 && r.rc !== -E.EBUSY) this.log.warn({ mountpoint: this.mountpoint, errno: -r.rc, fusermount3: r.message }, 'fusermount3 -u failed');
    return r.rc;
  }

  /** The mount(2) data string and flags, or fusermount3's options, for logs and status. */
  options(): string[] {
    if (this.viaFusermount) return ['fusermount3', ...this.helperOptions()];
    return [...this.data('N').split(','), ...this.flagNames()];
  }

  /**
   * Reads that go through the daemon arrive in readahead-sized requests; the kernel starts FUSE
   * mounts at 128 KiB (and INIT can only lower it). Raise it to `kb` through the mount's bdi, as
   * an administrator would; found through mountinfo, never by touching the mount.
   */
  raiseReadahead(kb: number): void {
    try {
      for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
        const f = line.split(' ');
        const mp = f[4]?.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
        const dash = f.indexOf('-');
        if (mp !== this.mountpoint || dash < 0 || f[dash + 1] !== 'fuse.overlayd') continue;
        fs.writeFileSync(`/sys/class/bdi/${f[2]}/read_ahead_kb`, String(kb));
      }
    } catch (err) {
      this.log.debug({ err: String(err) }, 'cannot raise the readahead of the mount');
    }
  }

  /**
   * fusermount3's -o for this mount: it adds fd, rootmode, user_id and group_id itself, takes
   * fsname and subtype (so the type is fuse.overlayd, as with mount(2)), and for a user always
   * mounts nosuid,nodev (it ignores suid and dev with a warning).
   */
  private helperOptions(): string[] {
    const o = this.opts;
    const out = [`fsname=${escapeOption(o.fsname)}`, 'subtype=overlayd'];
    if (o.defaultPermissions) out.push('default_permissions');
    if (o.allowOther || o.allowRoot) out.push('allow_other');
    const f = this.flags();
    const c = this.dev.constants;
    out.push(...this.flagNames());
    if (!(f & c.MS_RDONLY)) out.push('rw');
    if (this.daemonUid === 0) {
      // root's fusermount3 starts from nosuid,nodev too, but lets them be cleared.
      if (!(f & c.MS_NOSUID)) out.push('suid');
      if (!(f & c.MS_NODEV)) out.push('dev');
    }
    return out;
  }

  private flagNames(): string[] {
    const names: string[] = [];
    const f = this.flags();
    const c = this.dev.constants;
    if (f & c.MS_RDONLY) names.push('ro');
    if (f & c.MS_NOSUID) names.push('nosuid');
    if (f & c.MS_NODEV) names.push('nodev');
    if (f & c.MS_NOEXEC) names.push('noexec');
    if (f & c.MS_NOATIME) names.push('noatime');
    if (f & c.MS_SYNCHRONOUS) names.push('sync');
    if (f & c.MS_DIRSYNC) names.push('dirsync');
    return names;
  }

  private data(fd: number | string): string {
    const o = this.opts;
    const data = [`fd=${fd}`, 'rootmode=40000', `user_id=${this.daemonUid}`, `group_id=${this.daemonGid}`];
    if (o.defaultPermissions) data.push('default_permissions');
    // allow_root is allow_other in the kernel, narrowed by the ops (see ALWAYS_ALLOWED).
    if (o.allowOther || o.allowRoot) data.push('allow_other');
    return data.join(',');
  }

  /** VFS flags: libfuse's defaults (nosuid, nodev) unless the options say otherwise. */
  private flags(): number {
    const c = this.dev.constants;
    let flags = c.MS_NOSUID | c.MS_NODEV;
    for (const x of this.opts.extra) {
      switch (x) {
        case 'ro': flags |= c.MS_RDONLY; break;
        case 'rw': flags &= ~c.MS_RDONLY; break;
        case 'nosuid': flags |= c.MS_NOSUID; break;
        case 'suid': flags &= ~c.MS_NOSUID; break;
        case 'nodev': flags |= c.MS_NODEV; break;
        case 'dev': flags &= ~c.MS_NODEV; break;
        case 'noexec': flags |= c.MS_NOEXEC; break;
        case 'exec': flags &= ~c.MS_NOEXEC; break;
        case 'noatime': flags |= c.MS_NOATIME; break;
        case 'sync': flags |= c.MS_SYNCHRONOUS; break;
        case 'dirsync': flags |= c.MS_DIRSYNC; break;
        default: break; // libfuse-only options (nonempty, ...) mean nothing to mount(2)
      }
    }
    if (this.readonly) flags |= c.MS_RDONLY;
    return flags;
  }
}
