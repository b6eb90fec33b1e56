"""A run INVALID only because it ended short of min_duration says which --target-qps would have
kept it going, from what the run reached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.fakes import synthetic_features

from packed_bert.harness.benchmark import run_benchmark
from packed_bert.harness.config import RunConfig
from packed_bert.harness.summary import MIN_DURATION_NOT_MET, advice_line, advised_target
from packed_bert.results.loadgen_logs import LoadGenSummary
from packed_bert.terms import Scenario


def summary(valid: bool, reasons: list[str], **kw: object) -> LoadGenSummary:
    return LoadGenSummary(Path("x"), valid=valid, invalid_reasons=reasons, **kw)  # type: ignore[arg-type]


def target_advice(scenario: Scenario, log: LoadGenSummary) -> str | None:
    return advice_line(advised_target(scenario, log))


def test_the_advice_takes_the_rate_or_the_mean_latency_the_run_reached() -> None:
    short = [MIN_DURATION_NOT_MET]
    offline = target_advice(Scenario.OFFLINE, summary(False, short, samples_per_second=39.79))
    assert offline is not None and offline.startswith("rerun with --target-qps 50 (it ran 39.79 samples/s")
    stream = summary(False, short, fields={"Mean latency (ns)": "41000000"})
    advice = target_advice(Scenario.SINGLE_STREAM, stream)  # 1 / 41 ms x 1.25 = 30.5 -> 31
    assert advice is not None and advice.startswith("rerun with --target-qps 31 (a sample took 41 ms on average")
    assert target_advice(Scenario.OFFLINE, summary(True, [], samples_per_second=39.8)) is None
    assert target_advice(Scenario.SERVER, summary(False, short, samples_per_second=39.8)) is None
    other = ["Early stopping satisfied: NO"]
    assert target_advice(Scenario.SINGLE_STREAM, summary(False, other, fields={"Mean latency (ns)": "1"})) is None


def test_a_run_that_ended_short_prints_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the null system answers in microseconds: 110 samples at a target of 100 QPS end long before 2 s
    cfg = RunConfig(
        sut="null", target_qps=100.0, results_dir=tmp_path, sample_count=64, settings={"min_duration": "2000"}
    )
    res = run_benchmark(cfg, features=synthetic_features(64))
    assert res.valid is False and MIN_DURATION_NOT_MET in res.invalid_reasons
    advice = json.loads((res.run_dir / "summary.json").read_text())["target_advice"]
    assert advice.startswith("rerun with --target-qps ") and "samples/s" in advice
    assert float(advice.split()[3]) > 1000  # far above the 100 it was given
    assert f"  fix: {advice}" in capsys.readouterr().out
