import json
import shutil
import sys
from pathlib import Path

import pytest
from helpers.power import FAKE_CLIENT, STUB_PERF
from helpers.stub_launcher import StubLauncher, stub_scorer

from packed_bert import cli
from packed_bert.harness.config import RunConfig
from packed_bert.power import client
from packed_bert.submission.check import check_tree
from packed_bert.submission.truncate import MAX_LOG_SIZE, recorded_hash, sha256
from packed_bert.workflows.compliance import run_compliance
from packed_bert.workflows.power import run_power


def make_results(tmp_path: Path, rnd: str, power_server: str | None = None, big_log: bool = True) -> Path:
    res = tmp_path / "results"
    runner = StubLauncher()
    tests = ("TEST01", "TEST05") if rnd in ("v4.0", "v4.1") else ("TEST01",)
    assert run_compliance(RunConfig(sut="null", results_dir=res, compliance_tests=tests, round=rnd), launch=runner, scorer=stub_scorer) == 0
    acc = next(p for p in res.iterdir() if p.name.endswith("-accuracy"))
    if big_log:  # stand in for a real 10,833-sample log so truncation happens
        entries = json.loads((acc / "mlperf_log_accuracy.json").read_text())
        (acc / "mlperf_log_accuracy.json").write_text(json.dumps(entries * 20, indent=0))
    if power_server:
        assert run_power(RunConfig(sut="null", results_dir=res, power_server=power_server), perf_command=STUB_PERF) == 0
    return res


def test_v41_tree_with_power_end_to_end(tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(client.ENV_CLIENT, str(FAKE_CLIENT))
    res = make_results(tmp_path, "v4.1", power_server=server)
    original = sha256(next(res.glob("*-accuracy")) / "mlperf_log_accuracy.json")
    code = cli.main(["submission", "--results", str(res), "--out", str(tmp_path / "sub"), "--submitter", "Acme", "--division", "closed", "--round", "v4.1", "--check"])
    out = capsys.readouterr().out
    assert code == 0, out
    root = tmp_path / "sub" / "closed" / "Acme"
    r = root / "results" / "null" / "bert-99" / "Offline"
    acc_log = r / "accuracy" / "mlperf_log_accuracy.json"
    assert acc_log.stat().st_size < MAX_LOG_SIZE and b"\n\n...\n\n" in acc_log.read_bytes()
    assert recorded_hash(r / "accuracy" / "accuracy.txt") == original
    for f in ("run_1/mlperf_log_summary.txt", "run_1/mlperf_log_detail.txt", "run_1/spl.txt", "ranging/spl.txt", "power/client.json"):
        assert (r / "performance" / f).is_file(), f
    m = root / "measurements" / "null" / "bert-99" / "Offline"
    assert {p.name for p in m.iterdir()} == {"user.conf", "README.md", "null_packed-bert_Offline.json"}
    assert set(json.loads((m / "null_packed-bert_Offline.json").read_text())) >= {"input_data_types", "retraining", "starting_weights_filename", "weight_data_types", "weight_transformations"}
    impl = json.loads((m / "null_packed-bert_Offline.json").read_text())
    assert (impl["weight_data_types"], impl["starting_weights_filename"]) == ("int8", "tiny")  # settings.json "harness"
    c = root / "compliance" / "null" / "bert-99" / "Offline"
    assert (c / "TEST01" / "verify_accuracy.txt").is_file() and (c / "TEST05" / "verify_performance.txt").is_file()
    assert recorded_hash(c / "TEST01" / "accuracy" / "accuracy.txt")
    desc = json.loads((root / "systems" / "null.json").read_text())
    assert desc["submitter"] == "Acme" and desc["division"] == "closed" and desc["system_name"] == "null (simulated)"
    assert (desc["accelerator_model_name"], desc["accelerators_per_node"], desc["host_processor_model_name"]) == ("stub", 1, "stub host")
    assert "check: submission looks OK" in out


def test_v60_layout_moves_compliance_and_measurements_under_results(tmp_path: Path) -> None:
    res = make_results(tmp_path, "v6.0", big_log=False)
    assert cli.main(["submission", "--results", str(res), "--out", str(tmp_path / "sub"), "--submitter", "Acme", "--check"]) == 0
    root = tmp_path / "sub" / "closed" / "Acme"
    r = root / "results" / "null" / "bert-99" / "Offline"
    assert {p.name for p in r.iterdir()} == {"accuracy", "performance", "TEST01", "measurements.json", "user.conf", "README.md"}
    assert not (root / "compliance").exists() and not (root / "measurements").exists()


def test_incomplete_results_are_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = make_results(tmp_path, "v6.0", big_log=False)
    # v6.0 results have no TEST05: a v4.1 tree cannot be built from them
    assert cli.main(["submission", "--results", str(res), "--out", str(tmp_path / "a"), "--submitter", "Acme", "--round", "v4.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing compliance TEST05" in err
    shutil.rmtree(next(res.glob("*-compliance")))
    assert cli.main(["submission", "--results", str(res), "--out", str(tmp_path / "b"), "--submitter", "Acme"]) == 2
    assert "missing compliance TEST01" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_check_catches_low_accuracy_invalid_and_failed_audit(tmp_path: Path) -> None:
    res = make_results(tmp_path, "v6.0", big_log=False)
    assert cli.main(["submission", "--results", str(res), "--out", str(tmp_path / "sub"), "--submitter", "Acme"]) == 0
    from packed_bert.rounds import get_round

    root = tmp_path / "sub" / "closed" / "Acme"
    r = root / "results" / "null" / "bert-99" / "Offline"
    assert check_tree(root, get_round("v6.0"), res) == []
    txt = r / "accuracy" / "accuracy.txt"
    txt.write_text(txt.read_text().replace('"f1": 90.0', '"f1": 80.0'))
    summary = r / "performance" / "run_1" / "mlperf_log_summary.txt"
    summary.write_text(summary.read_text().replace("Result is : VALID", "Result is : INVALID"))
    (r / "TEST01" / "verify_performance.txt").write_text("TEST FAIL: Test score invalid\n")
    (root / "systems" / "null.json").write_text(json.dumps({"submitter": "Acme", "division": "closed"}))
    detail = r / "accuracy" / "mlperf_log_detail.txt"  # what a second user.conf in one process logs
    detail.write_text(detail.read_text() + ':::MLLOG {"key": "error_invalid_config", "value": "Multiple conf files are used. '
                      'This is not valid for official submission.", "metadata": {"is_error": true}}\n')
    problems = "\n".join(check_tree(root, get_round("v6.0"), res))
    assert "F1 80.000 below the bert-99 target 89.965" in problems
    assert "not VALID" in problems
    assert "verify_performance.txt has no TEST PASS" in problems
    assert "required fields missing" in problems
    assert "LoadGen logged an ERROR (error_invalid_config: Multiple conf files are used" in problems
    assert sys.version_info >= (3, 11)
