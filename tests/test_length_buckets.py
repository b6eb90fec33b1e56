"""Length steps (``backends.length_buckets``): the lengths a runner meets, padding that leaves a
sample's logits as they were, and the untimed warm-up the harness runs before SingleStream."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from helpers.fakes import ShuffledRunner, synthetic_features
from helpers.tiny_model import calibration_of, perturbed_tiny_model, random_features

from packed_bert.backends import create
from packed_bert.backends.length_buckets import blank_rows, bucket_length, bucket_lengths, check_step, lengthened
from packed_bert.errors import UserError
from packed_bert.harness.benchmark import run_benchmark, warm_up
from packed_bert.harness.config import RunConfig
from packed_bert.harness.errors import RunError
from packed_bert.packing import pack_batch, sorted_batches


def test_lengths_round_up_to_the_step_and_never_past_384() -> None:
    assert [bucket_length(n, 16) for n in (1, 16, 17, 300, 383, 384)] == [16, 16, 32, 304, 384, 384]
    assert bucket_lengths(16) == list(range(16, 385, 16)) and len(bucket_lengths(16)) == 24
    assert bucket_lengths(100) == [100, 200, 300, 384]
    assert bucket_lengths(1) == list(range(1, 385))
    for bad in (0, 385):
        with pytest.raises(UserError, match="length step"):
            check_step(bad)


def test_lengthened_rows_gain_empty_tokens_only() -> None:
    batch = pack_batch(*random_features(seed=1, n=5, max_len=50))
    longer = lengthened(batch, batch.row_len + 7)
    assert longer.input_ids.shape == (batch.num_rows, batch.row_len + 7)
    for name in ("input_ids", "segment_ids", "position_ids"):
        np.testing.assert_array_equal(getattr(longer, name)[:, : batch.row_len], getattr(batch, name))
        assert not getattr(longer, name)[:, batch.row_len :].any()
    np.testing.assert_array_equal(longer.seq_lens, batch.seq_lens)
    assert lengthened(batch, batch.row_len) is batch
    blank = blank_rows(3, 40)
    assert blank.input_ids.shape == (3, 40) and (blank.seq_lens == 40).all()


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_openvino_steps_leave_a_samples_logits_bit_for_bit(precision: str) -> None:
    """Rows padded to a multiple of 16 (the default) give the bits of rows at their own length
    (attention per sequence: padding tokens are never attended to)."""
    pytest.importorskip("openvino", reason="the openvino runtime is not installed")
    tiny = perturbed_tiny_model()
    feats = random_features(seed=6, n=7, max_len=150)
    opts = {"threads": 1, "calibration": calibration_of(feats)}
    stepped = create("openvino", tiny, precision, **opts)
    exact = create("openvino", tiny, precision, length_step=1, **opts)
    assert "steps of 16" in stepped.detail and "steps of 1," in exact.detail  # type: ignore[attr-defined]
    packed = pack_batch(*feats)
    used = int(packed.seq_lens.sum(axis=1).max())  # the packed rows trimmed to their longest, as the harness does
    trimmed = dataclasses.replace(
        packed, **{n: getattr(packed, n)[:, :used] for n in ("input_ids", "segment_ids", "position_ids")}
    )
    for batch in [trimmed, *sorted_batches(*feats, batch_size=3)]:
        assert batch.row_len % 16  # these batches do get padded
        got = stepped.infer(batch)
        assert got.shape == (batch.num_rows, batch.row_len, 2)
        np.testing.assert_array_equal(got, exact.infer(batch))
    assert stepped.warm(2) == 24  # type: ignore[attr-defined]


class WarmableRunner(ShuffledRunner):
    """The fake runner, with the ``warm`` a runner that prepares per shape offers."""

    def __init__(self) -> None:
        super().__init__(seed=0, max_sleep_s=0.0)
        self.warmed: list[int] = []

    def warm(self, rows: int) -> int:
        self.warmed.append(rows)
        return 3


def test_warm_up_asks_each_runner_that_can_and_says_so() -> None:
    said: list[str] = []
    runners = [WarmableRunner(), ShuffledRunner(seed=1), WarmableRunner()]
    warm_up(runners, 1, said.append)  # type: ignore[arg-type]
    assert [r.warmed for r in runners if isinstance(r, WarmableRunner)] == [[1], [1]]
    assert len(said) == 2 and said[0].startswith("warm-up: 3 blank batches of up to 1 rows")


class OutOfMemoryRunner(WarmableRunner):
    def warm(self, rows: int) -> int:
        raise RuntimeError("CUDA out of memory.\nTried to allocate 1.50 GiB")


def test_a_warm_up_that_fails_is_one_line_naming_the_device() -> None:
    """A GPU that cannot hold the run's graphs fails before LoadGen starts, as a run error (one
    line, exit 1), not a traceback."""
    with pytest.raises(
        RunError, match=r"^device cpu \(fake\) failed while warming up: RuntimeError: CUDA out of memory\. Tried"
    ):
        warm_up([OutOfMemoryRunner()], 1024, lambda _: None)  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("scenario", "compiles", "warmed"),
    [("singlestream", False, [1]), ("offline", False, []), ("offline", True, [4096])],
)
def test_a_singlestream_run_warms_its_runner_before_loadgen(
    tmp_path: Path, scenario: str, compiles: bool, warmed: list[int]
) -> None:
    """SingleStream warms every runner that can; other scenarios only one that compiles at its
    first call (a compiled PyTorch model), with the run's batch size."""
    runner = WarmableRunner()
    runner.prepares_per_shape = compiles  # type: ignore[attr-defined]
    cfg = RunConfig(sut="null", scenario=scenario, results_dir=tmp_path, settings={"min_duration": "50"})
    result = run_benchmark(cfg, features=synthetic_features(30), runners=[runner], quiet=True)  # type: ignore[list-item]
    assert runner.warmed == warmed
    assert result.valid is not None and runner.calls > 0
