import dataclasses
import json
from pathlib import Path

import pytest
from helpers.stub_launcher import StubLauncher, stub_scorer

from packed_bert.compliance import rules
from packed_bert.compliance.verify import compare_performance
from packed_bert.errors import UserError
from packed_bert.harness.config import RunConfig
from packed_bert.results.loadgen_logs import read_detail
from packed_bert.rounds import get_round
from packed_bert.workflows.compliance import run_compliance


def cfg(tmp_path: Path, tests: tuple[str, ...], rnd: str | None = None, model: str = "bert-99") -> RunConfig:
    return RunConfig(
        sut="null", model=model, mode="compliance", results_dir=tmp_path, compliance_tests=tests, round=rnd
    )  # type: ignore[arg-type]


def test_rounds_and_test_names() -> None:
    assert get_round(None).name == "v6.0"
    assert get_round("4.1").tests == ("TEST01", "TEST05")
    assert rules.parse_tests("TEST05,TEST01") == ("TEST01", "TEST05")
    assert rules.parse_tests(",=TEST05,TEST01") == ("TEST01", "TEST05")  # the old --compliance,= spelling
    with pytest.raises(UserError, match="unknown compliance test 'TEST04'"):
        rules.parse_tests("TEST01,TEST04")
    with pytest.raises(UserError, match="unknown MLPerf round"):
        get_round("v3.9")
    with pytest.raises(UserError) as err:
        rules.check_tests_in_round(("TEST05",), get_round("v5.0"))
    assert "TEST05 is not part of MLPerf Inference v5.0" in str(err.value) and "\n" not in str(err.value)


def test_audit_config_contents() -> None:
    t01 = rules.audit_config_text("TEST01", get_round("v6.0"))
    assert "*.*.mode = 2\n" in t01
    assert "*.*.accuracy_log_rng_seed = 720381539243781796\n" in t01
    assert "*.*.accuracy_log_sampling_target = 4096\n" in t01
    t05 = rules.audit_config_text("TEST05", get_round("v4.1"))
    # v4.1's own TEST05 seeds (its mlperf.conf), not the later rounds' 7975553102935885558...
    for line in (
        "*.*.test05 = 1",
        "*.*.test05_qsl_rng_seed = 16799458546791641818",
        "*.*.test05_sample_index_rng_seed = 5453809927556429288",
        "*.*.test05_schedule_rng_seed = 5435552105434836064",
    ):
        assert line + "\n" in t05
    assert "test05_qsl_rng_seed = 2376919268182438552" in rules.audit_config_text("TEST05", get_round("v4.0"))


def write_summary(path: Path, scenario: str, score: float, valid: bool = True) -> Path:
    key = {"Offline": "Samples per second", "SingleStream": "Early stopping 90th percentile estimate"}[scenario]
    path.write_text(
        f"Scenario : {scenario}\nMode     : PerformanceOnly\n{key}: {score}\nResult is : {'VALID' if valid else 'INVALID'}\n"
    )
    return path


@pytest.mark.parametrize(
    ("test", "scenario", "ref", "new", "ok"),
    [
        ("TEST01", "Offline", 100, 109, True),
        ("TEST01", "Offline", 100, 111, False),  # two-sided
        ("TEST01", "Offline", 100, 89, False),
        ("TEST05", "Offline", 100, 96, True),
        ("TEST05", "Offline", 100, 94, False),
        ("TEST05", "Offline", 100, 150, True),  # one-sided for throughput
        ("TEST05", "SingleStream", 1e6, 1.04e6, True),  # latency: no more than 5% above
        ("TEST05", "SingleStream", 1e6, 1.06e6, False),
        ("TEST01", "SingleStream", 1.5e5, 1.25e5, True),  # <= 200 us: 20%
    ],
)
def test_performance_thresholds(tmp_path: Path, test: str, scenario: str, ref: float, new: float, ok: bool) -> None:
    check = compare_performance(
        write_summary(tmp_path / "r.txt", scenario, ref), write_summary(tmp_path / "t.txt", scenario, new), test
    )
    assert check.passed is ok
    assert check.lines[-1].startswith("TEST PASS" if ok else "TEST FAIL")


def test_invalid_audit_run_fails(tmp_path: Path) -> None:
    check = compare_performance(
        write_summary(tmp_path / "r.txt", "Offline", 100),
        write_summary(tmp_path / "t.txt", "Offline", 100, False),
        "TEST05",
    )
    assert not check.passed and check.lines[-1] == "TEST FAIL: Test results are invalid"


def test_test01_and_test05_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runner = StubLauncher()
    assert run_compliance(cfg(tmp_path, ("TEST01", "TEST05"), "v4.1"), launch=runner, scorer=stub_scorer) == 0
    # accuracy and performance runs first (none existed), then one audit run per test
    assert [m for m, _ in runner.calls] == ["accuracy", "performance", "performance", "performance"]
    out = next(tmp_path.glob("*-compliance"))
    t01, t05 = out / "TEST01", out / "TEST05"
    assert "TEST PASS" in (t01 / "verify_accuracy.txt").read_text()
    assert "num_perf_log_data_mismatch = 0" in (t01 / "verify_accuracy.txt").read_text()
    assert (t01 / "verify_performance.txt").read_text().rstrip().endswith("TEST PASS")
    assert (t01 / "accuracy" / "mlperf_log_accuracy.json").is_file()
    assert {p.name for p in (t01 / "performance" / "run_1").iterdir()} == {
        "mlperf_log_summary.txt",
        "mlperf_log_detail.txt",
    }
    assert (t05 / "verify_performance.txt").read_text().rstrip().endswith("TEST PASS")
    assert not (t05 / "verify_accuracy.txt").exists()
    detail = read_detail(t05 / "performance" / "run_1" / "mlperf_log_detail.txt")
    assert detail["effective_qsl_rng_seed"][-1] == 16799458546791641818  # v4.1's TEST05 seed
    # each audit run holds its own audit.config
    audits = [p for _, p in runner.calls if p is not None]
    assert len(audits) == 2
    audit_runs = json.loads((out / "summary.json").read_text())["tests"]
    assert "*.*.test05 = 1" in (Path(audit_runs["TEST05"]["audit_run"]) / "audit.config").read_text()
    printed = capsys.readouterr().out
    assert "TEST01 accuracy: TEST PASS" in printed and "TEST05 performance: TEST PASS" in printed
    # a second compliance run reuses the accuracy and performance runs
    runner.calls.clear()
    assert run_compliance(cfg(tmp_path, ("TEST01",), "v4.1"), launch=runner, scorer=stub_scorer) == 0
    assert [m for m, _ in runner.calls] == ["performance"]


@pytest.mark.parametrize(("model", "change", "code"), [("bert-99", 0.003, 0), ("bert-99.9", 0.3, 1)])
def test_test01_fallback_scores_the_subset(tmp_path: Path, model: str, change: float, code: int) -> None:
    runner = StubLauncher(perturb={i: change for i in range(0, 64, 2)})
    assert run_compliance(cfg(tmp_path, ("TEST01",), model=model), launch=runner, scorer=stub_scorer) == code
    acc = next(tmp_path.glob("*-compliance")) / "TEST01" / "accuracy"
    assert "TEST FAIL" in (acc.parent / "verify_accuracy.txt").read_text()
    baseline = json.loads((acc / "baseline_accuracy.txt").read_text().splitlines()[-1])
    compliance = json.loads((acc / "compliance_accuracy.txt").read_text().splitlines()[-1])
    assert baseline["f1"] == pytest.approx(90.0)
    assert compliance["f1"] > baseline["f1"]
    delta = abs(1 - baseline["f1"] / compliance["f1"]) * 100
    assert (delta <= {"bert-99": 1.0, "bert-99.9": 0.1}[model]) is (code == 0)


def test_audit_config_not_applied_is_caught(tmp_path: Path) -> None:
    assert run_compliance(cfg(tmp_path, ("TEST01",)), launch=StubLauncher(ignore_audit=True), scorer=stub_scorer) == 1
    text = (next(tmp_path.glob("*-compliance")) / "TEST01" / "verify_performance.txt").read_text()
    assert "did not take TEST01's settings" in text


def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="TEST05 is not part of MLPerf Inference v6.0"):
        run_compliance(cfg(tmp_path, ("TEST05",)), launch=StubLauncher())
    with pytest.raises(UserError, match="unknown compliance test"):
        run_compliance(cfg(tmp_path, ("TEST99",)), launch=StubLauncher())
    assert not list(tmp_path.iterdir())  # nothing ran


def test_reference_runs_over_other_samples_are_not_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # TEST01 compares by qsl_idx: an accuracy run over fewer samples would not cover the audit run
    runner = StubLauncher()
    runner(RunConfig(sut="null", mode="accuracy", results_dir=tmp_path, sample_count=10))
    assert run_compliance(cfg(tmp_path, ("TEST01",)), launch=runner, scorer=stub_scorer) == 0
    out = capsys.readouterr().out
    assert "not using the accuracy run" in out and "(it covered --count 10 samples, this run --count all" in out
    assert [mode for mode, _ in runner.calls] == ["accuracy", "accuracy", "performance", "performance"]
    assert runner.calls[1][0] == "accuracy" and runner.calls[1][1] is None


def test_given_reference_runs_are_checked_before_any_work(tmp_path: Path) -> None:
    """--accuracy-dir must be an accuracy run of this system, model, precision and weights,
    over the samples the audit run can log; otherwise one line, and nothing runs."""
    runner = StubLauncher()
    perf = runner(RunConfig(sut="null", results_dir=tmp_path))
    small = runner(RunConfig(sut="null", mode="accuracy", results_dir=tmp_path, sample_count=20))
    other = runner(RunConfig(sut="r282_z93_q1", mode="accuracy", results_dir=tmp_path))
    runner.calls.clear()
    for given, needle in (
        (perf, "a run of mode performance, this compliance run needs accuracy"),
        (small, "covered --count 20 samples, this run --count all"),
        (other, "a run of system r282_z93_q1, this compliance run needs null"),
    ):
        run_cfg = dataclasses.replace(cfg(tmp_path, ("TEST01",)), accuracy_dir=given)
        with pytest.raises(UserError, match="--accuracy-dir") as err:
            run_compliance(run_cfg, launch=runner, scorer=stub_scorer)
        assert needle in str(err.value) and "\n" not in str(err.value)
    assert runner.calls == []  # refused before any run
    assert not list(tmp_path.glob("*-compliance*"))
