"""Sequences one per row in calls of one shape per length: what makes a compiled model batch-invariant.

oneDNN picks a matmul's kernel by the row count of the call, and the fused attention kernel's
blocking follows the padded key length, so a compiled graph over whatever batch arrives gives a
sequence different last bits with different batch-mates (docs/performance-history.md, the amx class,
seventh session). Here a sequence always meets the same shapes: every call holds ``rows`` rows, each
one sequence padded to its length rounded up to ``LENGTH_STEP`` (blank rows fill a call), so its
logits depend on nothing but itself, whatever the batch (sorted, padded or packed) and whichever row
it lands in (checked bit for bit on BERT-Large in bf16, ``tests/test_backend_numerics.py`` on the
tiny model). The cost: up to ``LENGTH_STEP - 1`` padding tokens per sequence and the blank rows
of a length's last call in each batch; Offline batches cut at ``full_call_ends`` leave blank rows
only in each length's last call of the whole run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from packed_bert.backends.base import ROW_LEN, BatchLike
from packed_bert.backends.length_buckets import Rows


@dataclass(frozen=True)
class Call:
    """One call's sequences: the batch row each comes from, its first token there, its length."""

    length: int  # tokens per row of the call
    src_row: np.ndarray  # [k]
    src_start: np.ndarray  # [k]
    lens: np.ndarray  # [k], k <= the call's rows

    def columns(self) -> tuple[np.ndarray, np.ndarray]:
        """([k, length] token positions in the source rows, [k, length] which of them are real)."""
        offsets = np.arange(self.length)
        valid = offsets[None, :] < self.lens[:, None]
        return np.where(valid, self.src_start[:, None] + offsets[None, :], 0), valid


def call_lengths(lens: np.ndarray, step: int) -> np.ndarray:
    """Each sequence's call length: its length rounded up to a multiple of ``step``, at most ``ROW_LEN``."""
    return np.minimum(ROW_LEN, -(-lens // step) * step)


def plan_calls(seq_lens: np.ndarray, rows: int, step: int) -> list[Call]:
    """The calls that run every sequence of a batch (``seq_lens`` [R, K]), shortest length first."""
    lens = np.asarray(seq_lens, dtype=np.int64)
    row, slot = np.nonzero(lens > 0)
    starts = (np.cumsum(lens, axis=1) - lens)[row, slot]
    n = lens[row, slot]
    lengths = call_lengths(n, step)
    calls = []
    for length in np.unique(lengths):
        picked = np.flatnonzero(lengths == length)
        for first in range(0, picked.size, rows):
            part = picked[first : first + rows]
            calls.append(Call(int(length), row[part], starts[part], n[part]))
    return calls


def full_call_ends(lengths: np.ndarray, rows: int, step: int) -> np.ndarray:
    """Where a run of sequences in length order (``lengths``, sorted either way) may be cut into
    batches whose calls are all full but each length step's last: after every ``rows``-th sequence
    of a step and at every step's end. Positions 1 .. n (a batch ends before that position),
    ascending, ending with n."""
    lens = np.asarray(lengths, dtype=np.int64)
    if lens.size == 0:
        return np.zeros(0, np.int64)
    steps = call_lengths(lens, step)
    starts_run = np.concatenate(([True], steps[1:] != steps[:-1]))  # a step's first sequence
    index = np.arange(lens.size)
    run_first = np.maximum.accumulate(np.where(starts_run, index, 0))
    ends_run = np.append(starts_run[1:], True)  # a step's last sequence
    return index[((index + 1 - run_first) % rows == 0) | ends_run] + 1


def gather(batch: BatchLike, call: Call, rows: int) -> Rows:
    """The call's [rows, length] arrays: its sequences from ``batch``, then blank rows (no sequence)."""
    cols, valid = call.columns()
    src = call.src_row[:, None]
    k = call.lens.size

    def take(a: np.ndarray) -> np.ndarray:
        out = np.zeros((rows, call.length), np.int32)
        out[:k] = np.where(valid, np.asarray(a)[src, cols], 0)
        return out

    seq_lens = np.zeros((rows, 1), np.int32)
    seq_lens[:k, 0] = call.lens
    return Rows(take(batch.input_ids), take(batch.segment_ids), take(batch.position_ids), seq_lens)


def scatter(out: np.ndarray, call: Call, logits: np.ndarray) -> None:
    """Write the call's ``logits`` [rows, length, 2] back to ``out`` [R, L, 2] at its sequences' places."""
    cols, valid = call.columns()
    src = np.broadcast_to(call.src_row[:, None], cols.shape)
    out[src[valid], cols[valid]] = logits[: call.lens.size][valid]
