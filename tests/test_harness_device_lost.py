"""The device pool when a device is lost (``DeviceLost``): its batches go to the others, no
sample is lost or answered twice, and with no device left the run fails in one line."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.fakes import ShuffledRunner, expected_logits, synthetic_features
from helpers.runs import decode_log as _decode
from helpers.runs import run_with_timeout as _run

from packed_bert.backends.base import DeviceLost
from packed_bert.harness.config import RunConfig
from packed_bert.harness.errors import RunError
from packed_bert.harness.sut import BenchmarkSUT
from packed_bert.harness.workers import DevicePool, NoDevicesLeft, WorkItem


class LosingRunner(ShuffledRunner):
    """Gone for good from its ``lose_on_call``-th batch on."""

    def __init__(self, seed: int, lose_on_call: int, pipelined: bool = False) -> None:
        super().__init__(seed, max_sleep_s=0.01)
        self.lose_on_call = lose_on_call
        self.pipelined = pipelined
        self.device = f"fake:{seed}"

    def infer(self, batch: object) -> np.ndarray:
        with self.lock:
            self.calls += 1
            call = self.calls
        if call >= self.lose_on_call:
            raise DeviceLost(f"fake device {self.device} went away")
        return super().infer(batch)


@pytest.mark.parametrize("pipelined", [False, True])
def test_a_lost_device_loses_no_sample_and_answers_none_twice(
    tmp_path: Path,
    suts: list[BenchmarkSUT],
    pipelined: bool,
) -> None:
    feats = synthetic_features(300, seed=2)
    lost = LosingRunner(seed=0, lose_on_call=2, pipelined=pipelined)
    runners = [lost, ShuffledRunner(seed=1, max_sleep_s=0.01), ShuffledRunner(seed=2, max_sleep_s=0.01)]
    cfg = RunConfig(
        sut="null", mode="accuracy", results_dir=tmp_path, batch_size=9, sample_count=200, inflight_per_device=2
    )
    res = _run(cfg, features=feats, runners=runners)
    got = _decode(res.run_dir / "mlperf_log_accuracy.json")
    assert sorted(got) == list(range(200))
    for idx, payloads in got.items():
        assert len(payloads) == 1, f"sample {idx} answered {len(payloads)} times"
        np.testing.assert_allclose(payloads[0], expected_logits(feats, idx), rtol=0, atol=1e-6)
    (pool,) = [s.pool for s in suts]
    assert pool.error is None
    (gone,) = pool.lost
    assert gone.device == 0 and "went away" in gone.reason and gone.runner == "fake fake:0"
    assert gone.resent >= 1 and lost.calls >= 2  # it did take a batch, which the others ran
    assert sum(r.calls for r in runners[1:]) > 0
    line = pool.lost_line()
    assert line is not None and line.startswith("1 of 3 devices lost during the run: device 0 (fake fake:0): ")
    assert "re-sent" in line and "\n" not in line


def test_no_device_left_fails_the_run_in_one_line_without_hanging(
    tmp_path: Path,
    suts: list[BenchmarkSUT],
) -> None:
    runners = [LosingRunner(seed=0, lose_on_call=2), LosingRunner(seed=1, lose_on_call=3)]
    cfg = RunConfig(sut="null", results_dir=tmp_path, batch_size=5, target_qps=500.0, settings={"min_duration": "300"})
    with pytest.raises(RunError, match="all 2 devices were lost") as info:
        _run(cfg, timeout=60.0, features=synthetic_features(100), runners=runners)
    assert "\n" not in str(info.value) and info.value.exit_code == 1
    assert "device 0 (fake fake:0): fake device fake:0 went away" in str(info.value)
    (pool,) = [s.pool for s in suts]
    assert isinstance(pool.error, NoDevicesLeft) and sorted(d.device for d in pool.lost) == [0, 1]
    assert [p for p in tmp_path.iterdir() if p.name.endswith(".incomplete")]


def test_both_batches_in_flight_on_a_lost_pipelined_device_go_to_the_other() -> None:
    """A pipelined device holds two batches when it dies: the other device runs both, and
    each sample is answered once."""
    both_in = threading.Barrier(2, timeout=10)
    resent = threading.Event()

    class Dies:
        name, device, pipelined = "dies", "d:0", True

        def infer(self, batch: Any) -> np.ndarray:
            both_in.wait()  # two batches are in flight here at once
            raise DeviceLost("link down")

    class Works:
        name, device = "works", "d:1"

        def infer(self, batch: Any) -> np.ndarray:
            assert resent.wait(10)  # holds at most one item until both came back
            return np.zeros((1, 1, 2), np.float32)

    answered: list[int] = []
    empty: list[int] = []
    pool = DevicePool(
        [Dies(), Works()],
        build=lambda item: item,
        respond=lambda item, batch, logits, dev, busy: answered.append(int(item.ids[0])),
        respond_empty=lambda item: empty.append(int(item.ids[0])),
        inflight=[2, 1],
    )
    for i in range(4):
        pool.submit(WorkItem(np.array([i], np.uint64), np.array([i]), np.zeros(1)))
    pool.start()
    for _ in range(1000):
        if pool.lost and pool.lost[0].resent == 2:
            break
        threading.Event().wait(0.01)
    resent.set()
    assert pool.wait_idle(timeout=20)
    pool.stop()
    assert sorted(answered) == [0, 1, 2, 3] and not empty and pool.error is None
    (gone,) = pool.lost
    assert (gone.device, gone.resent, gone.reason) == (0, 2, "link down")
