"""Block-sparse weights for the engine's pointwise-convolution and fully-connected kernels.

A weight matrix [rows][depth] (TFLite's FC layout, and a 1×1 convolution's [out][1][1][in]) is cut into
blocks of ``BLOCK_DEPTH`` consecutive depth values × ``BLOCK_ROWS`` consecutive rows: the kernels' unit of
work, one word load of four int8 inputs feeding two output channels for two pixels (the DSP path's 2×2
SMLAD block). A block that is all zeros adds nothing to any sum, so the sparse kernels skip it, and the
result stays bit-exact (the input offset is folded into the bias over all weights, zeros included).

The stored form, per pair of rows: one bit per block in ``words`` 32-bit masks (bit b of word w is the
block at depth 4 (32 w + b)), then the kept blocks' eight weights (four of each row) in depth order. A
bitmask costs one bit per eight weights where a list of block indices costs eight; the kernels walk the
set bits with a count of trailing zeros (RBIT + CLZ on a Cortex-M4).

Unstructured pruning leaves almost no all-zero block (at 50 % sparsity, 1 in 256), so this pays only on
weights pruned in these blocks (``compress.prune``'s ``blocks`` pattern). ``pays`` keeps the dense kernel
where the sparse one would not be both smaller and faster.
"""
from __future__ import annotations

import dataclasses

import numpy as np

BLOCK_DEPTH = 4  # depth values per block: one 32-bit load of int8 inputs
BLOCK_ROWS = 2  # output channels per block: the rows one input load serves
WORD_BITS = 32
# The largest share of kept blocks for which the sparse kernels are used. The DSP path's dense 2×2 block
# costs ~23 instructions per four depth values (4 loads, 8 SXTB16, 8 SMLAD, loop); a kept sparse block the
# same plus ~4 to find it (RBIT, CLZ, clear the bit, branch), so sparse is faster below ~85 % kept.
MAX_KEPT_SHARE = 0.85


@dataclasses.dataclass(frozen=True)
class BlockSparse:
    masks: np.ndarray  # uint32 [rows / BLOCK_ROWS, words]: the kept blocks of each row pair
    values: np.ndarray  # int8: the kept blocks, row pair by row pair, each row's four values in turn
    kept: int
    blocks: int

    @property
    def words(self) -> int:
        return int(self.masks.shape[1])

    @property
    def bytes(self) -> int:
        return int(self.masks.size * 4 + self.values.size)

    def pays(self) -> bool:
        """Smaller than the dense int8 matrix and, by the instruction model above, faster."""
        dense_bytes = self.blocks * BLOCK_DEPTH * BLOCK_ROWS
        return self.kept <= MAX_KEPT_SHARE * self.blocks and self.bytes < dense_bytes


def block_sparse(weights: np.ndarray) -> BlockSparse | None:
    """``weights`` [rows][depth] int8 in the stored form, or None where the kernels' blocks do not tile it
    (depth not a multiple of 4, an odd number of rows)."""
    rows, depth = weights.shape
    if depth % BLOCK_DEPTH or rows % BLOCK_ROWS or not rows:
        return None
    pairs, per_row = rows // BLOCK_ROWS, depth // BLOCK_DEPTH
    blocks = weights.reshape(pairs, BLOCK_ROWS, per_row, BLOCK_DEPTH).transpose(0, 2, 1, 3)  # [pair][block][row][4]
    kept = blocks.reshape(pairs, per_row, -1).any(axis=2)
    words = -(-per_row // WORD_BITS)
    bits = np.zeros((pairs, words * WORD_BITS), dtype=np.uint64)
    bits[:, :per_row] = kept
    masks = (bits.reshape(pairs, words, WORD_BITS) << np.arange(WORD_BITS, dtype=np.uint64)).sum(axis=2)
    return BlockSparse(masks.astype(np.uint32), blocks[kept].reshape(-1).astype(np.int8), int(kept.sum()),
                       int(kept.size))


def block_zero_share(weights: np.ndarray) -> float | None:
    """The share of all-zero blocks of a [rows][depth] matrix, or None where the blocks do not tile it."""
    sparse = block_sparse(weights)
    return None if sparse is None else 1 - sparse.kept / sparse.blocks
