"""The wire form of a batch sent to a device actor (``cluster.wire``): exact round trips, 5
bytes a token."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers.fakes import synthetic_features

from packed_bert.cluster.wire import decode, encode
from packed_bert.packing import pack_batch, padded_batches, sorted_batches


def _batches() -> dict[str, object]:
    f = synthetic_features(60, seed=7)
    ids, seg, lens = f.input_ids.astype(np.int32), f.segment_ids.astype(np.int32), f.lengths
    return {
        "packed": pack_batch(ids, seg, lens),
        "padded": padded_batches(ids, seg, lens, 16)[0],
        "sorted": sorted_batches(ids, seg, lens, 16)[1],
    }


@pytest.mark.parametrize("kind", ["packed", "padded", "sorted"])
def test_a_batch_comes_back_exactly_at_5_bytes_a_token(kind: str) -> None:
    batch = _batches()[kind]
    wire = encode(batch)  # type: ignore[arg-type]
    back = decode(wire)
    for name in ("input_ids", "segment_ids", "position_ids", "seq_lens"):
        got, want = getattr(back, name), getattr(batch, name)
        assert got.dtype == np.int32 and got.flags.writeable
        np.testing.assert_array_equal(got, want)
    tokens = batch.input_ids.size  # type: ignore[attr-defined]
    assert wire.nbytes == 5 * tokens + wire.seq_lens.nbytes


def test_ids_past_uint16_travel_as_int32_and_bad_positions_are_refused() -> None:
    batch = _batches()["packed"]
    big = batch.input_ids.copy()  # type: ignore[attr-defined]
    big[0, 0] = 70_000
    wide = dataclasses.replace(batch, input_ids=big)  # type: ignore[type-var]
    wire = encode(wide)
    assert wire.input_ids.dtype == np.int32
    np.testing.assert_array_equal(decode(wire).input_ids, big)
    pos = batch.position_ids.copy()  # type: ignore[attr-defined]
    pos[0, 0] = -1
    with pytest.raises(ValueError, match="out of range"):
        encode(dataclasses.replace(batch, position_ids=pos))  # type: ignore[type-var]
