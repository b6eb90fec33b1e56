"""Sequences one per row in fixed call shapes (``sequence_rows``): every token goes out and comes back."""

from __future__ import annotations

import numpy as np
from helpers.tiny_model import random_features

from packed_bert.backends.length_buckets import LENGTH_STEP
from packed_bert.backends.sequence_rows import full_call_ends, gather, plan_calls, scatter
from packed_bert.packing import pack_batch


def test_calls_hold_one_sequence_per_row_and_scatter_back_every_token() -> None:
    ids, seg, lens = random_features(seed=3, n=20, max_len=200)
    packed = pack_batch(ids, seg, lens)
    assert packed.seq_lens.shape[1] > 1 and (packed.seq_lens > 0).sum(axis=1).max() > 1
    calls = plan_calls(packed.seq_lens, 4, LENGTH_STEP)
    assert sum(c.lens.size for c in calls) == lens.size  # every sequence once
    real = np.arange(packed.row_len)[None, :] < packed.seq_lens.sum(axis=1)[:, None]
    back = np.zeros((*packed.input_ids.shape, 2), np.float32)
    for call in calls:
        rows = gather(packed, call, 4)
        k = call.lens.size
        assert rows.input_ids.shape == (4, call.length) and call.length % LENGTH_STEP == 0
        assert np.all(call.lens <= call.length) and np.all(call.lens > call.length - LENGTH_STEP)
        assert rows.seq_lens[:k, 0].tolist() == call.lens.tolist() and not rows.seq_lens[k:].any()
        assert not rows.input_ids[k:].any()  # blank rows fill the call
        for r in range(k):  # each row: one sequence from position 0, then padding
            n = int(call.lens[r])
            assert rows.position_ids[r, :n].tolist() == list(range(n)) and not rows.input_ids[r, n:].any()
        as_logits = np.stack([rows.input_ids, rows.segment_ids], axis=-1).astype(np.float32)
        scatter(back, call, as_logits)
    np.testing.assert_array_equal(back[..., 0][real], packed.input_ids[real])
    np.testing.assert_array_equal(back[..., 1][real], packed.segment_ids[real])
    assert not back[~real].any()  # padding positions are left alone


def test_full_call_ends_cut_after_full_calls_and_at_each_length_steps_end() -> None:
    lens = np.array([100, 99, 98, 97, 96, 50, 49, 20])  # steps 112 x4, 96, 64 x2, 32
    assert full_call_ends(lens, 2, LENGTH_STEP).tolist() == [2, 4, 5, 7, 8]
    assert full_call_ends(lens[::-1], 3, LENGTH_STEP).tolist() == [1, 3, 4, 7, 8]  # shortest first
    assert full_call_ends(lens, 16, LENGTH_STEP).tolist() == [4, 5, 7, 8]
    assert full_call_ends(np.zeros(0, np.int64), 8, LENGTH_STEP).size == 0
