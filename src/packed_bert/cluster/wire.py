"""A packed batch as it travels to a device actor: one object of narrow arrays.

Token ids fit in uint16 (BERT's vocabulary has 30,522), segment ids in uint8 and positions in
uint16 (rows are at most 384 tokens), so a batch is 5 bytes a token instead of the 12 of its
three int32 arrays, and it is one object in Ray's object store (one put, one transfer) instead of
four. The actor widens the arrays back to int32 before its runner sees them; the logits come
back as they are (float32 [R, L, 2]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from packed_bert.backends.base import BatchLike

U16_MAX = np.iinfo(np.uint16).max


@dataclass(frozen=True)
class WireBatch:
    """``input_ids`` uint16 (int32 when an id does not fit), ``segment_ids`` uint8,
    ``position_ids`` uint16, all [R, L]; ``seq_lens`` int32 [R, K]."""

    input_ids: np.ndarray
    segment_ids: np.ndarray
    position_ids: np.ndarray
    seq_lens: np.ndarray

    @property
    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in (self.input_ids, self.segment_ids, self.position_ids, self.seq_lens))


@dataclass(frozen=True)
class ArrayBatch:
    """The four int32 arrays a runner reads."""

    input_ids: np.ndarray
    segment_ids: np.ndarray
    position_ids: np.ndarray
    seq_lens: np.ndarray


def encode(batch: BatchLike) -> WireBatch:
    ids = np.asarray(batch.input_ids)
    narrow_ids = ids.size == 0 or (int(ids.min()) >= 0 and int(ids.max()) <= U16_MAX)
    pos = np.asarray(batch.position_ids)
    seg = np.asarray(batch.segment_ids)
    if pos.size and (int(pos.min()) < 0 or int(pos.max()) > U16_MAX or int(seg.min()) < 0 or int(seg.max()) > 255):
        raise ValueError("segment or position ids out of range for the wire")
    return WireBatch(
        ids.astype(np.uint16 if narrow_ids else np.int32),
        seg.astype(np.uint8),
        pos.astype(np.uint16),
        np.ascontiguousarray(batch.seq_lens, dtype=np.int32),
    )


def decode(wire: WireBatch) -> ArrayBatch:
    """Fresh, writable int32 arrays (the object store's are read-only)."""
    return ArrayBatch(
        *(np.asarray(a).astype(np.int32) for a in (wire.input_ids, wire.segment_ids, wire.position_ids, wire.seq_lens))
    )
