// Which entries of a READDIRPLUS listing carry attributes (and count a lookup) and which are
// named bare (node id 0: the kernel keeps what it has or looks the name up when used); a bare
// one's d_ino, in either listing, is the inode number the kernel already has for it.
//
// A file the kernel already holds a node for has its entry and attributes (kept exact by
// invalidations), so the listing names it without them, for free. Not a directory: the kernel
// marks those stale itself whenever an entry inside changes, and whoever lists this one is
// likely to descend into them next.
import type { Node, NodeTable } from '../core/nodes';

/** The node `dir/name` is listed by without attributes, or undefined: look it up and send them. */
export function heldWithoutAttrs(table: NodeTable, dir: Node, name: string): Node | undefined {
  const child = table.child(dir, name);
  return child && !child.dir && !child.retired && child.ino !== undefined ? child : undefined;
}
