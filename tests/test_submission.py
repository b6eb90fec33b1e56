"""The submission tree from a plan's runs (stub launcher: real LoadGen logs), its refusals, its
check, and an official checker's report."""

import json
import shutil
import sys
from pathlib import Path

import pytest
from helpers.power import FAKE_CLIENT, STUB_PERF
from helpers.runs import last_json
from helpers.stub_launcher import StubLauncher, stub_scorer

from packed_bert import cli
from packed_bert.commands import run as run_cmd
from packed_bert.harness.config import RunConfig
from packed_bert.power import client
from packed_bert.rounds import get_round
from packed_bert.submission import builder
from packed_bert.submission.check import check_tree
from packed_bert.submission.truncate import MAX_LOG_SIZE, recorded_hash, sha256
from packed_bert.workflows.plan import expand, request_from_namespace
from packed_bert.workflows.plan_runner import run_plan
from packed_bert.workflows.power import run_power


def plan_runs(res: Path, *argv: str, launcher: StubLauncher | None = None) -> None:
    parser = cli.build_parser()
    ns = parser.parse_args(["run", "--sut", "null", "--results-dir", str(res), *argv])
    assert run_plan(expand(ns, request_from_namespace(ns)), launch=launcher or StubLauncher(), scorer=stub_scorer) == 0


def make_results(tmp_path: Path, rnd: str, power_server: str | None = None, big_log: bool = True) -> Path:
    """What ``packed-bert run --sut null --group.submission --round RND`` leaves (stub runs)."""
    res = tmp_path / "results"
    plan_runs(res, "--group.submission", "--round", rnd)
    if big_log:  # stand in for a real 10,833-sample log so truncation happens
        for acc in res.glob("*-accuracy"):
            entries = json.loads((acc / "mlperf_log_accuracy.json").read_text())
            (acc / "mlperf_log_accuracy.json").write_text(json.dumps(entries * 20, indent=0))
    if power_server:
        assert (
            run_power(
                RunConfig(sut="null", results_dir=res, power_server=power_server, round=rnd),
                perf_command=STUB_PERF + [rnd],
            )
            == 0
        )
    return res


def submit(res: Path, out: Path, *extra: str) -> int:
    return cli.main(["submission", "--results", str(res), "--out", str(out), "--submitter", "Acme", *extra])


def test_v41_datacenter_tree_with_power(
    tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(client.ENV_CLIENT, str(FAKE_CLIENT))
    res = make_results(tmp_path, "v4.1", power_server=server)
    capsys.readouterr()
    assert submit(res, tmp_path / "sub", "--allow-test-runs", "--check") == 1  # a test tree is never a result
    out = capsys.readouterr().out
    verdict = last_json(out)
    assert verdict["round"] == "v4.1" and verdict["categories"] == {"null": "datacenter"} and verdict["test_tree"]
    assert verdict["problems"] == [], verdict["problems"]  # the test-length runs are the only findings
    assert verdict["test_runs"] and all(
        any(w in t for w in ("min_duration", "simulated", "samples")) for t in verdict["test_runs"]
    )
    root = tmp_path / "sub" / "closed" / "Acme"
    for scen in ("Offline", "Server"):
        m = root / "measurements" / "null" / "bert-99" / scen
        assert {p.name for p in m.iterdir()} == {
            "user.conf",
            "mlperf.conf",
            "README.md",
            f"null_packed-bert_{scen}.json",
        }
        assert "*.*.qsl_rng_seed = 3066443479025735752" in (m / "mlperf.conf").read_text()
        c = root / "compliance" / "null" / "bert-99" / scen
        assert (c / "TEST01" / "verify_accuracy.txt").is_file() and (c / "TEST05" / "verify_performance.txt").is_file()
    r = root / "results" / "null" / "bert-99" / "Offline"
    acc_log = r / "accuracy" / "mlperf_log_accuracy.json"
    assert acc_log.stat().st_size < MAX_LOG_SIZE and b"\n\n...\n\n" in acc_log.read_bytes()
    assert recorded_hash(r / "accuracy" / "accuracy.txt") == sha256(
        next(res.glob("*-offline-accuracy")) / "mlperf_log_accuracy.json"
    )
    for f in ("run_1/mlperf_log_detail.txt", "run_1/spl.txt", "ranging/spl.txt", "power/client.json"):
        assert (r / "performance" / f).is_file(), f
    assert (root / "code" / "bert-99" / "packed-bert" / "README.md").is_file()
    desc = json.loads((root / "systems" / "null.json").read_text())
    assert desc["system_type"] == "datacenter" and desc["sw_notes"].startswith("TEST TREE")
    assert (desc["submitter"], desc["division"]) == ("Acme", "closed")
    assert not list(tmp_path.glob(".sub.partial-*"))


def test_v60_edge_tree_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = make_results(tmp_path, "v6.0", big_log=False)
    assert submit(res, tmp_path / "sub", "--allow-test-runs") == 0
    root = tmp_path / "sub" / "closed" / "Acme"
    assert sorted(p.name for p in (root / "results" / "null" / "bert-99").iterdir()) == ["Offline", "SingleStream"]
    r = root / "results" / "null" / "bert-99" / "SingleStream"
    assert {p.name for p in r.iterdir()} == {
        "accuracy",
        "performance",
        "TEST01",
        "measurements.json",
        "user.conf",
        "mlperf.conf",
        "README.md",
    }
    assert not (root / "compliance").exists() and not (root / "measurements").exists() and (root / "src").is_dir()
    assert json.loads((root / "systems" / "null.json").read_text())["system_type"] == "edge"
    problems = check_tree(root, get_round("v6.0"), res)
    assert problems and all(p.startswith("test-length run: ") for p in problems), problems


def test_the_category_whose_scenarios_the_runs_hold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The null system claims datacenter first; v4.1 edge runs (Offline + SingleStream) make an edge
    tree without --category, and asking for datacenter names the missing Server."""
    res = tmp_path / "results"
    plan_runs(res, "--group.edge", "--group.closed", "--round", "v4.1")
    capsys.readouterr()
    assert submit(res, tmp_path / "sub", "--allow-test-runs") == 0
    assert last_json(capsys.readouterr().out)["categories"] == {"null": "edge"}
    root = tmp_path / "sub" / "closed" / "Acme"
    assert json.loads((root / "systems" / "null.json").read_text())["system_type"] == "edge"
    assert sorted(p.name for p in (root / "results" / "null" / "bert-99").iterdir()) == ["Offline", "SingleStream"]
    assert submit(res, tmp_path / "sub2", "--allow-test-runs", "--category", "datacenter") == 2
    assert "needs Offline, Server: missing Server" in error_of(capsys)


def error_of(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("packed-bert: error: "), err
    return err[0]


def test_refusals_are_one_line_and_leave_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = make_results(tmp_path, "v6.0", big_log=False)
    capsys.readouterr()
    out = tmp_path / "sub"
    assert submit(res, out) == 2
    assert "null is a simulated system: never a closed result" in error_of(capsys)
    assert submit(res, out, "--division", "open") == 2
    assert "runs are shorter than MLPerf's minimums" in error_of(capsys)
    assert submit(res, out, "--allow-test-runs", "--category", "datacenter") == 2
    assert "BERT is not a datacenter benchmark in MLPerf Inference v6.0" in error_of(capsys)
    assert submit(res, out, "--allow-test-runs", "--round", "v4.1") == 2
    assert "no run of v4.1" in error_of(capsys)
    (tmp_path / "file").write_text("x")
    assert submit(res, tmp_path / "file", "--allow-test-runs") == 2
    assert "a file is there" in error_of(capsys)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert submit(res, tmp_path / "full", "--allow-test-runs") == 2
    assert "exists and is not empty" in error_of(capsys)
    # a round's runs only: a v4.1 run beside them makes the directory a mix
    plan_runs(res, "--mode", "accuracy", "--round", "v4.1")
    assert submit(res, out, "--allow-test-runs") == 2
    assert "mixes rounds: v4.1 (1 runs), v6.0 (6 runs)" in error_of(capsys)
    assert submit(res, out, "--allow-test-runs", "--round", "v6.0") == 0
    assert "not taken: 1 runs of other rounds (v4.1)" in capsys.readouterr().out
    # a missing scenario or audit test is named
    for comp in res.glob("*-singlestream-compliance"):
        shutil.rmtree(comp)
    assert submit(res, tmp_path / "sub2", "--allow-test-runs", "--round", "v6.0") == 2
    assert "null/bert-99/SingleStream (v6.0): missing compliance TEST01" in error_of(capsys)
    for run in res.glob("*-singlestream-*"):
        shutil.rmtree(run)
    assert submit(res, tmp_path / "sub2", "--allow-test-runs", "--round", "v6.0") == 2
    assert "needs Offline, SingleStream: missing SingleStream" in error_of(capsys)
    assert not (tmp_path / "sub2").exists()


def test_a_failure_while_writing_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    res = make_results(tmp_path, "v6.0", big_log=False)
    calls = []

    def broken(*args: object) -> None:
        calls.append(args)
        raise OSError("disk full")

    monkeypatch.setattr(builder, "build_entry", broken)
    with pytest.raises(OSError):
        builder.build(res, tmp_path / "sub", "Acme", allow_test_runs=True)
    assert calls and not (tmp_path / "sub").exists() and not list(tmp_path.glob(".sub.partial-*"))


def test_the_best_run_of_each_kind_unless_one_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = make_results(tmp_path, "v6.0", big_log=False)
    good = [p for p in sorted(res.glob("*-offline-performance*")) if not (p / "audit.config").exists()][-1]
    newer = res / (good.name[: -len("performance")] + "performance-9")
    shutil.copytree(good, newer)  # a newer run that failed
    summary = json.loads((newer / "summary.json").read_text())
    (newer / "summary.json").write_text(json.dumps({**summary, "valid": False}))
    capsys.readouterr()
    assert submit(res, tmp_path / "a", "--allow-test-runs") == 0
    assert f"performance {good.name}" in capsys.readouterr().out
    assert submit(res, tmp_path / "b", "--allow-test-runs", "--use", str(newer)) == 0
    assert f"performance {newer.name}" in capsys.readouterr().out


def test_check_catches_what_the_checker_rejects(tmp_path: Path) -> None:
    res = make_results(tmp_path, "v6.0", big_log=False)
    assert submit(res, tmp_path / "sub", "--allow-test-runs") == 0
    root = tmp_path / "sub" / "closed" / "Acme"
    r = root / "results" / "null" / "bert-99" / "Offline"
    txt = r / "accuracy" / "accuracy.txt"
    txt.write_text(txt.read_text().replace('"f1": 90.0', '"f1": 80.0'))
    detail = r / "performance" / "run_1" / "mlperf_log_detail.txt"
    detail.write_text(
        detail.read_text()
        .replace('"result_validity", "value": "VALID"', '"result_validity", "value": "INVALID"')
        .replace("2465351861681999779", "2085463073848966840")
    )  # LoadGen's built-in (v6.1) seed
    (r / "TEST01" / "verify_performance.txt").write_text("TEST FAIL: Test score invalid\n")
    (root / "systems" / "null.json").write_text(
        json.dumps({"submitter": "Acme", "division": "closed", "system_type": "datacenter"})
    )
    acc_detail = r / "accuracy" / "mlperf_log_detail.txt"  # what a second user.conf in one process logs
    acc_detail.write_text(
        acc_detail.read_text() + ':::MLLOG {"key": "error_invalid_config", "value": "Multiple conf files are '
        'used. This is not valid for official submission.", "metadata": {"is_error": true}}\n'
    )
    (r / "mlperf.conf").unlink()
    problems = "\n".join(check_tree(root, get_round("v6.0"), res))
    for needle in (
        "F1 80.000 below the bert-99 target 89.965",
        "performance result is INVALID, not VALID",
        "qsl_rng_seed is 2085463073848966840, v6.0 expects 2465351861681999779",
        "verify_performance.txt has no TEST PASS",
        "required fields missing",
        "system_type datacenter: BERT is edge only in v6.0",
        "LoadGen logged an ERROR (error_invalid_config: Multiple conf files are used",
        "mlperf.conf missing",
        "min_duration 50 ms < 600000 ms",
        "accuracy run over 64 samples, not the 10,833",
    ):
        assert needle in problems, needle
    # the open division takes any accuracy, as the official checker does (its accuracy check
    # returns True there)
    assert submit(res, tmp_path / "open", "--allow-test-runs", "--division", "open") == 0
    root = tmp_path / "open" / "open" / "Acme"
    txt = root / "results" / "null" / "bert-99" / "Offline" / "accuracy" / "accuracy.txt"
    txt.write_text(txt.read_text().replace('"f1": 90.0', '"f1": 80.0'))
    assert '"f1": 80.0' in txt.read_text()
    assert not [p for p in check_tree(root, get_round("v6.0"), res) if "below the" in p]


FAKE_CHECKER = """import argparse, logging, sys
logging.basicConfig(level=logging.INFO)
p = argparse.ArgumentParser(); p.add_argument("--input"); p.add_argument("--version"); p.add_argument("--submitter")
p.add_argument("--csv"); a = p.parse_args()
log = logging.getLogger("main")
log.info("checking %s for %s", a.input, a.version)
log.warning("%s/closed/Acme/results/x accuracy not met: expected=89.965260, found=1.9", a.input)
log.error("%s Test duration less than 600s in user config. expected=600000, found=10000", a.version)
log.error("SUMMARY: submission has errors")
sys.exit(1)
"""


def test_official_checker_findings_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = make_results(tmp_path, "v6.0", big_log=False)
    checker = tmp_path / "inference" / "tools" / "submission" / "submission_checker.py"
    checker.parent.mkdir(parents=True)
    checker.write_text(FAKE_CHECKER)
    capsys.readouterr()
    assert (
        submit(
            res,
            tmp_path / "sub",
            "--allow-test-runs",
            "--official",
            str(tmp_path / "inference"),
            "--official-python",
            sys.executable,
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "OFFICIAL: v6.0 Test duration less than 600s in user config. expected=600000, found=10000" in out
    assert "accuracy not met" in out and "exit 1, 2 ERROR line(s); submission has errors" in out
    assert last_json(out)["official"]["exit"] == 1
    assert (
        cli.main(
            [
                "submission",
                "--results",
                str(res),
                "--out",
                str(tmp_path / "sub3"),
                "--submitter",
                "Acme",
                "--allow-test-runs",
                "--official",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "no MLPerf submission checker there" in error_of(capsys)


def test_sut_toml_path_through_compliance_and_power(
    tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from importlib import resources  # the shipped null system, under another name and path

    toml = tmp_path / "my systems" / "lab.box.toml"
    toml.parent.mkdir()
    text = resources.files("packed_bert.systems").joinpath("null.toml").read_text()
    toml.write_text(text.replace('name = "null"', 'name = "labbox"'))
    res = tmp_path / "results"
    parser = cli.build_parser()
    ns = parser.parse_args(["run", "--sut", str(toml), "--results-dir", str(res), "--group.closed", "--round", "v4.1"])
    assert run_plan(expand(ns, request_from_namespace(ns)), launch=StubLauncher(), scorer=stub_scorer) == 0
    assert {p.name.split("-", 2)[2].split("-bert")[0] for p in res.iterdir() if not p.name.startswith(".")} == {
        "labbox"
    }
    monkeypatch.setenv(client.ENV_CLIENT, str(FAKE_CLIENT))
    args = parser.parse_args(
        [
            "run",
            "--sut",
            str(toml),
            "--mode",
            "power",
            "--power-server",
            server,
            "--results-dir",
            str(res),
            "--round",
            "v4.1",
        ]
    )
    assert run_power(run_cmd.config_from_args(args), perf_command=STUB_PERF + ["v4.1"]) == 0
    assert (
        json.loads((next(res.glob("*-labbox-bert-99-offline-power")) / "summary.json").read_text())["sut"] == "labbox"
    )


def test_a_closed_result_needs_the_official_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = make_results(tmp_path, "v6.0", big_log=False)
    acc = sorted(res.glob("*-offline-accuracy"))[-1]
    system = json.loads((acc / "system.json").read_text())
    system["data"] = {
        "dataset": "/tmp/one-article.json",
        "dataset_sha256": "0" * 64,
        "dataset_official": False,
        "vocab": "vocab.txt",
        "vocab_sha256": "1" * 64,
        "vocab_official": True,
    }
    (acc / "system.json").write_text(json.dumps(system))
    capsys.readouterr()
    assert submit(res, tmp_path / "sub", "--allow-test-runs") == 2
    err = error_of(capsys)
    assert "used a dataset that is not the official one (/tmp/one-article.json)" in err
    assert not (tmp_path / "sub").exists()
    assert submit(res, tmp_path / "open", "--allow-test-runs", "--division", "open") == 0


def test_the_implementation_json_names_smoothquant_when_the_run_used_it(tmp_path: Path) -> None:
    from packed_bert.submission.builder import implementation_json

    def run_dir(name: str, precision: str, detail: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "settings.json").write_text(json.dumps({"harness": {"precision": precision, "weights": "random"}}))
        (d / "system.json").write_text(json.dumps({"runners": str([{"name": "openvino", "detail": detail}])}))
        return d

    smooth = implementation_json(
        run_dir("a", "int8", "int8 (static int8 activations (SmoothQuant alpha 0.8, calibrated))")
    )
    assert smooth["weight_transformations"].startswith("quantized to int8; per input channel SmoothQuant")
    assert "calibration set" in smooth["weight_transformations"]
    per_token = implementation_json(run_dir("b", "int8", "int8 (activations quantized per token (groups of 1024))"))
    assert per_token["weight_transformations"] == "quantized to int8"
    assert implementation_json(run_dir("c", "fp32", "fp32"))["weight_transformations"] == "none"
    assert implementation_json(None)["weight_data_types"] == "fp32"
    mixed = implementation_json(
        run_dir("d", "int8-bf16", "int8-bf16 (static int8 (SmoothQuant alpha 0.8, calibrated))")
    )
    assert mixed["weight_data_types"] == "int8, bf16"  # the formats the system description lists
    assert "SmoothQuant" in mixed["weight_transformations"]
