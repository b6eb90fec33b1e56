import threading
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.fakes import synthetic_features

from packed_bert.backends.length_buckets import LENGTH_STEP
from packed_bert.backends.sequence_rows import plan_calls
from packed_bert.harness.batching import BatchBuilder
from packed_bert.harness.qsl import SampleLibrary
from packed_bert.harness.scheduler import ServerScheduler, offline_chunks
from packed_bert.harness.workers import WorkItem
from packed_bert.packing import build_batch, pack_matrix


@pytest.mark.parametrize("strategy", ["packed", "sorted", "padded"])
def test_batches_match_the_packing_layout(strategy: str) -> None:
    lib = SampleLibrary.from_features(synthetic_features(200))
    chunk = np.array([5, 17, 5, 120, 3, 199, 64, 8, 150, 42], dtype=np.int64)  # 5 twice
    batch = BatchBuilder(lib, strategy).build(chunk)
    lens = lib.lengths[chunk]
    if strategy == "packed":
        local, row_len = pack_matrix(lens, 3, 384), 384
    elif strategy == "sorted":
        local, row_len = np.argsort(-lens, kind="stable")[:, None], int(lens.max())
    else:
        local, row_len = np.arange(chunk.size)[:, None], 384
    ref = build_batch(local, lib.input_ids[chunk], lib.segment_ids[chunk], lens, row_len, local.shape[1])
    for name in ("input_ids", "segment_ids", "position_ids", "seq_lens", "sample_index"):
        np.testing.assert_array_equal(getattr(batch, name), getattr(ref, name), err_msg=name)
    assert sorted(batch.sample_index[batch.sample_index >= 0].tolist()) == list(range(chunk.size))


def test_offline_chunks_are_balanced_over_devices() -> None:
    chunks = offline_chunks(107_000, 4096, 16)
    assert len(chunks) % 16 == 0 and max(b - a for a, b in chunks) <= 4096
    sizes = [b - a for a, b in chunks]
    assert max(sizes) - min(sizes) <= max(sizes) * 0.01 + 1
    assert chunks[0][0] == 0 and chunks[-1][1] == 107_000
    assert offline_chunks(10, 4096, 16) == [(i, i + 1) for i in range(10)]
    assert offline_chunks(0, 8, 1) == []


def test_offline_chunks_end_only_at_allowed_cuts() -> None:
    rng = np.random.default_rng(0)
    cuts = np.cumsum(rng.integers(1, 4, 500))  # rows of 1-3 samples
    n = int(cuts[-1])
    chunks = offline_chunks(n, 16, 1, cuts=cuts)
    assert chunks[0][0] == 0 and chunks[-1][1] == n
    assert all(a < b for a, b in chunks) and all(chunks[i][1] == chunks[i + 1][0] for i in range(len(chunks) - 1))
    assert set(b for _, b in chunks) <= set(cuts.tolist())
    # equal rows per chunk (a row is the unit of a device's work), as many chunks as 16 allows
    rows = [int(np.searchsorted(cuts, b) - np.searchsorted(cuts, a)) for a, b in chunks]
    assert max(rows) - min(rows) <= 1
    assert len(chunks) == -(-n // 16)


def test_offline_packed_query_keeps_the_whole_query_packing(shared_data: Path) -> None:
    """16-sample chunks of a shuffled SQuAD query: 97% token efficiency, not the 88% of
    packing each chunk on its own."""
    lens = np.load(shared_data / "squad" / "reference-features.npz")["lengths"]
    feats = synthetic_features(lens.size)
    feats.lengths = lens.astype(np.uint16)
    lib = SampleLibrary.from_features(feats)
    builder = BatchBuilder(lib, "packed")
    query = np.random.default_rng(1).permutation(lens.size)
    perm, cuts = builder.plan_offline(query)
    ordered = query[perm]
    rows = slots = 0
    for a, b in offline_chunks(ordered.size, 16, 1, cuts=cuts):
        batch = builder.build(ordered[a:b])
        rows += batch.num_rows
        slots += batch.input_ids.size
    assert sorted(ordered.tolist()) == list(range(lens.size))
    assert rows == pack_matrix(lens).shape[0]  # the packer sees only the histogram
    assert float(lens.sum()) / slots >= 0.97
    alone = sum(pack_matrix(lens[query[s : s + 16]]).shape[0] for s in range(0, lens.size, 16))
    assert alone > rows * 1.05  # what the chunks would cost packed one by one


def test_offline_sorted_query_for_fixed_call_shapes_leaves_blank_rows_only_at_each_lengths_end(
    shared_data: Path,
) -> None:
    """A test run's 704 SQuAD samples in batches of about 16 for a runner calling 8 rows at a
    time: cut at full calls, only each length step's last call of the query has blank rows."""
    lens = np.load(shared_data / "squad" / "reference-features.npz")["lengths"]
    feats = synthetic_features(lens.size)
    feats.lengths = lens.astype(np.uint16)
    lib = SampleLibrary.from_features(feats)
    query = np.random.default_rng(2).choice(lens.size, 704, replace=False)

    def blank_rows(call_rows: int | None) -> tuple[int, int]:
        builder = BatchBuilder(lib, "sorted", call_rows=call_rows)
        perm, cuts = builder.plan_offline(query)
        ordered, blanks = query[perm], 0
        chunks = offline_chunks(ordered.size, 16, 1, cuts=cuts)
        for a, b in chunks:
            calls = plan_calls(builder.build(ordered[a:b]).seq_lens, 8, LENGTH_STEP)
            blanks += sum(8 - c.lens.size for c in calls)
        assert sorted(ordered.tolist()) == sorted(query.tolist()) and max(b - a for a, b in chunks) <= 24
        return blanks, len(chunks)

    steps = np.unique(-(-lens[query] // LENGTH_STEP)).size
    cut, chunks = blank_rows(8)
    assert cut <= 7 * steps and chunks == 704 // 16  # at most one part-blank call per length step
    assert blank_rows(None)[0] > 1.5 * cut  # batches of 16 as they fall split a step's calls


def test_server_batches_go_when_full_or_after_max_wait() -> None:
    got: list[WorkItem] = []
    lock = threading.Lock()

    def submit(item: WorkItem) -> None:
        with lock:
            got.append(item)

    sched = ServerScheduler(submit, batch_size=4, max_wait_s=0.15, idle=None)
    try:
        for i in range(9):
            sched.add(np.array([i], np.uint64), np.array([i], np.int64), time.perf_counter())
        time.sleep(0.05)
        with lock:
            assert [len(g) for g in got] == [4, 4]  # full batches at once, the 9th waits
        time.sleep(0.3)
        with lock:
            assert [len(g) for g in got] == [4, 4, 1]  # sent once it had waited 150 ms
        sched.add(np.array([9], np.uint64), np.array([9], np.int64), time.perf_counter())
        sched.flush()
        with lock:
            assert [g.ids.tolist() for g in got][-1] == [9]
    finally:
        sched.close()


def test_trimmed_packed_rows_end_at_the_fullest_row() -> None:
    lib = SampleLibrary.from_features(synthetic_features(200))
    chunk = np.flatnonzero(lib.lengths < 100)[:5].astype(np.int64)
    full = BatchBuilder(lib, "packed").build(chunk)
    trimmed = BatchBuilder(lib, "packed", trim_rows=True).build(chunk)
    used = int(full.seq_lens.sum(axis=1).max())
    assert full.row_len == 384 and trimmed.row_len == used < 384
    np.testing.assert_array_equal(trimmed.input_ids, full.input_ids[:, :used])
    np.testing.assert_array_equal(trimmed.seq_lens, full.seq_lens)
    assert not full.input_ids[:, used:].any()
