// The kernel's redirect_dir: a directory with lower content is moved by renaming its upper copy
// and recording, in "trusted.overlay.redirect" (user.overlay.redirect with userxattr), where its
// lower content lies: the old name ("a") when it stayed in its parent, else the old absolute path
// ("/x/a") as the layers below know it. A lookup that meets a redirect looks the directory up
// there in the layers below (fs/overlayfs/namei.c, ovl_lookup and ovl_check_redirect; dir.c,
// ovl_set_redirect).
import { Buffer } from 'node:buffer';
import { sys } from '../host/native';
import { isDir, lstatAt, type Stat } from '../host/stat';
import type { LayerDir } from './dircache';
import { E, fail } from './errors';
import type { Layer } from './layers';
import type { Entry } from './lookup';
import { absentErrno } from './presence';
import { isWhiteoutStat, readDirMarks } from './whiteout';

/**
 * redirect_dir= as the kernel means it: `on` creates and follows redirects, `follow` only follows
 * them, `nofollow` neither (a lookup that would need one fails with EPERM). `off` is `follow`
 * (the kernel's with redirect_always_follow, its default), and is parsed into it by the CLI.
 */
export type RedirectMode = 'on' | 'follow' | 'nofollow';

/** The kernel's redirect_max default: the longest absolute redirect it writes. */
export const REDIRECT_MAX = 256;

/** What a lookup needs to know of redirects on this mount. */
export interface Redirects {
  mode: RedirectMode;
  /** The mount's own redirect xattr. */
  xattr: string;
  /** Every layer's root, top first: where an absolute redirect is looked up. */
  roots: readonly LayerDir[];
}

/**
 * The mode a mount without redirect_dir= gets: the kernel's default (follow), but nofollow with
 * userxattr, which the kernel forces there (user.* xattrs are anyone's to set on their own files).
 */
export function redirectModeOf(mode: RedirectMode | undefined, userxattr: boolean): RedirectMode {
  return mode ?? (userxattr ? 'nofollow' : 'follow');
}

/** A redirect is stored as the bytes of its names (binary strings, host/bytes.ts). */
export function redirectBytes(value: string): Buffer {
  return Buffer.from(value, 'latin1');
}

/**
 * A stored redirect, checked as ovl_get_redirect_xattr checks it: relative ones are one name,
 * absolute ones have no empty component. Anything else makes the lookup fail with EINVAL.
 */
export function parseRedirect(raw: Buffer, where: string): string {
  const s = raw.toString('latin1');
  const ok = s[0] === '/' ? s.split('/').every((c, i) => i === 0 || c !== '') : s !== '' && !s.includes('/');
  if (!ok) fail(E.EINVAL, 'lookup (invalid redirect)', where);
  return s;
}

/** The redirect an upper directory holds (validated), or undefined. */
export function upperRedirect(parentFd: number, name: string, xattr: string): string | undefined {
  const v = sys.getxattr(parentFd, name, xattr);
  if (typeof v === 'number') {
    if (v === -E.ENODATA || v === -E.ENOTSUP) return undefined;
    fail(-v, 'getxattr', name);
  }
  return parseRedirect(v, name);
}

/** What the rest of a lookup continues with after an absolute redirect. */
export interface AbsoluteResult {
  /** Entries found in the layers below, each named by its path from its layer's root. */
  entries: Entry[];
  opaque: boolean;
}

/**
 * An absolute redirect met in layer `from`: the directory's lower content is at `path` from the
 * root of each layer below, walked name by name as ovl_lookup_layer walks it: a whiteout or a
 * non-directory on the way ends the lookup, an opaque directory ends it after this layer, and a
 * redirect on the way rewrites the path the layers further down are asked for.
 * `refuse` (nofollow) makes finding anything EPERM.
 */
export function lookupAbsolute(path: string, from: Layer, rd: Redirects, shown: string, refuse: boolean): AbsoluteResult {
  const entries: Entry[] = [];
  let target = path.slice(1).split('/');
  const bottom = rd.roots[rd.roots.length - 1].layer;
  let opaque = false;
  for (const root of rd.roots) {
    if (root.layer.index <= from.index) continue;
    const last = root.layer === bottom;
    const walked = target;
    const next = [...target];
    let stop = false;
    let found = true;
    let rel = '';
    let st: Stat | number = -E.ENOENT;
    for (let j = 0; j < walked.length; j++) {
      rel = j === 0 ? walked[j] : rel + '/' + walked[j];
      st = lstatAt(root.fd, rel);
      if (typeof st === 'number') {
        // ENOTDIR too: a path component that stopped being a directory ends the walk, as the
        // kernel's walk stops at one (d_can_lookup).
        if (!absentErrno(-st) && st !== -E.ENOTDIR) fail(-st, 'lookup', shown);
        found = false;
        break;
      }
      if (isWhiteoutStat(st)) { stop = opaque = true; found = false; break; }
      if (!isDir(st.mode)) { stop = true; found = false; break; }
      if (last) continue;
      const marks = readDirMarks(root.fd, rel, rd.xattr);
      if (marks.opaque) {
        stop = true;
        if (j === walked.length - 1) opaque = true;
        continue;
      }
      if (!marks.redirect) continue;
      // Where this layer's directory came from is where the layers below keep its content.
      const r = parseRedirect(marks.redirect, shown);
      const pos = next.length - (walked.length - j);
      if (r[0] === '/') {
        next.splice(0, pos + 1, ...r.slice(1).split('/'));
        stop = false;
      } else {
        next[pos] = r;
      }
    }
    if (found && typeof st !== 'number') {
      if (refuse) fail(E.EPERM, 'lookup (redirect not followed)', shown);
      entries.push({ layer: root.layer, parentFd: root.fd, name: rel, stat: st });
    }
    target = next;
    if (stop) break;
  }
  return { entries, opaque };
}
