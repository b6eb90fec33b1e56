"""Packed, sorted and padded batches give every sequence the same logits (issue 6), through the
harness's batch builder and real runtimes, on real SQuAD features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from packed_bert.backends import create
from packed_bert.harness.batching import BatchBuilder
from packed_bert.harness.qsl import SampleLibrary
from packed_bert.model import BERT_TINY, PackedBertForQA
from packed_bert.packing import unpack


@pytest.fixture(scope="module")
def library(shared_data: Path) -> SampleLibrary:
    with np.load(shared_data / "squad" / "reference-features.npz") as data:
        n = 40  # short and long SQuAD features, several rows' worth
        return SampleLibrary(
            np.ascontiguousarray(data["input_ids"][:n]),
            np.ascontiguousarray(data["segment_ids"][:n]),
            data["lengths"][:n].astype(np.int64),
        )


@pytest.fixture(scope="module")
def tiny() -> PackedBertForQA:
    torch.manual_seed(3)
    return PackedBertForQA(BERT_TINY).eval()


def _per_sequence(builder: BatchBuilder, runner: object, chunk: np.ndarray) -> dict[int, np.ndarray]:
    batch = builder.build(chunk)
    logits = runner.infer(batch)  # type: ignore[attr-defined]
    positions = np.sort(batch.sample_index[batch.sample_index >= 0])
    return {int(p): seq for p, seq in zip(positions, unpack(batch, logits), strict=True)}


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_three_strategies_same_logits(library: SampleLibrary, tiny: PackedBertForQA, backend: str) -> None:
    runner = create(backend, tiny, "fp32", "cpu")
    rng = np.random.default_rng(0)
    chunk = rng.permutation(library.lengths.size)[:24]
    results = {
        name: _per_sequence(BatchBuilder(library, strategy, trim_rows=trim), runner, chunk)
        for name, strategy, trim in (
            ("packed", "packed", False),
            ("packed-trimmed", "packed", True),
            ("sorted", "sorted", False),
            ("padded", "padded", False),
        )
    }
    reference = results["padded"]
    assert len(reference) == chunk.size
    for name, got in results.items():
        for pos, seq in reference.items():
            assert got[pos].shape == (library.lengths[chunk[pos]], 2)
            np.testing.assert_allclose(got[pos], seq, atol=1e-4, rtol=0, err_msg=f"{name} sample {pos}")
