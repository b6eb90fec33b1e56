"""End to end through the CLI on real harness runs: accuracy, performance, compliance TEST01 (+ TEST05
for v4.1), power with the stand-in client, and the submission tree with its check (v4.1 and v6.0).

The chain runs on the simulated one-card system: its timing is a sleep, so the audit runs' scores
agree with the performance run's however busy the machine is (on two shared cores a CPU run's
throughput swings by more than TEST05's 5%). Its logits are zeros, so the accuracy is far below
the target and the check says exactly that. TEST01's fallback on real, differing responses runs on
the CPU with the tiny model. The accuracy and performance runs are their own processes, as a
user's are: LoadGen logs an ERROR into a run whose user.conf is the second one of a process.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.power import FAKE_CLIENT, closed_port
from helpers.runs import last_json

from packed_bert import cli
from packed_bert.power import client
from packed_bert.results.loadgen_logs import detail_errors
from packed_bert.submission.truncate import MAX_LOG_SIZE, recorded_hash, sha256


def data_flags(shared_data: Path) -> list[str]:
    return [
        "--dataset",
        str(shared_data / "squad" / "dev-v1.1.json"),
        "--vocab",
        str(shared_data / "vocab" / "bert-uncased-vocab.txt"),
    ]


def run_cli_process(*args: str) -> dict:
    """``packed-bert run ...`` in a process of its own, as a user runs it; its JSON summary."""
    done = subprocess.run(
        [sys.executable, "-m", "packed_bert.cli", "run", *args],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return last_json(done.stdout)


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("packed-bert: error: "), err
    return err[0]


def test_simulated_system_end_to_end(
    tmp_path: Path, shared_data: Path, server: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """One plan command, then ``submission --allow-test-runs --check``: the v6.0 edge tree whose
    only findings are the untrained model's F1 and the test-length runs."""
    res = tmp_path / "results"
    common = [
        "--sut",
        "r282_z93_q1",
        "--count",
        "40",
        "--setting",
        "min_duration=3000",
        "--results-dir",
        str(res),
        *data_flags(shared_data),
    ]
    # an incomplete results directory is refused, naming what is missing
    run_cli_process("--mode", "accuracy", "--round", "v6.0", *common)
    assert (
        cli.main(
            [
                "submission",
                "--results",
                str(res),
                "--out",
                str(tmp_path / "early"),
                "--submitter",
                "test",
                "--allow-test-runs",
            ]
        )
        == 2
    )
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs Offline, SingleStream: missing SingleStream; run it (packed-bert run" in err[0], err
    assert not (tmp_path / "early").exists()

    # the plan: accuracy (kept: done above), performance, TEST01 for Offline and SingleStream
    code = cli.main(["run", "--group.submission", "--round", "v6.0", *common])
    out = capfd.readouterr().out
    assert "plan [1/6] r282_z93_q1 bert-99 Offline accuracy: kept, a valid result is in" in out
    for _ in range(2):  # a run's score may swing past TEST01's 10% on a busy 2-core host: again, all of it
        if code == 0:
            break
        code = cli.main(["run", "--group.submission", "--round", "v6.0", "--rerun", *common])
        out = capfd.readouterr().out
    assert code == 0 and "plan: 6 of 6 runs have a valid result" in out, out
    for row in ("r282_z93_q1 bert-99 SingleStream performance  VALID", "r282_z93_q1 bert-99 Offline TEST01"):
        assert row in out, out
    # every run took the round's seeds and logged no ERROR (each ran in a process of its own)
    for run in (p for p in res.iterdir() if (p / "mlperf_log_detail.txt").is_file()):
        assert detail_errors(run / "mlperf_log_detail.txt") == [], run
        assert json.loads((run / "summary.json").read_text())["round"] == "v6.0"

    # power through the stand-in client against a local listener
    monkeypatch.setenv(client.ENV_CLIENT, str(FAKE_CLIENT))
    assert cli.main(["run", "--mode", "power", "--power-server", server, "--round", "v6.0", *common]) == 0
    power = last_json(capfd.readouterr().out)
    assert power["official"] is True and power["average_watts"] == pytest.approx(200.0) and power["valid"] is True

    assert (
        cli.main(
            [
                "submission",
                "--results",
                str(res),
                "--out",
                str(tmp_path / "sub"),
                "--submitter",
                "test",
                "--allow-test-runs",
                "--check",
            ]
        )
        == 1
    )
    out = capfd.readouterr().out
    verdict = last_json(out)
    assert verdict["categories"] == {"r282_z93_q1": "edge"} and verdict["test_tree"] is True
    assert len(verdict["problems"]) == 2 and all("below the bert-99 target 89.965" in p for p in verdict["problems"])
    assert verdict["test_runs"] and out.count("CHECK TEST RUN: ") == len(verdict["test_runs"])
    root = tmp_path / "sub" / "closed" / "test"
    r = root / "results" / "r282_z93_q1" / "bert-99"
    assert sorted(p.name for p in r.iterdir()) == ["Offline", "SingleStream"]
    assert {p.name for p in (r / "Offline").iterdir()} == {
        "accuracy",
        "performance",
        "TEST01",
        "measurements.json",
        "user.conf",
        "mlperf.conf",
        "README.md",
    }
    for f in ("run_1/mlperf_log_summary.txt", "run_1/spl.txt", "ranging/spl.txt", "power/client.json"):
        assert (r / "Offline" / "performance" / f).is_file(), f
    log = r / "Offline" / "accuracy" / "mlperf_log_accuracy.json"
    assert log.stat().st_size < MAX_LOG_SIZE
    acc_run = sorted(res.glob("*-offline-accuracy*"))[-1]  # the newest: the one the tree took
    assert recorded_hash(r / "Offline" / "accuracy" / "accuracy.txt") == sha256(acc_run / "mlperf_log_accuracy.json")
    desc = json.loads((root / "systems" / "r282_z93_q1.json").read_text())
    assert desc["system_name"] == "r282_z93_q1 (simulated)" and desc["system_type"] == "edge"
    assert desc["accelerators_per_node"] == 1 and desc["sw_notes"].startswith("TEST TREE")
    assert "simulated accelerator" in desc["sw_notes"] and "bert-99: " in desc["sw_notes"]
    assert "Offline " in desc["sw_notes"] and "SingleStream one sample at a time" in desc["sw_notes"]


def test_cpu_tiny_performance_is_valid_with_a_probed_target(
    tmp_path: Path, shared_data: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    perf = run_cli_process(
        "--sut",
        "cpu",
        "--weights",
        "tiny",
        "--mode",
        "performance",
        "--count",
        "200",
        "--setting",
        "min_duration=3000",
        "--results-dir",
        str(tmp_path),
        *data_flags(shared_data),
    )
    assert perf["valid"] is True, perf["invalid_reasons"]
    plan = json.loads((Path(perf["run_dir"]) / "settings.json").read_text())["harness"]
    assert plan["target_qps_from"].startswith("a probe") and plan["target_qps"] > 3.5  # not BERT-Large's 3.5


def test_test01_on_the_tiny_model_scores_differing_responses(
    tmp_path: Path, shared_data: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    res = tmp_path / "results"
    # the cpu system's defaults give the same bits in any batch; ONNX Runtime's dynamic int8 (one
    # activation scale per batch tensor) does not, which is what exercises the fallback
    from importlib import resources

    cpu = resources.files("packed_bert.systems").joinpath("cpu.toml").read_text()
    system = tmp_path / "cpu-dynamic-int8.toml"
    # bert-99 as ONNX Runtime int8 in [precision] and in every CPU class's table
    dynamic = re.sub(r'"bert-99" = "[a-z]+:[a-z0-9]+"', '"bert-99" = "int8"', cpu)
    # and no CPU class's own options for it (on avx2 they name the static int8 graph)
    dynamic = re.sub(r"\[backend_options_by_cpu\.[^\]]*\]\n(?:\w+ = [^\n]*\n)*", "", dynamic)
    system.write_text(
        dynamic.replace('name = "cpu"', 'name = "cpu-dynamic-int8"\nbackend_options = {quant = "dynamic"}')
    )
    common = [
        "--sut",
        str(system),
        "--weights",
        "tiny",
        "--count",
        "24",
        "--results-dir",
        str(res),
        *data_flags(shared_data),
    ]
    # the accuracy run packs; the audit run sorts: other neighbours, other int8 scales, other bits
    assert cli.main(["run", "--mode", "accuracy", "--batching", "packed", *common]) == 0
    acc = last_json(capfd.readouterr().out)
    code = cli.main(
        [
            "run",
            "--compliance",
            "TEST01",
            "--accuracy-dir",
            acc["run_dir"],
            "--batching",
            "sorted",
            "--target-qps",
            "2000",
            "--setting",
            "min_duration=300",
            *common,
        ]
    )
    out = capfd.readouterr().out
    assert code in (0, 1), out  # the performance verdict depends on how busy the CPU is
    summary = json.loads((Path(last_json(out)["run_dir"]) / "summary.json").read_text())
    t01 = summary["tests"]["TEST01"]["accuracy"]
    assert t01["compared"] > 0 and t01["mismatched"] > 0, t01  # the fallback ran
    assert t01["passed"] is True and "logged responses differ bit-wise" in out
    # every sample the audit run logged is one of the 24; both subsets are those 24 questions
    assert t01["baseline_f1"] == pytest.approx(acc["f1"]) and t01["compliance_f1"] == pytest.approx(acc["f1"], rel=0.01)
    a = Path(summary["run_dir"]) / "TEST01"
    assert "num_missing_qsl_idxs = 0" in (a / "verify_accuracy.txt").read_text()
    assert (a / "verify_accuracy.txt").read_text().rstrip().endswith("TEST FAIL")  # not identical...
    for name in ("baseline_accuracy.txt", "compliance_accuracy.txt"):  # ...so scored
        assert json.loads((a / "accuracy" / name).read_text().splitlines()[-1]).keys() == {"exact_match", "f1"}


def test_bad_inputs_are_one_line_errors(
    tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    res = tmp_path / "results"
    base = ["run", "--sut", "r282_z93_q1", "--results-dir", str(res)]
    assert cli.main([*base, "--compliance", "TEST01,TEST04"]) == 2
    assert "unknown compliance test 'TEST04'" in error_line(capsys)
    assert cli.main([*base, "--compliance", "TEST05", "--round", "v5.0"]) == 2
    assert "TEST05 is not part of MLPerf Inference v5.0" in error_line(capsys)
    monkeypatch.setenv(client.ENV_CLIENT, str(FAKE_CLIENT))
    assert cli.main([*base, "--mode", "power", "--power-server", f"127.0.0.1:{closed_port()}"]) == 2
    assert "does not answer" in error_line(capsys)
    monkeypatch.delenv(client.ENV_CLIENT)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert (
        cli.main(
            [*base, "--power=yes", "--power_server_ip=127.0.0.1", f"--power_server_port={server.rsplit(':', 1)[1]}"]
        )
        == 2
    )
    assert "power_client not found" in error_line(capsys)
    assert not res.exists() or not any(res.iterdir())  # nothing ran
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["submission", "--results", str(empty), "--out", str(tmp_path / "sub"), "--submitter", "test"]) == 2
    assert "no run directories" in error_line(capsys)


def test_a_cpu_only_system_claims_zero_accelerators_in_a_form_the_checker_reads() -> None:
    """The official checker rejects an accelerators_per_node it reads as empty (``not 0``) and
    computes int(value) for its tables: a CPU-only system says "0"."""
    from packed_bert.submission.systems import system_json

    desc = system_json({"accelerator": "CPU", "devices": 1, "backend": "torch"}, "cpu", "acme", "closed", "edge")
    assert (
        desc["accelerators_per_node"] == "0"
        and desc["accelerators_per_node"]
        and int(desc["accelerators_per_node"]) == 0
    )
    card = system_json(
        {"accelerator": "Cloud AI 100", "devices": 8, "backend": "sim", "simulated": True},
        "q8",
        "acme",
        "closed",
        "edge",
    )
    assert card["accelerators_per_node"] == 8


def test_the_framework_names_the_runtimes_the_models_ran_on() -> None:
    """A precision entry may name its own runtime (the CPU-class tables do): the system file's
    ``backend`` is only the fallback."""
    import dataclasses

    from packed_bert.submission.systems import system_json
    from packed_bert.systems import load_system

    def framework(precision: dict[str, str]) -> str:
        spec = dataclasses.replace(load_system("cpu"), backend="onnxruntime", precision=precision)
        return str(system_json(spec.describe(), "cpu", "acme", "closed", "edge")["framework"])

    assert framework({"bert-99": "openvino:int8", "bert-99.9": "openvino:fp32"}) == "packed-bert, openvino"
    assert framework({"bert-99": "torch:bf16", "bert-99.9": "fp32"}) == (
        "packed-bert, torch (bert-99), onnxruntime (bert-99.9)"
    )
    old = {"accelerator": "CPU", "devices": 1, "backend": "onnxruntime"}  # a system.json from before
    assert system_json(old, "cpu", "acme", "closed", "edge")["framework"] == "packed-bert, onnxruntime"
