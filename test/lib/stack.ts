// Driving the core directly on real temporary layer dirs (unit tests): build the layers,
// open `new Overlay(cfg)`, and remove everything again when the test ends.
import fs from 'node:fs';
import path from 'node:path';
import type { OverlayConfig } from '../../src/core/config';
import { Overlay } from '../../src/core/overlay';
import type { UuidMode } from '../../src/core/origin';
import { build, removeTree, tmpdir, type Tree } from './tree';

export { removeTree };

export interface CoreStack {
  ov: Overlay;
  base: string;
  /** Lower dirs, top first. */
  lowers: string[];
  upper?: string;
  work?: string;
  cfg: OverlayConfig;
}

export interface StackOptions {
  /** Tree of the upper layer; `false` for a read-only mount without upper. Default: empty upper. */
  upper?: Tree | false;
  userxattr?: boolean;
  readonly?: boolean;
  redirectDir?: OverlayConfig['redirectDir'];
  /** Build under /dev/shm (tmpfs, when it is there): for big trees, no disk I/O. */
  memory?: boolean;
  /** The kernel's uuid= (default: overlayd's, null). */
  uuid?: UuidMode;
}

/**
 * Lower layers from `lowers` (top first) and an upper layer, opened as one Overlay.
 * Pass `t` (anything with teardown) to close the overlay and delete the dirs afterwards.
 */
export function coreStack(lowers: Tree[], opts: StackOptions = {}, t?: { teardown(fn: () => void): void }): CoreStack {
  const base = opts.memory && fs.existsSync('/dev/shm') ? tmpdir('overlayd-unit-', '/dev/shm') : tmpdir('overlayd-unit-');
  const lowerdirs = lowers.map((tree, i) => {
    const d = path.join(base, `l${i}`);
    build(d, tree);
    return d;
  });
  const cfg: OverlayConfig = { lowerdirs, userxattr: opts.userxattr ?? false, volatile: false, readonly: opts.readonly ?? false, uuid: opts.uuid, redirectDir: opts.redirectDir };
  if (opts.upper !== false) {
    cfg.upperdir = path.join(base, 'u');
    cfg.workdir = path.join(base, 'w');
    build(cfg.upperdir, opts.upper ?? {});
    build(cfg.workdir, {});
  }
  const ov = new Overlay(cfg);
  if (t) t.teardown(() => { ov.close(); removeTree(base); });
  return { ov, base, lowers: lowerdirs, upper: cfg.upperdir, work: cfg.workdir, cfg };
}

