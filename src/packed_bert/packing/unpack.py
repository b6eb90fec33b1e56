"""Logits of packed rows back to each sequence, in the order of the chunk."""

import numpy as np

from packed_bert.packing.batch import PackedBatch


def _check(batch: PackedBatch, logits: np.ndarray) -> np.ndarray:
    arr = np.asarray(logits)
    if arr.shape[:2] != batch.input_ids.shape:
        raise ValueError(f"logits of shape {arr.shape} do not match a batch of {batch.input_ids.shape} tokens")
    return arr.astype(np.float32, copy=False)


def _slots(batch: PackedBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Filled slots ordered by sample index: (sample, row, start in row, length)."""
    starts = np.cumsum(batch.seq_lens, axis=1, dtype=np.int64) - batch.seq_lens
    filled = batch.sample_index >= 0
    sample = batch.sample_index[filled]
    row = np.broadcast_to(np.arange(batch.num_rows)[:, None], filled.shape)[filled]
    order = np.argsort(sample, kind="stable")
    return sample[order], row[order], starts[filled][order], batch.seq_lens[filled][order]


def unpack(batch: PackedBatch, logits: np.ndarray) -> list[np.ndarray]:
    """Per-sequence float32 [len, 2] logits (views into ``logits``), by ascending sample index."""
    arr = _check(batch, logits)
    _, rows, starts, lens = _slots(batch)
    return [arr[r, s : s + n] for r, s, n in zip(rows.tolist(), starts.tolist(), lens.tolist(), strict=True)]
