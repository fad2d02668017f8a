// Name lookup over the layers, rule by rule as Documentation/filesystems/overlayfs.rst puts it.
import { C, sys } from '../host/native';
import { isDir, lstatAt, type Stat } from '../host/stat';
import { DirCache, DirNode, type LayerDir } from './dircache';
import { NodeTable, type Node } from './nodes';
import { E, check, fail } from './errors';
import type { Layer, LayerStack } from './layers';
import { lookupAbsolute, parseRedirect, type RedirectMode, type Redirects } from './redirect';
import { probe, whiteoutFile } from './presence';
import { WH_PREFIX, hasOpaqueMarker, readDirMarks } from './whiteout';
import { OverlayXattrs } from './xattrs';

export const NAME_MAX = 255;

/** One real object in one layer, named relative to its parent directory's fd. */
export interface Entry {
  layer: Layer;
  parentFd: number;
  name: string;
  stat: Stat;
}

/** What a merged path resolves to. */
export interface Resolved {
  path: string;
  name: string;
  /** The merged parent directory; undefined for the root. */
  parent: DirNode | undefined;
  /**
   * Top to bottom. A non-directory resolves to exactly one entry (it hides everything below);
   * a directory to every directory merged beneath it, down to the first opaque one.
   */
  entries: Entry[];
  /** An opaque mark (or an OCI `.wh.` marker) stopped the merge below this directory. */
  opaque: boolean;
}

export function splitPath(path: string): [string, string] {
  const i = path.lastIndexOf('/');
  return [i <= 0 ? '/' : path.slice(0, i), path.slice(i + 1)];
}

export function joinPath(dir: string, name: string): string {
  return dir === '/' ? '/' + name : dir + '/' + name;
}

/** NAME_MAX counts bytes, and a name is a binary string (host/bytes.ts): one char per byte. */
export function checkName(name: string): void {
  if (name.length > NAME_MAX) fail(E.ENAMETOOLONG, 'lookup', name);
}

/**
 * Looks `name` up in every layer of a merged directory, top down:
 * - "a whiteout hides the name in all lower layers" (0/0 char device, or an OCI `.wh.` file);
 * - an entry in a higher layer hides the same name below; a non-directory hides everything;
 * - "directories merge only with directories": a non-directory under a directory ends the merge;
 * - "an opaque directory stops the merge below it";
 * - a directory's redirect names where the layers below hold its content (see redirect.ts).
 * Returns undefined when nothing is visible (ENOENT). `from` skips layers known to lack the
 * name (see Overlay.getattrListed).
 */
export function lookupIn(parent: DirNode, name: string, from = 0, rd?: Redirects): Omit<Resolved, 'path'> | undefined {
  checkName(name);
  if (name.startsWith(WH_PREFIX)) return undefined;
  const entries: Entry[] = [];
  let opaque = false;
  // The name asked of the layers below, once a relative redirect renamed it.
  let cur = name;
  let redirected = false;
  const bottom = rd && rd.mode !== 'nofollow' ? rd.roots[rd.roots.length - 1].layer : undefined;
  for (let i = from; i < parent.dirs.length; i++) {
    const d = parent.dirs[i];
    const names = parent.namesOf(i);
    const p = probe(d.fd, cur, names);
    if (p.kind === 'absent') continue;
    if (p.kind === 'whiteout') break;
    if (p.kind === 'error') fail(p.errno, 'lookup', name);
    const st = p.stat;
    const dir = isDir(st.mode);
    if (entries.length > 0 && !dir) break;
    // redirect_dir=nofollow: content a redirect points to is refused, not merged (ovl_lookup).
    if (redirected) fail(E.EPERM, 'lookup (redirect not followed)', name);
    entries.push({ layer: d.layer, parentFd: d.fd, name: cur, stat: st });
    if (!dir) break;
    // Below the last layer there is nothing for a mark to stop or redirect to. Following
    // redirects, that is the bottom layer of the mount: an absolute one leaves this stack.
    if (bottom ? d.layer === bottom : i === parent.dirs.length - 1) break;
    const marks = readDirMarks(d.fd, cur, rd?.xattr);
    if (marks.opaque || hasOpaqueMarker(d.fd, cur)) { opaque = true; break; }
    // OCI: a `.wh.name` beside the directory removed the name below; this one starts afresh.
    if (whiteoutFile(d.fd, cur, names).kind === 'whiteout') { opaque = true; break; }
    if (marks.redirect === undefined || rd === undefined) continue;
    const to = parseRedirect(marks.redirect, name);
    if (to[0] === '/') {
      const below = lookupAbsolute(to, d.layer, rd, name, !bottom);
      entries.push(...below.entries);
      opaque = below.opaque;
      break;
    }
    cur = to;
    redirected = !bottom;
  }
  if (entries.length === 0) return undefined;
  return { name, parent, entries, opaque };
}

/**
 * Opens a real directory without following a symlink put in its place. In a layer held
 * through the host's mount tree (layers.ts), a mount point is refused (EXDEV) rather than
 * entered: the kernel would see the directory the mount covers, which only a clone can show.
 */
export function openDirIn(layer: Layer, parentFd: number, name: string): number {
  const fd = layer.attached
    ? sys.openBeneath(parentFd, name, C.O_PATH | C.O_NOFOLLOW | C.O_DIRECTORY, 0)
    : sys.openat(parentFd, name, C.O_PATH | C.O_NOFOLLOW | C.O_DIRECTORY, 0);
  return check(fd, 'open', name);
}

/**
 * Resolves merged names to layer entries, by node of the one tree or by path (walking the tree
 * from the root), caching merged directories on their nodes.
 */
export class Resolver {
  /** The one tree of merged objects: what clients hold, and the cached directories. */
  readonly tree = new NodeTable();
  readonly cache: DirCache;
  readonly redirects: Redirects;

  /** `cacheFds`: how many fds the directory cache may hold (default: dirCacheFdBudget()). */
  constructor(readonly stack: LayerStack, cacheFds?: number, redirect: { mode: RedirectMode; xattr: string } = { mode: 'follow', xattr: OverlayXattrs.of(false).redirect }) {
    const rootDirs: LayerDir[] = stack.layers.map((layer) => ({ layer, fd: layer.fd }));
    this.cache = new DirCache(this.tree, new DirNode('/', rootDirs, false, false), cacheFds);
    this.redirects = { ...redirect, roots: rootDirs };
  }

  /** lookupIn under this mount's redirect rules. */
  lookup(parent: DirNode, name: string, from = 0): Omit<Resolved, 'path'> | undefined {
    return lookupIn(parent, name, from, this.redirects);
  }

  /**
   * The last path dir() walked, and where to: the calls of one request, and of a run of
   * requests in one directory (a tar x), ask for the same parent again and again. It holds while
   * no name was removed or moved (the tree's generation) and the stack is still cached.
   */
  private last: { path: string; node: Node; stack: DirNode; gen: number } | undefined;

  /** The merged directory at `path`; ENOENT or ENOTDIR as the kernel would say. */
  dir(path: string): DirNode {
    const last = this.last;
    if (last && last.path === path && last.gen === this.tree.generation && last.node.stack === last.stack) {
      return this.cache.get(last.node) as DirNode;
    }
    const node = this.walk(path);
    const stack = node.stack as DirNode;
    this.last = { path, node, stack, gen: this.tree.generation };
    return stack;
  }

  /** The node of the directory at `path`, its stack cached on it. */
  private walk(path: string): Node {
    let node = this.tree.root;
    let stack = node.stack as DirNode;
    let from = 1;
    while (from < path.length) {
      const end = path.indexOf('/', from);
      const name = end < 0 ? path.slice(from) : path.slice(from, end);
      const child = node.children?.get(name);
      const cached = child && this.cache.get(child);
      if (child && cached) {
        node = child;
        stack = cached;
      } else {
        node = this.childDir(node, stack, name, end < 0 ? path : path.slice(0, end));
        stack = node.stack as DirNode;
      }
      if (end < 0) break;
      from = end + 1;
    }
    return node;
  }

  /** The merged directory a node of the tree stands for (ENOENT for one with no name left). */
  dirOf(node: Node): DirNode {
    const cached = this.cache.get(node);
    if (cached) return cached;
    const parent = node.parent;
    if (!parent || !node.dir) fail(node.dir ? E.ENOENT : E.ENOTDIR, 'lookup', `node ${node.id}`);
    const at = this.childDir(parent, this.dirOf(parent), node.name, joinPath(parent.stack?.path ?? '?', node.name));
    if (at !== node) fail(E.ENOENT, 'lookup', `node ${node.id}`);
    return node.stack as DirNode;
  }

  /** Resolves parent/name, a directory, caching it on its node (returned). */
  private childDir(parent: Node, parentStack: DirNode, name: string, path: string): Node {
    const r = this.lookup(parentStack, name);
    if (!r) fail(E.ENOENT, 'lookup', path);
    if (!isDir(r.entries[0].stat.mode)) fail(E.ENOTDIR, 'lookup', path);
    const node = this.tree.dirChild(parent, name);
    this.cacheDir(node, path, r.entries, r.opaque);
    return node;
  }

  /** Resolves any merged path; undefined when it does not exist. */
  resolve(path: string): Resolved | undefined {
    if (path === '/') return this.rootResolved();
    const [parentPath, name] = splitPath(path);
    const parent = this.dir(parentPath);
    const r = this.lookup(parent, name);
    return r && { path, ...r };
  }

  /** Like resolve, but ENOENT when absent. */
  get(path: string): Resolved {
    const r = this.resolve(path);
    if (!r) fail(E.ENOENT, 'lookup', path);
    return r;
  }


  private rootResolved(): Resolved {
    const root = this.tree.root.stack as DirNode;
    const entries = root.dirs.map((d) => ({
      layer: d.layer,
      parentFd: d.fd,
      name: '',
      stat: check(lstatAt(d.fd, ''), 'stat', d.layer.root),
    }));
    return { path: '/', name: '', parent: undefined, entries, opaque: false };
  }

  private cacheDir(node: Node, path: string, entries: Entry[], opaque: boolean): DirNode {
    const dirs: LayerDir[] = [];
    try {
      for (const e of entries) dirs.push({ layer: e.layer, fd: openDirIn(e.layer, e.parentFd, e.name) });
    } catch (err) {
      for (const d of dirs) sys.close(d.fd);
      throw err;
    }
    const stack = new DirNode(path, dirs, opaque, true);
    this.cache.set(node, stack);
    return stack;
  }
}
