"""Batching strategies over a chunk of features: packed, padded to 384, sorted by length.

All return :class:`PackedBatch` objects whose ``sample_index`` points into the chunk given.
"""

import numpy as np
import numpy.typing as npt

from packed_bert.packing.batch import PackedBatch, build_batch
from packed_bert.packing.packer import pack_matrix
from packed_bert.terms import MAX_SEQS_PER_ROW, SEQ_LEN


def pack_batch(
    input_ids: np.ndarray,
    segment_ids: np.ndarray,
    lengths: npt.ArrayLike,
    max_per_pack: int = MAX_SEQS_PER_ROW,
    row_len: int = SEQ_LEN,
) -> PackedBatch:
    """Pack a whole chunk into one batch of rows, K = ``max_per_pack``."""
    matrix = pack_matrix(lengths, max_per_pack, row_len)
    return build_batch(matrix, input_ids, segment_ids, lengths, row_len, max_per_pack)


def padded_batches(
    input_ids: np.ndarray,
    segment_ids: np.ndarray,
    lengths: npt.ArrayLike,
    batch_size: int,
    row_len: int = SEQ_LEN,
) -> list[PackedBatch]:
    """One sequence per row padded to ``row_len``, in chunk order, ``batch_size`` rows a batch."""
    n = len(np.asarray(lengths))
    return [
        build_batch(np.arange(s, min(s + batch_size, n))[:, None], input_ids, segment_ids, lengths, row_len, 1)
        for s in range(0, n, batch_size)
    ]


def sorted_groups(lengths: npt.ArrayLike, batch_size: int) -> list[np.ndarray]:
    """Chunk indices sorted by length (longest first), cut into groups of ``batch_size``."""
    lens = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-lens, kind="stable")
    return [order[s : s + batch_size] for s in range(0, order.size, batch_size)]


def sorted_batches(
    input_ids: np.ndarray,
    segment_ids: np.ndarray,
    lengths: npt.ArrayLike,
    batch_size: int,
) -> list[PackedBatch]:
    """Sort by length, then pad each batch only to its own longest sequence (K = 1)."""
    lens = np.asarray(lengths, dtype=np.int64)
    return [
        build_batch(group[:, None], input_ids, segment_ids, lens, int(lens[group].max()), 1)
        for group in sorted_groups(lens, batch_size)
    ]
