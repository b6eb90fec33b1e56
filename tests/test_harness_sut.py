import dataclasses
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.fakes import ShuffledRunner, expected_logits, synthetic_features
from helpers.runs import decode_log as _decode
from helpers.runs import run_with_timeout as _run

from packed_bert.harness import benchmark as benchmark_mod
from packed_bert.harness.benchmark import run_benchmark
from packed_bert.harness.config import RunConfig
from packed_bert.harness.errors import RunError


@pytest.mark.parametrize("batching", ["packed", "sorted", "padded"])
def test_out_of_order_completions_land_on_their_query(tmp_path: Path, batching: str) -> None:
    feats = synthetic_features(300, seed=1)
    runners = [ShuffledRunner(seed=d, max_sleep_s=0.03) for d in range(3)]
    cfg = RunConfig(
        sut="null",
        mode="accuracy",
        results_dir=tmp_path,
        batch_size=7,
        sample_count=150,
        batching=batching,  # type: ignore[arg-type]
        inflight_per_device=2,
    )
    res = _run(cfg, features=feats, runners=runners)
    assert sum(r.calls for r in runners) >= 150 // 7  # every device took part
    got = _decode(res.run_dir / "mlperf_log_accuracy.json")
    assert sorted(got) == list(range(150))
    assert "not scored" in (res.run_dir / "accuracy.txt").read_text()  # synthetic features: no SQuAD text
    for idx, payloads in got.items():
        want = expected_logits(feats, idx)
        for data in payloads:
            assert data.shape == want.shape
            np.testing.assert_allclose(data, want, rtol=0, atol=1e-6)
    assert res.summary["batching"] == batching and res.summary["mode"] == "accuracy"


def test_a_failing_worker_fails_the_run_without_hanging(tmp_path: Path) -> None:
    earlier = tmp_path / "20200101-000000-null-bert-99-offline-performance"
    earlier.mkdir()
    (earlier / "summary.json").write_text("{}")
    feats = synthetic_features(100)
    runners = [ShuffledRunner(seed=0, max_sleep_s=0.005, fail_on_call=3), ShuffledRunner(seed=1)]
    cfg = RunConfig(sut="null", results_dir=tmp_path, batch_size=5, target_qps=500.0, settings={"min_duration": "200"})
    with pytest.raises(RunError, match=r"device 0 .*simulated device fault") as info:
        _run(cfg, timeout=60.0, features=feats, runners=runners)
    assert "\n" not in str(info.value) and info.value.exit_code == 1
    incomplete = [p for p in tmp_path.iterdir() if p.name.endswith(".incomplete")]
    assert len(incomplete) == 1 and "simulated device fault" in (incomplete[0] / "INCOMPLETE.txt").read_text()
    assert (earlier / "summary.json").read_text() == "{}"


def test_null_performance_run_writes_everything(tmp_path: Path) -> None:
    feats = synthetic_features(300)
    cfg = RunConfig(sut="null", results_dir=tmp_path, target_qps=20000.0, sdk="1.5.9", settings={"min_duration": "500"})
    res = _run(cfg, features=feats)
    assert res.samples_per_second and res.samples_per_second > 1000
    # the null SUT answers 10,000 samples far sooner than 500 ms: LoadGen says INVALID, and why
    assert res.valid is False
    assert "Min duration satisfied: NO" in res.invalid_reasons
    assert any("expected QPS" in r for r in res.loadgen_recommendations)
    assert all("satisfied: NO" in r for r in res.invalid_reasons)
    for name in (
        "mlperf_log_summary.txt",
        "mlperf_log_detail.txt",
        "mlperf_log_accuracy.json",
        "user.conf",
        "settings.json",
        "system.json",
        "command.txt",
        "summary.json",
        "report.md",
        "packing.png",
    ):
        assert (res.run_dir / name).is_file(), name
    system = json.loads((res.run_dir / "system.json").read_text())
    assert system["sdk"] == "1.5.9" and system["simulated"] is False and "host_info" in system
    settings = json.loads((res.run_dir / "settings.json").read_text())
    assert settings["min_duration_ms"] == 500 and settings["offline_expected_qps"] == 20000.0
    assert "bert.Offline.target_qps = 20000" in (res.run_dir / "user.conf").read_text()
    summary = json.loads((res.run_dir / "summary.json").read_text())
    assert summary["run_dir"] == str(res.run_dir) and summary["valid"] is False
    assert 0.9 < summary["token_efficiency"] <= 1.0


@pytest.mark.parametrize("scenario", ["Server", "SingleStream"])
def test_server_and_singlestream_runs(tmp_path: Path, scenario: str) -> None:
    feats = synthetic_features(100)
    cfg = RunConfig(
        sut="null",
        scenario=scenario,
        results_dir=tmp_path,  # type: ignore[arg-type]
        target_qps=400.0,
        batch_size=8,
        settings={"min_duration": "500"},
    )
    res = _run(cfg, features=feats)
    assert res.valid is not None
    if scenario == "Server":
        assert res.samples_per_second and res.samples_per_second > 100
        # 500 ms is too short for LoadGen's early stopping: INVALID, with the reason given,
        # while the latency bound itself holds
        assert res.summary["latency_p99_ms"] < 130.0
        assert res.summary["performance_constraints_satisfied"] is True
        if res.valid is False:
            assert "Early stopping satisfied: NO" in res.invalid_reasons
    else:
        assert res.latency_p90_ms is not None and res.latency_p90_ms < 50
        lens = np.asarray(feats.lengths)
        tokens = res.summary["sample_tokens"]
        assert lens.min() <= tokens["p50"] <= tokens["p90"] <= tokens["max"] <= lens.max()
        assert (res.run_dir / "latency_by_length.png").is_file()
        assert f"p90 {tokens['p90']}, longest {tokens['max']}" in (res.run_dir / "report.md").read_text()


def test_run_stats_keep_each_samples_length_in_its_querys_order() -> None:
    """A packed batch holds its item's samples in another order; the lengths follow the item's, as
    its latencies do."""
    from packed_bert.harness.sut import RunStats
    from packed_bert.harness.workers import WorkItem

    batch = dataclasses.make_dataclass("Batch", ["sample_index", "seq_lens", "input_ids"])(
        sample_index=np.array([[2, 0, -1], [1, -1, -1]]),
        seq_lens=np.array([[50, 70, 0], [90, 0, 0]]),
        input_ids=np.zeros((2, 384), np.int32),
    )
    item = WorkItem(ids=np.arange(3, dtype=np.uint64), indices=np.arange(3), arrival=np.array([0.0, 1.0, 2.0]))
    stats = RunStats()
    stats.record(item, batch, device=0, busy=0.1, done=3.0)
    assert stats.sample_tokens[0].tolist() == [70, 90, 50]
    assert stats.latencies[0].tolist() == [3.0, 2.0, 1.0]
    assert stats.summary()["sample_tokens"] == {
        "p50": 70,
        "p90": 90,
        "max": 90,
        "total": 210,
        "sum_of_squares": 70 * 70 + 90 * 90 + 50 * 50,
    }


def test_interrupt_marks_the_run_incomplete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*_a: Any, **_k: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(benchmark_mod, "run_loadgen", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(RunConfig(sut="null", results_dir=tmp_path), features=synthetic_features(20), quiet=True)
    (only,) = list(tmp_path.iterdir())
    assert only.name.endswith(".incomplete") and "interrupted" in (only / "INCOMPLETE.txt").read_text()


def test_demo_consistency_check_compares_packed_with_alone() -> None:
    from packed_bert.harness.qsl import SampleLibrary
    from packed_bert.workflows.demo import consistency_and_gain

    lib = SampleLibrary.from_features(synthetic_features(60))
    check = consistency_and_gain(lib, ShuffledRunner(seed=0, max_sleep_s=0.0), n=6)
    assert check["samples"] == 6 and check["rows_packed"] < 6
    assert check["consistent"] and check["max_abs_diff"] < 1e-6
    assert check["computes_padding"]  # a runner that does not say otherwise computes its padding

    class Leaky(ShuffledRunner):  # logits that depend on the row's other sequences
        def infer(self, batch: Any) -> np.ndarray:
            out = super().infer(batch)
            return out + np.asarray(batch.seq_lens).sum(axis=1)[:, None, None] * 1e-2

    assert not consistency_and_gain(lib, Leaky(seed=0, max_sleep_s=0.0), n=6)["consistent"]


def test_the_demo_times_each_batch_by_its_fastest_call() -> None:
    """One call slowed by the shared host must not size the demo's run: its target QPS comes from
    the packed batch's rate, and a run faster than 1.1x the target ends before min_duration."""
    import time

    from packed_bert.harness.qsl import SampleLibrary
    from packed_bert.workflows.demo import consistency_and_gain

    class OnceSlow(ShuffledRunner):
        seen: list[int] = []

        def infer(self, batch: Any) -> np.ndarray:
            if self.seen == [id(batch)]:  # the packed batch's first timed call (its first warms up)
                time.sleep(0.3)
            self.seen.append(id(batch))
            return super().infer(batch)

    lib = SampleLibrary.from_features(synthetic_features(60))
    check = consistency_and_gain(lib, OnceSlow(seed=0, max_sleep_s=0.0), n=6)
    assert check["packed_samples_per_s"] > 6 / 0.3 * 2


def test_audit_config_and_test_settings_reach_loadgen(tmp_path: Path) -> None:
    audit = tmp_path / "staging" / "audit.config"
    audit.parent.mkdir()
    audit.write_text(
        "*.*.mode = 2\n*.*.accuracy_log_rng_seed = 720381539243781796\n*.*.accuracy_log_sampling_target = 64\n"
    )
    cfg = RunConfig(
        sut="null",
        results_dir=tmp_path / "res",
        target_qps=2000.0,
        settings={"min_duration": "200"},
        audit_test="TEST01",
        audit_config=audit,
        loadgen_settings={"test05_qsl_rng_seed": 12345},
    )
    res = _run(cfg, features=synthetic_features(50))
    assert (res.run_dir / "audit.config").read_text() == audit.read_text()
    detail = (res.run_dir / "mlperf_log_detail.txt").read_text()
    assert '"effective_accuracy_log_rng_seed", "value": 720381539243781796' in detail
    assert json.loads((res.run_dir / "settings.json").read_text())["test05_qsl_rng_seed"] == 12345
    assert res.summary["compliance_test"] == "TEST01"
    # without an audit config none is placed, so compliance can tell the runs apart
    plain = _run(
        dataclasses.replace(cfg, audit_test=None, audit_config=None, loadgen_settings={}),
        features=synthetic_features(50),
    )
    assert not (plain.run_dir / "audit.config").exists()


def test_demo_target_leaves_headroom_over_the_probe() -> None:
    """LoadGen issues target x min_duration x 1.1 samples: a full run 1.3x faster than the
    probe (seen: 2.94 -> 3.8 samples/s) must still outlast min_duration."""
    from packed_bert.workflows.demo import demo_target_qps

    probe, run = 2.94, 3.8
    assert demo_target_qps(probe) * 1.1 > run
    assert demo_target_qps(0.0) == 0.05


def test_singlestream_probe_reads_through_a_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few samples slowed 100x while the probe runs (another job holding the cores) must not
    set an expected latency so high that LoadGen's queries end before min_duration."""
    from helpers.fakes import synthetic_features

    import packed_bert.harness.probe as probe
    from packed_bert.harness.plan import plan_run
    from packed_bert.harness.qsl import SampleLibrary

    clock = [0.0]
    monkeypatch.setattr(probe.time, "perf_counter", lambda: clock[0])

    class Runner:
        static_shape = False
        calls = 0

        def infer(self, batch: object) -> None:
            self.calls += 1
            clock[0] += 0.4 if 2 <= self.calls < 12 else 0.004  # a 4 s stall over five samples

    plan = plan_run(RunConfig(sut="cpu", scenario="SingleStream", weights="tiny"))
    library = SampleLibrary.from_features(synthetic_features(200))
    rate = probe.probe_samples_per_s(plan, library, [Runner()])
    assert rate == pytest.approx(250.0)  # the median sample's 4 ms
    assert probe.target_from_probe(plan, rate) == pytest.approx(375.0)


class ThreadRecordingRunner(ShuffledRunner):
    """Records the thread of every ``infer`` call."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed=seed, max_sleep_s=0.0)
        self.threads: set[int] = set()

    def infer(self, batch: object) -> np.ndarray:
        self.threads.add(threading.get_ident())
        return super().infer(batch)


@pytest.mark.parametrize(("scenario", "devices"), [("singlestream", 1), ("offline", 1), ("offline", 2)])
def test_a_single_device_runs_on_the_runs_own_thread(tmp_path: Path, scenario: str, devices: int) -> None:
    """One device with one thread (the cpu system's) is served by the thread that runs the
    benchmark (the run's main thread, whose OpenMP pool the model was built with: a second pool
    made libgomp stop spinning and a PyTorch sample 1.45x slower); several devices keep a thread
    each."""
    runners = [ThreadRecordingRunner(seed=d) for d in range(devices)]
    cfg = RunConfig(
        sut="null", scenario=scenario, results_dir=tmp_path, settings={"min_duration": "50"}, inflight_per_device=1
    )
    result = run_benchmark(cfg, features=synthetic_features(40), runners=runners, quiet=True)  # type: ignore[arg-type]
    assert result.valid is not None and all(r.calls for r in runners)
    used = set().union(*(r.threads for r in runners))
    assert (used == {threading.get_ident()}) == (devices == 1)


def _one_sample_rows(n: int) -> Any:
    """A stand-in sorted batch of ``n`` samples, one a row."""
    return dataclasses.make_dataclass("Batch", ["sample_index", "seq_lens", "input_ids"])(
        sample_index=np.arange(n)[:, None],
        seq_lens=np.full((n, 1), 100),
        input_ids=np.zeros((n, 128), np.int32),
    )


@pytest.mark.parametrize(("sizes", "plotted"), [((1, 2, 4, 4), True), ((4, 4, 4), False)])
def test_report_plots_throughput_against_batch_size_where_sizes_differ(
    tmp_path: Path, sizes: tuple[int, ...], plotted: bool
) -> None:
    from packed_bert.harness.report import _plots
    from packed_bert.harness.sut import RunStats
    from packed_bert.harness.workers import WorkItem
    from packed_bert.terms import Scenario

    stats = RunStats()
    for i, n in enumerate(sizes):
        item = WorkItem(ids=np.arange(n, dtype=np.uint64), indices=np.arange(n), arrival=np.zeros(n))
        stats.record(item, _one_sample_rows(n), device=0, busy=0.01 * (1 + n), done=float(i + 1))
    titles = [title for title, _ in _plots(tmp_path, stats, Scenario.SERVER, simulated=False)]
    assert ("Throughput against batch size" in titles) is plotted
    assert (tmp_path / "batch_throughput.png").is_file() is plotted


def test_a_server_accuracy_run_on_other_weights_takes_its_target_from_a_probe() -> None:
    """LoadGen issues a Server accuracy run's queries at the target QPS, so a system file's rate
    for BERT-Large (the cpu system's 6 QPS on amx) would hold a fast model's 10,833 samples for
    half an hour: such a run probes as a performance run does. Offline and SingleStream accuracy
    runs do not (their pace is the device's), nor runs given --target-qps or simulated."""
    from packed_bert.harness.plan import plan_run
    from packed_bert.harness.probe import probe_reason

    def reason(**kw: Any) -> str | None:
        return probe_reason(plan_run(RunConfig(weights="tiny", mode="accuracy", **kw)))

    assert reason(sut="cpu", scenario="Server") is not None
    assert reason(sut="cpu", scenario="Offline") is None
    assert reason(sut="cpu", scenario="SingleStream") is None
    assert reason(sut="cpu", scenario="Server", target_qps=50.0) is None
    assert reason(sut="r282_z93_q1", scenario="Server") is None
