"""A packed batch as one unpadded token stream, for variable-length (varlen) attention."""

from dataclasses import dataclass

import numpy as np

from packed_bert.packing.batch import PackedBatch


@dataclass(frozen=True)
class VarlenBatch:
    """Tokens of all sequences back to back, [T] each; ``cu_seqlens`` int32 [S + 1] offsets.

    Sequences keep the batch's row-major slot order; ``sample_index`` [S] names each one.
    """

    input_ids: np.ndarray
    segment_ids: np.ndarray
    position_ids: np.ndarray
    cu_seqlens: np.ndarray
    max_seqlen: int
    sample_index: np.ndarray


def to_varlen(batch: PackedBatch) -> VarlenBatch:
    """Drop the padding of ``batch``: the real tokens of every row, in row-major order."""
    row_tokens = batch.seq_lens.sum(axis=1, dtype=np.int64)
    keep = np.arange(batch.row_len)[None, :] < row_tokens[:, None]
    filled = batch.sample_index >= 0
    lens = batch.seq_lens[filled].astype(np.int64)
    cu = np.zeros(lens.size + 1, dtype=np.int32)
    np.cumsum(lens, out=cu[1:])
    return VarlenBatch(
        input_ids=batch.input_ids[keep],
        segment_ids=batch.segment_ids[keep],
        position_ids=batch.position_ids[keep],
        cu_seqlens=cu,
        max_seqlen=int(lens.max()) if lens.size else 0,
        sample_index=batch.sample_index[filled],
    )


def varlen_to_rows(batch: PackedBatch, values: np.ndarray) -> np.ndarray:
    """Scatter [T, ...] varlen outputs back into the batch's [R, L, ...] layout (zeros elsewhere)."""
    row_tokens = batch.seq_lens.sum(axis=1, dtype=np.int64)
    keep = np.arange(batch.row_len)[None, :] < row_tokens[:, None]
    out = np.zeros((batch.num_rows, batch.row_len, *values.shape[1:]), dtype=values.dtype)
    out[keep] = values
    return out
