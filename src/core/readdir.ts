// Merged directory listing: "the readdir of a merged directory reads upper and each lower
// directory, merging names; names hidden by whiteouts, and the whiteouts themselves, are left out".
import { sys, type Listing } from '../host/native';
import { S_IFMT } from '../host/stat';
import type { DirNode } from './dircache';
import { check } from './errors';
import { probe } from './presence';
import { WH_PREFIX } from './whiteout';

export const DT_UNKNOWN = 0;
export const DT_CHR = 2;
export const DT_DIR = 4;

export interface DirEntry {
  name: string;
  /** d_type of the winning entry (DT_* as in <dirent.h>). */
  type: number;
  /** Index into node.dirs of the layer whose entry wins. */
  layer: number;
  /** d_ino there: the real inode number of the winning entry (for the object itself see Overlay.readdir). */
  dino: bigint;
}

/** d_type from a stat mode, for filesystems that report DT_UNKNOWN. */
export function dtypeOf(mode: number): number {
  return (mode & S_IFMT) >> 12;
}

/** A layer directory's entries; those of a layer that cannot change are kept on the node. */
function layerListing(node: DirNode, i: number, keep: boolean): Listing {
  const d = node.dirs[i];
  if (!keep || d.layer.writable) return check(sys.readdir(d.fd), 'readdir', node.path);
  return ((node.fixedListings ??= [])[i] ??= check(sys.readdir(d.fd), 'readdir', node.path));
}

export function listMerged(node: DirNode): DirEntry[] {
  const out: DirEntry[] = [];
  const taken = new Set<string>();
  const keep = ++node.listings > 1;
  let lowest: string[] = [];
  for (let i = 0; i < node.dirs.length; i++) {
    const fd = node.dirs[i].fd;
    const [names, types, inos] = layerListing(node, i, keep);
    lowest = names;
    // A layer's whiteouts hide names in the layers below it, not its own entries.
    const hidden: string[] = [];
    for (let j = 0; j < names.length; j++) {
      const name = names[j];
      let type = types[j];
      if (name.startsWith(WH_PREFIX)) {
        if (name.length > WH_PREFIX.length && name !== '.wh..wh..opq') hidden.push(name.slice(WH_PREFIX.length));
        continue;
      }
      if (taken.has(name)) continue;
      if (type === DT_CHR || type === DT_UNKNOWN) {
        const p = probe(fd, name);
        if (p.kind === 'whiteout') { hidden.push(name); continue; }
        if (p.kind === 'absent') continue; // vanished between readdir and stat
        // An entry that cannot be looked up is listed as getdents gave it (ovl_check_whiteouts).
        if (p.kind === 'present') type = dtypeOf(p.stat.mode);
      }
      taken.add(name);
      out.push({ name, type, layer: i, dino: inos[j] });
    }
    for (const h of hidden) taken.add(h);
  }
  return node.dirs.length > 1 ? lowestFirst(out, lowest) : out;
}

/**
 * A merged directory's entries in the kernel's order (ovl_dir_read_merged): the lowest layer's
 * names first, in that layer's order, whichever layer's entry is shown ("this allows offsets to
 * be reasonably constant"), then the names only the layers above hold, in their order. A tar
 * or find through the mount then walks as through kernel overlayfs.
 */
function lowestFirst(out: DirEntry[], lowest: string[]): DirEntry[] {
  const rest = new Map<string, DirEntry>();
  for (const e of out) rest.set(e.name, e);
  const ordered: DirEntry[] = [];
  for (const name of lowest) {
    const e = rest.get(name);
    if (e === undefined) continue;
    ordered.push(e);
    rest.delete(name);
  }
  for (const e of rest.values()) ordered.push(e);
  return ordered;
}
