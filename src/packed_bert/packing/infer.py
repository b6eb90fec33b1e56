"""Run a model over a set of sequences in any batching strategy and get each one's logits
back: the direct path (no LoadGen) that accuracy benchmarks and batch-invariance checks use.

``infer`` is any callable from a ``PackedBatch`` to float32 logits [R, L, 2] (a backend
runner's ``infer``); nothing here imports a runtime.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from packed_bert.packing.batch import PackedBatch
from packed_bert.packing.strategies import pack_batch, padded_batches, sorted_batches
from packed_bert.packing.unpack import unpack

STRATEGIES = ("packed", "sorted", "padded")


def batches_of(
    strategy: str,
    input_ids: np.ndarray,
    segment_ids: np.ndarray,
    lengths: npt.ArrayLike,
    batch_size: int,
    max_per_row: int = 3,
) -> list[PackedBatch]:
    """The batches a strategy makes of the sequences, ``batch_size`` sequences each (packed:
    each chunk of ``batch_size`` sequences packed into rows); ``sample_index`` is global."""
    lens = np.asarray(lengths, dtype=np.int64)
    if strategy == "sorted":
        return sorted_batches(input_ids, segment_ids, lens, batch_size)
    if strategy == "padded":
        return padded_batches(input_ids, segment_ids, lens, batch_size)
    if strategy != "packed":
        raise ValueError(f"unknown batching strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    out = []
    for s in range(0, lens.size, batch_size):
        b = pack_batch(
            input_ids[s : s + batch_size], segment_ids[s : s + batch_size], lens[s : s + batch_size], max_per_row
        )
        index = np.where(b.sample_index >= 0, b.sample_index + s, -1)
        out.append(PackedBatch(b.input_ids, b.segment_ids, b.position_ids, b.seq_lens, index))
    return out


def infer_sequences(
    infer: Callable[[PackedBatch], np.ndarray],
    input_ids: np.ndarray,
    segment_ids: np.ndarray,
    lengths: npt.ArrayLike,
    strategy: str = "sorted",
    batch_size: int = 16,
    max_per_row: int = 3,
) -> list[np.ndarray]:
    """Float32 logits [length, 2] of every sequence, in the order given."""
    lens = np.asarray(lengths, dtype=np.int64)
    out: list[np.ndarray | None] = [None] * lens.size
    for batch in batches_of(strategy, input_ids, segment_ids, lens, batch_size, max_per_row):
        logits = np.asarray(infer(batch), dtype=np.float32)
        order = np.sort(batch.sample_index[batch.sample_index >= 0])
        for i, seq in zip(order.tolist(), unpack(batch, logits), strict=True):
            out[i] = np.array(seq, copy=True)
    return [o for o in out if o is not None]
