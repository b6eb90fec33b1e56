"""Per-sequence attention in the fused ONNX graph (``onnx_fused``, ``attention="sequence"``):
the host-side gather indices, and logits that are the same bits alone, sorted or packed, and
match the eager fp32 model within the recipe's tolerance (ONNX Runtime and OpenVINO)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.tiny_model import calibration_of, perturbed_tiny_model, random_features

from packed_bert.backends import create
from packed_bert.backends.attention_feeds import BUCKETS, SLOT_ROW_COST, sequence_feeds, slot_feeds, slot_groups
from packed_bert.model import PackedBertForQA
from packed_bert.packing import pack_batch, sorted_batches, unpack


def _each_token_once_and_back(feeds: dict[str, np.ndarray], keys: list[str], seq_lens: np.ndarray) -> None:
    """The blocks hold each real token exactly once, and ``attn_scatter`` finds it back."""
    rows_lens = seq_lens.sum(axis=1)
    want = np.concatenate([r * 384 + np.arange(n) for r, n in enumerate(rows_lens)])
    blocks = np.concatenate([feeds[f"attn_index_{k}"].ravel() for k in keys])
    np.testing.assert_array_equal(blocks[feeds["attn_scatter"][want]], want)


def test_feeds_gather_every_real_token_once_and_scatter_it_back() -> None:
    seq_lens = np.array([[300, 60, 24], [5, 0, 0], [384, 0, 0], [64, 65, 0]], np.int32)
    feeds = sequence_feeds(seq_lens, 384)
    gathered = []
    for b in BUCKETS:
        index, bias = feeds[f"attn_index_{b}"], feeds[f"attn_bias_{b}"]
        assert index.shape == bias.shape and index.shape[1] == b
        real = bias == 0
        assert (real[:, :-1] >= real[:, 1:]).all()  # a sequence's tokens first, then padding
        gathered.append(index[real])
    rows_lens = seq_lens.sum(axis=1)
    want = np.concatenate([r * 384 + np.arange(n) for r, n in enumerate(rows_lens)])
    np.testing.assert_array_equal(np.sort(np.concatenate(gathered)), want)  # each real token exactly once
    _each_token_once_and_back(feeds, [str(b) for b in BUCKETS], seq_lens)
    # buckets by the sequence's own length: 300 -> 320, 60 -> 64, 65 -> 128, 384 -> 384
    assert feeds["attn_index_320"].shape[0] == 1 and feeds["attn_index_128"].shape[0] == 1
    assert feeds["attn_index_64"].shape[0] == 4 and feeds["attn_index_192"].shape == (0, 192)  # 5, 24, 60, 64; none


def test_slot_feeds_cut_a_batch_into_few_block_lengths_at_the_least_padding() -> None:
    seq_lens = np.array([[300, 60, 24], [5, 0, 0], [384, 0, 0], [64, 65, 0]], np.int32)
    feeds = slot_feeds(seq_lens, 384, slots=3)
    keys = [f"s{k}" for k in range(3)]
    _each_token_once_and_back(feeds, keys, seq_lens)
    for k in keys:
        index, lens = feeds[f"attn_index_{k}"], feeds[f"attn_lens_{k}"]
        assert index.shape[1] == lens.max()  # the run's longest sequence: no rounding up
        real = np.arange(index.shape[1])[None, :] < lens[:, None]
        assert (index[~real] == 0).all()
    # the three runs that waste the least: 5, 24, 60, 64, 65 | 300 | 384
    assert [feeds[f"attn_lens_{k}"].tolist() for k in keys] == [[5, 24, 60, 64, 65], [300], [384]]
    alone = slot_feeds(np.array([[285]], np.int32), 384)
    assert alone["attn_index_s0"].shape == (1, 285) and alone["attn_index_s1"].shape == (0, 1)
    blank = slot_feeds(np.zeros((2, 3), np.int32), 384)  # rows with no sequence: every slot unused
    assert all(blank[f"attn_index_s{k}"].shape == (0, 1) for k in range(6)) and not blank["attn_scatter"].any()


def test_slot_groups_are_the_cheapest_cut() -> None:
    """Against every cut of small sorted batches into at most ``slots`` runs."""
    from itertools import combinations

    def cost(lengths: np.ndarray, ends: list[int]) -> float:
        starts = [0, *ends[:-1]]
        return sum(
            (e - s) * lengths[e - 1] * (lengths[e - 1] + SLOT_ROW_COST) for s, e in zip(starts, ends, strict=True)
        )

    rng = np.random.default_rng(7)
    for _ in range(60):
        n, slots = int(rng.integers(1, 8)), int(rng.integers(1, 5))
        lengths = np.sort(rng.choice([3, 40, 41, 128, 200, 384], n))
        ends = slot_groups(lengths, slots).tolist()
        assert ends[-1] == n and len(ends) <= slots and ends == sorted(set(ends))
        cheapest = min(cost(lengths, [*cut, n]) for r in range(min(slots, n)) for cut in combinations(range(1, n), r))
        assert cost(lengths, ends) == pytest.approx(cheapest)


@pytest.fixture(scope="module")
def tiny() -> PackedBertForQA:
    return perturbed_tiny_model()


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return random_features(seed=5, n=9, max_len=300)


RECIPES = [
    ("onnxruntime", "fp32", {"graph": "sequence"}, 1e-4),
    ("onnxruntime", "int8", {"graph": "sequence"}, 0.08),
    ("onnxruntime", "fp32", {"graph": "sequence-ort"}, 1e-4),  # MultiHeadAttention per slot
    ("onnxruntime", "int8", {"graph": "sequence-ort", "quant": "smoothquant"}, 0.08),  # the avx2 bert-99 default
    ("openvino", "fp32", {"attention": "sequence"}, 1e-4),
    ("openvino", "bf16", {}, 0.05),
    ("openvino", "int8", {}, 0.08),  # static int8 after SmoothQuant (the default)
    ("openvino", "int8", {"quant": "weights"}, 0.08),  # int8 weights, activations per token
]


@pytest.mark.parametrize(("backend", "precision", "options", "tolerance"), RECIPES)
def test_sequence_attention_is_bit_for_bit_batch_invariant(
    tiny: PackedBertForQA, features: tuple, backend: str, precision: str, options: dict, tolerance: float
) -> None:
    if backend == "openvino":
        pytest.importorskip("openvino", reason="the openvino runtime is not installed")
    runner = create(backend, tiny, precision, threads=1, calibration=calibration_of(features), **options)
    packed = pack_batch(*features)
    assert packed.num_rows < len(features[2])  # some rows hold several sequences
    by_packed = unpack(packed, runner.infer(packed))
    with torch.no_grad():
        args = [torch.from_numpy(getattr(packed, n)) for n in ("input_ids", "segment_ids", "position_ids", "seq_lens")]
        eager = unpack(packed, tiny(*args).numpy())
    by_sorted: dict[int, np.ndarray] = {}
    for batch in sorted_batches(*features, batch_size=4):
        for idx, seq in zip(np.sort(batch.sample_index[:, 0]), unpack(batch, runner.infer(batch)), strict=True):
            by_sorted[int(idx)] = seq
    for i, seq in enumerate(by_packed):
        assert np.abs(seq - eager[i]).max() <= tolerance * max(1.0, float(np.ptp(eager[i])))
        alone = sorted_batches(*(f[i : i + 1] for f in features), batch_size=1)[0]
        np.testing.assert_array_equal(seq, by_sorted[i])
        np.testing.assert_array_equal(seq, unpack(alone, runner.infer(alone))[0])
