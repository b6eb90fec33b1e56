"""The CUDA graph plan of the PyTorch runner: which graph sizes a batch runs as, and that the
graphs are captured before a timed run with autograd off. The capture itself needs a GPU
(``benchmarks/gpu_check.sh``); here a stand-in graph records how it is made and called."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from packed_bert.backends import torch_backend
from packed_bert.backends.torch_backend import GRAPH_ROWS, TorchRunner, graph_calls
from packed_bert.packing import PackedBatch
from packed_bert.terms import MAX_SEQS_PER_ROW, SEQ_LEN


@pytest.mark.parametrize("rows", [1, 7, 8, 9, 63, 64, 545, 1024, 1031, 2047])
def test_graph_calls_cover_a_batch_once_with_less_than_one_small_graph_of_padding(rows: int) -> None:
    calls = graph_calls(rows)
    starts = [start for start, _, _ in calls]
    assert starts == sorted(starts) and starts[0] == 0
    assert sum(count for _, count, _ in calls) == rows
    assert all(a + n == b for (a, n, _), b in zip(calls, [*starts[1:], rows], strict=True))
    assert all(size in GRAPH_ROWS and count <= size for _, count, size in calls)
    assert sum(size for _, _, size in calls) - rows < GRAPH_ROWS[-1]


class RecordingGraph:
    made: list[tuple[int, bool, bool]] = []
    ran: list[tuple[int, int]] = []

    def __init__(self, model: Any, device: Any, rows: int, length: int, slots: int, pool: Any) -> None:
        assert (length, slots) == (SEQ_LEN, MAX_SEQS_PER_ROW)
        self.rows = rows
        RecordingGraph.made.append((rows, torch.is_inference_mode_enabled(), torch.is_grad_enabled()))

    def run(self, arrays: list[np.ndarray]) -> np.ndarray:
        RecordingGraph.ran.append((self.rows, arrays[0].shape[0]))
        assert arrays[3].shape[1] == MAX_SEQS_PER_ROW  # seq_lens padded to the graph's slots
        return np.full((arrays[0].shape[0], SEQ_LEN, 2), arrays[0][:, :1, None], np.float32)


def test_warm_captures_every_graph_size_with_autograd_off_and_a_batch_runs_through_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With autograd on, a capture of BERT-Large fp16 kept every activation and ran out of the
    H200's memory, and compiling fp8 traced a backward pass that _scaled_mm does not have."""
    monkeypatch.setattr(torch_backend, "_Graph", RecordingGraph)
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: "pool")
    RecordingGraph.made, RecordingGraph.ran = [], []
    runner = TorchRunner("tiny", "fp32", "cpu")
    runner.static_shape = True  # as on a GPU
    assert runner.warm(1024) == len(GRAPH_ROWS)
    assert RecordingGraph.made == [(size, True, False) for size in GRAPH_ROWS]
    assert runner.graph_rows == GRAPH_ROWS
    rows = 545
    ids = np.tile(np.arange(rows, dtype=np.int32)[:, None], (1, SEQ_LEN))
    zeros = np.zeros((rows, SEQ_LEN), np.int32)
    batch = PackedBatch(ids, zeros, zeros, np.full((rows, 1), SEQ_LEN, np.int32), np.arange(rows)[:, None])
    out = runner.infer(batch)
    assert RecordingGraph.ran == [(512, 512), (32, 32), (8, 1)]
    assert out.shape == (rows, SEQ_LEN, 2) and np.array_equal(out[:, 0, 0], np.arange(rows))
    assert len(RecordingGraph.made) == len(GRAPH_ROWS)  # nothing captured inside the run
