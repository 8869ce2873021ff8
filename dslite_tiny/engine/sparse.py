"""Block-sparse weights for the engine's pointwise-convolution and fully-connected kernels.

A weight matrix [rows][depth] (TFLite's FC layout, and a 1×1 convolution's [out][1][1][in]) is cut into
blocks of ``BLOCK_DEPTH`` consecutive depth values of one row: one word load of four int8 weights, whose
inputs are one word load too (two SMLAD on the DSP path). A block that is all zeros adds nothing to any sum,
so the sparse kernels skip it, and the result stays bit-exact (the input offset is folded into the bias over
all weights, zeros included).

The stored form: per row, one bit per block in ``words`` 16-bit masks (bit 15 - b of mask w is the block at
depth 4 (16 w + b)); and the kept blocks' four weights each, row by row, in depth order. A bitmask costs one
bit per four weights where a list of block indices costs two; the kernels walk the set bits from the top
with a count of leading zeros (one CLZ on a Cortex-M4; from the bottom it would need RBIT too). Masks of 16
bits, not 32: a row of 64 input channels (the DS-CNNs' width) has 16 blocks, so a 32-bit mask would be
half zeros.

Blocks of one row, not of two (which would let one input load serve two rows, as the dense kernel's 2×2
block does): on the demo DS-CNN at 50 %, 4×2 blocks lost 17.5 UAR points after eight pruning epochs where
4×1 blocks lost 7.5, as unstructured pruning did in two.

Unstructured pruning leaves almost no all-zero block (at 50 % sparsity, 1 in 16), so this pays only on
weights pruned in these blocks (``compress.prune``'s ``blocks`` pattern). The generator (``engine.codegen``)
keeps the dense kernel where the sparse one would not be smaller, or would be slower by more than
``codegen.SPARSE_SLOWER_BUDGET`` by the Cortex-M4 instruction model calibrated on QEMU (``measure.cortex_m4``,
``engine_costs.md``). Both pointwise kernels widen four pixels to int16 once and read a block's inputs with
one LDRD per pixel: the sparse one costs ~1.34 instructions per kept multiply-accumulate, the dense one ~1.14
per one, so a 64-deep pointwise layer runs faster sparse below ~80 % kept; a fully connected layer (one
row: ~3.5 per kept one against ~1.9, and a mask walk per row) below ~50 %.
"""
from __future__ import annotations

import dataclasses

import numpy as np

BLOCK_DEPTH = 4  # depth values per block: one 32-bit load of int8 weights, and of inputs
BLOCK_ROWS = 1  # output channels per block
WORD_BITS = 16  # blocks per mask


@dataclasses.dataclass(frozen=True)
class BlockSparse:
    masks: np.ndarray  # uint16 [rows, words]: the kept blocks of each row
    values: np.ndarray  # int8: the kept blocks' values, row by row
    kept: int
    blocks: int

    @property
    def bytes(self) -> int:
        return int(self.masks.size * 2 + self.values.size)

    @property
    def smaller(self) -> bool:
        """Smaller than the dense int8 matrix (the masks cost 1/32 of it)."""
        return self.bytes < self.blocks * BLOCK_DEPTH * BLOCK_ROWS


def block_sparse(weights: np.ndarray) -> BlockSparse | None:
    """``weights`` [rows][depth] int8 in the stored form, or None where the kernels' blocks do not tile it
    (a depth that is not a multiple of 4)."""
    rows, depth = weights.shape
    if depth % BLOCK_DEPTH or not rows:
        return None
    per_row = depth // BLOCK_DEPTH
    blocks = weights.reshape(rows, per_row, BLOCK_DEPTH)
    kept = blocks.any(axis=2)
    words = -(-per_row // WORD_BITS)
    bits = np.zeros((rows, words * WORD_BITS), dtype=np.uint64)
    bits[:, :per_row] = kept
    masks = (bits.reshape(rows, words, WORD_BITS) << np.arange(WORD_BITS - 1, -1, -1, dtype=np.uint64)).sum(axis=2)
    return BlockSparse(masks.astype(np.uint16), blocks[kept].reshape(-1).astype(np.int8), int(kept.sum()),
                       int(kept.size))


def smaller_block_sparse(weights: np.ndarray) -> BlockSparse | None:
    """``weights`` [rows][depth] in block-sparse form where that is smaller than the dense matrix, else None."""
    sparse = block_sparse(weights)
    return sparse if sparse is not None and sparse.smaller else None


def block_zero_share(weights: np.ndarray) -> float | None:
    """The share of all-zero blocks of a [rows][depth] matrix, or None where the blocks do not tile it."""
    sparse = block_sparse(weights)
    return None if sparse is None else 1 - sparse.kept / sparse.blocks
