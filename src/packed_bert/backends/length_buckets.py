"""Length buckets: a batch's row length rounded up to a multiple of a step, so a runtime that
prepares its kernels per input shape meets a few shapes, which it can prepare before a run.

OpenVINO's CPU plugin takes any length, but its first call at a new shape costs 25-50% more
than the next ones at that shape (one BERT-Large sample of 121-263 tokens: 116-195 ms first,
74-159 ms after; docs/performance-history.md). One sample at a time every call is a new length, unless
lengths come in steps: with steps of 16 a run sees at most 24 lengths (16, 32, ..., 384), and
``bucket_lengths`` lists them for a warm-up with blank rows before the timed run (caching what
derives from input shapes is within MLPerf's rules). Padding adds empty tokens after the last
sequence of each row; a graph whose tokens attend only within their own sequence gives the real
tokens the same values either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from packed_bert.backends.base import ROW_LEN, BatchLike, batch_shape
from packed_bert.errors import UserError

LENGTH_STEP = 16  # tokens: at most 24 shapes per batch size, at most 15 empty tokens per row


@dataclass(frozen=True)
class Rows:
    """A batch's arrays (the fields a runner reads)."""

    input_ids: np.ndarray
    segment_ids: np.ndarray
    position_ids: np.ndarray
    seq_lens: np.ndarray


def check_step(step: int) -> int:
    if not 1 <= step <= ROW_LEN:
        raise UserError(f"length step must be between 1 and {ROW_LEN} tokens, got {step}")
    return step


def bucket_length(length: int, step: int) -> int:
    """``length`` rounded up to a multiple of ``step``, at most ``ROW_LEN``."""
    return min(ROW_LEN, -(-length // step) * step)


def bucket_lengths(step: int) -> list[int]:
    """Every row length a batch can have after rounding up by ``step``."""
    return sorted({bucket_length(n, step) for n in range(1, ROW_LEN + 1)})


def lengthened(batch: BatchLike, length: int) -> BatchLike:
    """``batch`` with each row padded by empty tokens to ``length`` (the same batch if it is that long)."""
    rows, have = batch_shape(batch)
    if have >= length:
        return batch
    pad = ((0, 0), (0, length - have))
    return Rows(
        np.pad(batch.input_ids, pad),
        np.pad(batch.segment_ids, pad),
        np.pad(batch.position_ids, pad),
        np.asarray(batch.seq_lens),
    )


def blank_rows(rows: int, length: int) -> Rows:
    """``rows`` rows of ``length`` tokens, each one sequence of token id 1 (a warm-up batch: no data)."""
    return Rows(
        np.ones((rows, length), np.int32),
        np.zeros((rows, length), np.int32),
        np.tile(np.arange(length, dtype=np.int32), (rows, 1)),
        np.full((rows, 1), length, np.int32),
    )
