// Inode numbers the merged view reports: stable for a path, never shared by two files.
// On one filesystem the real inode numbers already are (the kernel's "same fs" case); across
// filesystems the layer's filesystem index goes into the high bits, like the kernel's xino.
import type { LayerStack } from './layers';

const XINO_SHIFT = 56n;
const LOW_MASK = (1n << XINO_SHIFT) - 1n;

export class InodeNumbers {
  private readonly fsIndex = new Map<number, bigint>();
  private readonly single: boolean;

  constructor(stack: LayerStack) {
    this.single = stack.singleDevice;
    for (const l of stack.layers) if (!this.fsIndex.has(l.dev)) this.fsIndex.set(l.dev, BigInt(this.fsIndex.size));
  }

  of(dev: number, ino: bigint): bigint {
    if (this.single) return ino;
    return ((this.fsIndex.get(dev) ?? 0n) << XINO_SHIFT) | (ino & LOW_MASK);
  }
}
