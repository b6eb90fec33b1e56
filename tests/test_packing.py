"""Packing: every sequence placed once, rows within limits, batches and unpacking exact."""

import time
from pathlib import Path

import numpy as np
import pytest

from packed_bert.harness.scheduler import offline_chunks
from packed_bert.packing import (
    build_batch,
    mix_rows,
    pack,
    pack_batch,
    pack_matrix,
    pack_order,
    padded_batches,
    sorted_batches,
    to_varlen,
    unpack,
    varlen_to_rows,
)


def random_lengths(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, 385, size=n)
    lens[: min(n, 3)] = [1, 384, 192][: min(n, 3)]
    return lens


def random_features(lens: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.zeros((lens.size, 384), dtype=np.uint16)
    seg = np.zeros((lens.size, 384), dtype=np.uint8)
    for i, n in enumerate(lens):
        ids[i, :n] = rng.integers(1, 30522, size=n)
        seg[i, n // 2 : n] = 1
    return ids, seg


def check_rows(rows: list[np.ndarray], lens: np.ndarray, k: int, row_len: int) -> None:
    placed = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
    assert np.array_equal(np.sort(placed), np.arange(lens.size)), "each sequence exactly once"
    assert all(1 <= r.size <= k for r in rows)
    assert all(int(lens[r].sum()) <= row_len for r in rows)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_pack_places_every_sequence_within_limits(seed: int, k: int) -> None:
    lens = random_lengths(seed, 300)
    rows = pack(lens, max_per_pack=k)
    check_rows(rows, lens, k, 384)
    if k == 1:
        assert len(rows) == lens.size
    again = pack(lens, max_per_pack=k)
    assert all(np.array_equal(a, b) for a, b in zip(rows, again, strict=True)), "deterministic"


def test_pack_small_cases() -> None:
    assert pack(np.array([], dtype=np.int64)) == []
    assert [r.tolist() for r in pack([384])] == [[0]]
    rows = pack([100, 100, 100, 100], max_per_pack=3)
    assert sorted(len(r) for r in rows) == [1, 3]
    rows = pack([5, 5, 5, 5, 5, 5, 5], max_per_pack=3, row_len=16)
    check_rows(rows, np.full(7, 5), 3, 16)
    assert len(rows) == 3
    # perfect fits are found: 3 x 128 and 200 + 184
    assert len(pack([128, 200, 128, 184, 128])) == 2


def test_pack_rejects_bad_lengths() -> None:
    with pytest.raises(ValueError, match="1..384"):
        pack([0, 10])
    with pytest.raises(ValueError, match="1..384"):
        pack([385])
    with pytest.raises(ValueError, match="max_per_pack"):
        pack([3], max_per_pack=0)


def _squad_lengths(shared_data: Path) -> np.ndarray:
    return np.load(shared_data / "squad" / "reference-features.npz")["lengths"].astype(np.int64)


def _efficiency(lens: np.ndarray, chunk: int) -> float:
    packs = sum(pack_matrix(lens[s : s + chunk]).shape[0] for s in range(0, lens.size, chunk))
    return float(lens.sum()) / (packs * 384)


def test_squad_whole_set_efficiency(shared_data: Path) -> None:
    lens = _squad_lengths(shared_data)
    start = time.perf_counter()
    rows = pack_matrix(lens)
    elapsed = time.perf_counter() - start
    efficiency = float(lens.sum()) / (rows.shape[0] * 384)
    print(f"whole set: {rows.shape[0]} packs, {efficiency:.4f}, {elapsed * 1e3:.1f} ms")
    assert efficiency >= 0.970


def test_squad_chunk_efficiency(shared_data: Path) -> None:
    lens = _squad_lengths(shared_data)
    # LoadGen issues samples in a random order; chunks of 4,096 of it pack as well as the set
    for seed in range(3):
        shuffled = lens[np.random.default_rng(seed).permutation(lens.size)]
        assert _efficiency(shuffled, 4096) >= 0.965
    # in file order one article's long contexts crowd into one chunk (documented figure)
    assert _efficiency(lens, 4096) >= 0.94


def test_pack_order_lists_rows_and_chunks_of_whole_rows_repack_as_well(shared_data: Path) -> None:
    lens = _squad_lengths(shared_data)
    shuffled = lens[np.random.default_rng(0).permutation(lens.size)]
    order, row_ends = pack_order(shuffled)
    matrix = mix_rows(pack_matrix(shuffled))
    assert sorted(order.tolist()) == list(range(lens.size))
    assert row_ends.size == matrix.shape[0] and row_ends[-1] == lens.size
    for r in (0, 1, matrix.shape[0] - 1):  # each row's sequences, in the row's own order
        start = row_ends[r - 1] if r else 0
        np.testing.assert_array_equal(order[start : row_ends[r]], matrix[r][matrix[r] >= 0])
    # chunks of about 16 samples cut between rows pack again into as many rows in all
    cuts = row_ends[np.searchsorted(row_ends, np.arange(16, lens.size, 16))]
    bounds = np.unique(np.concatenate(([0], cuts, [lens.size])))
    rows = sum(pack_matrix(shuffled[order[a:b]]).shape[0] for a, b in zip(bounds[:-1], bounds[1:], strict=True))
    assert rows == matrix.shape[0]
    assert float(lens.sum()) / (rows * 384) >= 0.97


def test_mix_rows_spreads_each_row_kind_evenly() -> None:
    # 6 rows of one sequence, 3 of two, 3 of three, grouped by kind
    matrix = np.full((12, 3), -1, dtype=np.int64)
    kinds = [1] * 6 + [2] * 3 + [3] * 3
    for r, k in enumerate(kinds):
        matrix[r, :k] = np.arange(k) + 10 * r
    mixed = mix_rows(matrix)
    assert sorted(map(tuple, mixed.tolist())) == sorted(map(tuple, matrix.tolist()))
    # a row's key: (rank within its kind + 0.5) / rows of its kind; ties keep the kinds' order
    assert (mixed >= 0).sum(axis=1).tolist() == [1, 2, 3, 1, 1, 2, 3, 1, 1, 2, 3, 1]


def test_offline_chunks_of_the_pack_order_hold_equal_rows_and_samples(shared_data: Path) -> None:
    # a multi-card Offline query: 32 chunks cut between rows; each card costs a row per row, so
    # the chunks' rows must be equal or the last cards idle at the tail, and mixed rows keep
    # their sample counts (the batch size) about equal too
    lens = _squad_lengths(shared_data)
    query = lens[np.random.default_rng(1).permutation(lens.size)]
    order, row_ends = pack_order(query)
    chunks = offline_chunks(query.size, 4096, 8, per_device=4, cuts=row_ends)
    rows = [int(np.searchsorted(row_ends, b) - np.searchsorted(row_ends, a)) for a, b in chunks]
    samples = [b - a for a, b in chunks]
    assert len(chunks) == 32
    assert max(rows) - min(rows) <= 1, rows
    assert max(samples) <= 1.03 * min(samples), samples


def naive_batch(
    rows: list[np.ndarray], ids: np.ndarray, seg: np.ndarray, lens: np.ndarray, row_len: int, k: int
) -> dict[str, np.ndarray]:
    out = {
        name: np.zeros((len(rows), row_len), dtype=np.int32) for name in ("input_ids", "segment_ids", "position_ids")
    }
    seq_lens = np.zeros((len(rows), k), dtype=np.int32)
    index = np.full((len(rows), k), -1, dtype=np.int64)
    for r, row in enumerate(rows):
        at = 0
        for j, s in enumerate(row):
            n = int(lens[s])
            out["input_ids"][r, at : at + n] = ids[s, :n]
            out["segment_ids"][r, at : at + n] = seg[s, :n]
            out["position_ids"][r, at : at + n] = np.arange(n)
            seq_lens[r, j] = n
            index[r, j] = s
            at += n
    out["seq_lens"] = seq_lens
    out["sample_index"] = index
    return out


@pytest.mark.parametrize("seed", range(3))
def test_build_batch_matches_naive_layout(seed: int) -> None:
    lens = random_lengths(seed, 120)
    ids, seg = random_features(lens, seed)
    rows = pack(lens)
    batch = build_batch(rows, ids, seg, lens, 384, max_per_pack=3)
    expected = naive_batch(rows, ids, seg, lens, 384, 3)
    for name, value in expected.items():
        got = getattr(batch, name)
        assert got.dtype == value.dtype, name
        assert np.array_equal(got, value), name
    assert batch.num_sequences == lens.size
    assert batch.real_tokens == lens.sum()
    assert batch.max_per_pack == 3


def test_unpack_returns_each_sequence_in_chunk_order() -> None:
    lens = random_lengths(7, 50)
    ids, seg = random_features(lens)
    batch = pack_batch(ids, seg, lens)
    # logits that name their token: (input id, position)
    logits = np.stack([batch.input_ids, batch.position_ids], axis=-1).astype(np.float32)
    per_seq = unpack(batch, logits)
    assert len(per_seq) == lens.size
    for i, values in enumerate(per_seq):
        assert values.shape == (lens[i], 2) and values.dtype == np.float32
        assert np.array_equal(values[:, 0], ids[i, : lens[i]])
        assert np.array_equal(values[:, 1], np.arange(lens[i]))
        assert np.shares_memory(values, logits)
    with pytest.raises(ValueError, match="do not match"):
        unpack(batch, logits[:, :10])


def test_padded_and_sorted_batches() -> None:
    lens = random_lengths(3, 37)
    ids, seg = random_features(lens)
    padded = padded_batches(ids, seg, lens, batch_size=16)
    assert [b.num_rows for b in padded] == [16, 16, 5]
    assert all(b.input_ids.shape[1] == 384 and b.max_per_pack == 1 for b in padded)
    assert np.array_equal(np.concatenate([b.sample_index[:, 0] for b in padded]), np.arange(37))

    batches = sorted_batches(ids, seg, lens, batch_size=8)
    assert sum(b.num_rows for b in batches) == 37
    seen = np.concatenate([b.sample_index[:, 0] for b in batches])
    assert np.array_equal(np.sort(seen), np.arange(37))
    for b in batches:
        assert b.row_len == int(b.seq_lens.max())  # padded to its own longest
        logits = np.stack([b.input_ids, b.position_ids], -1).astype(np.float32)
        for s, values in zip(np.sort(b.sample_index[:, 0]), unpack(b, logits), strict=True):
            assert np.array_equal(values[:, 0], ids[s, : lens[s]])
    lengths_in_order = np.concatenate([b.seq_lens[:, 0] for b in batches])
    assert np.all(np.diff(lengths_in_order) <= 0)


def test_varlen_round_trip() -> None:
    lens = random_lengths(11, 40)
    ids, seg = random_features(lens)
    batch = pack_batch(ids, seg, lens)
    v = to_varlen(batch)
    assert v.input_ids.size == lens.sum() == v.cu_seqlens[-1]
    assert v.max_seqlen == lens.max()
    for j, s in enumerate(v.sample_index):
        assert np.array_equal(v.input_ids[v.cu_seqlens[j] : v.cu_seqlens[j + 1]], ids[s, : lens[s]])
    back = varlen_to_rows(batch, v.position_ids)
    assert np.array_equal(back, batch.position_ids)
