import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.fakes import synthetic_features

from packed_bert.backends.base import BatchLike, batch_shape
from packed_bert.backends.null import NullRunner
from packed_bert.errors import UserError
from packed_bert.harness.config import RunConfig
from packed_bert.harness.plan import plan_run
from packed_bert.workflows.find_peak import QpsSearch, find_peak


def test_find_peak_searches_server_qps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = RunConfig(
        sut="null",
        scenario="Server",
        results_dir=tmp_path,
        target_qps=200.0,
        find_peak=True,
        settings={"min_duration": "300"},
    )
    res = find_peak(cfg, features=synthetic_features(50), max_trials=3)
    peak = res.summary["find_peak"]
    assert [t["target_qps"] for t in peak["trials"]] == [200.0, 250.0, 312.5]  # all meet 130 ms
    assert res.summary["peak_qps"] == 312.5
    (search,) = [p for p in tmp_path.iterdir() if p.name.endswith("find-peak")]
    assert (search / "peak.json").is_file()
    assert len([p for p in search.iterdir() if p.is_dir()]) == 3  # one run directory per trial
    assert "highest VALID Server QPS 312.5 " in capsys.readouterr().out


class TimedRunner(NullRunner):
    """Zeros after 2 ms a row: a device that answers about 500 samples a second."""

    def infer(self, batch: BatchLike) -> np.ndarray:
        time.sleep(0.002 * batch_shape(batch)[0])
        return super().infer(batch)


def test_find_peak_on_real_devices_starts_from_half_a_probes_rate(tmp_path: Path) -> None:
    """Without --target-qps a search on real devices starts from a probe of them, not from the
    system file's Server target (BERT-Large's, 0.5 to 6 QPS on the cpu system: eight 25% steps
    climb 4.8x at most); with it, from the user's."""
    cfg = RunConfig(
        sut="cpu", scenario="Server", results_dir=tmp_path, find_peak=True, settings={"min_duration": "300"}
    )
    assert plan_run(cfg).target_qps <= 10
    peak = find_peak(cfg, features=synthetic_features(50), runners=[TimedRunner()], max_trials=1).summary["find_peak"]
    assert peak["start_from"].startswith("a probe: ")
    rate = float(peak["start_from"].split()[2].replace(",", ""))
    assert 100 < rate < 600 and peak["start_qps"] == pytest.approx(rate / 2, rel=0.01)
    assert [t["target_qps"] for t in peak["trials"]] == [peak["start_qps"]]
    given = dataclasses.replace(cfg, target_qps=40.0, results_dir=tmp_path / "given")
    peak = find_peak(given, features=synthetic_features(50), runners=[TimedRunner()], max_trials=1).summary["find_peak"]
    assert peak["start_qps"] == 40.0 and peak["start_from"] == "--target-qps"


def test_find_peak_needs_server() -> None:
    with pytest.raises(UserError, match="scenario server"):
        find_peak(RunConfig(sut="null", find_peak=True), features=synthetic_features(10))


def test_qps_search_steps_up_down_then_bisects() -> None:
    search = QpsSearch(100.0, max_trials=8, rel_tol=0.05)
    capacity = 140.0
    tried = []
    while search.next_qps is not None:
        tried.append(search.next_qps)
        search.record(search.next_qps <= capacity)
    assert tried[:3] == [100.0, 125.0, 156.25]  # x1.25 while passing
    assert tried[3] == (125.0 + 156.25) / 2  # then bisect between best pass and lowest fail
    assert search.peak is not None and capacity * 0.95 <= search.peak <= capacity
    assert search.lowest_failing is not None and (search.lowest_failing - search.peak) / search.lowest_failing <= 0.05
    down = QpsSearch(90.0, max_trials=2)
    down.record(False)
    assert down.next_qps == 60.0  # divide by 1.5 until one passes
    down.record(False)
    assert down.next_qps is None and down.peak is None and down.lowest_failing == 60.0
    with pytest.raises(RuntimeError):
        down.record(True)
