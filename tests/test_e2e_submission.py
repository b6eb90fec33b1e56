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
import subprocess
import sys
from pathlib import Path

import pytest
from test_power import FAKE_CLIENT, closed_port, server  # noqa: F401 - the fixture

from packed_bert import cli
from packed_bert.compliance.logs import detail_errors
from packed_bert.power import client
from packed_bert.submission.truncate import MARKER, MAX_LOG_SIZE, recorded_hash, sha256


def data_flags(shared_data: Path) -> list[str]:
    return ["--dataset", str(shared_data / "squad" / "dev-v1.1.json"),
            "--vocab", str(shared_data / "vocab" / "bert-uncased-vocab.txt")]


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def run_cli_process(*args: str) -> dict:
    """``packed-bert run ...`` in a process of its own, as a user runs it; its JSON summary."""
    done = subprocess.run([sys.executable, "-m", "packed_bert.cli", "run", *args], capture_output=True, text=True,
                          check=False, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-2000:]
    return last_json(done.stdout)


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("packed-bert: error: "), err
    return err[0]


def test_simulated_system_end_to_end(tmp_path: Path, shared_data: Path, server: str,  # noqa: F811
                                     monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]) -> None:
    res = tmp_path / "results"
    common = ["--sut", "r282_z93_q1", "--count", "40", "--setting", "min_duration=1000",
              "--results-dir", str(res), *data_flags(shared_data)]
    acc = run_cli_process("--mode", "accuracy", *common)
    perf = run_cli_process("--mode", "performance", *common)
    assert acc["mode"] == "accuracy" and acc["samples"] == 40 and acc["simulated"] is True
    assert perf["valid"] is True

    # an incomplete results directory is refused, naming what is missing
    assert cli.main(["submission", "--results", str(res), "--out", str(tmp_path / "early"), "--submitter", "test",
                     "--round", "v4.1"]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing compliance TEST01, compliance TEST05" in err[0], err
    assert not (tmp_path / "early").exists()

    # compliance takes the runs above (same --count: TEST01's qsl_idx are all in the accuracy log)
    assert cli.main(["run", "--compliance=TEST05,TEST01", "--round", "v4.1", *common]) == 0
    out = capfd.readouterr().out
    assert f"compliance: using the accuracy run {acc['run_dir']}" in out
    assert f"compliance: using the performance run {perf['run_dir']}" in out
    for verdict in ("TEST01 performance: TEST PASS", "TEST01 accuracy: TEST PASS", "TEST05 performance: TEST PASS",
                    "compliance v4.1: TEST PASS (TEST01, TEST05)"):
        assert verdict in out, out
    comp = last_json(out)
    assert comp["valid"] is True and comp["round"] == "v4.1"
    cdir = Path(comp["run_dir"])
    assert "num_missing_qsl_idxs = 0" in (cdir / "TEST01" / "verify_accuracy.txt").read_text()
    audits = [json.loads((p / "summary.json").read_text()) for p in res.iterdir() if (p / "audit.config").is_file()]
    assert sorted(a["compliance_test"] for a in audits) == ["TEST01", "TEST05"]

    # power through the stand-in client against a local listener
    monkeypatch.setenv(client.ENV_CLIENT, str(FAKE_CLIENT))
    assert cli.main(["run", "--mode", "power", "--power-server", server, *common]) == 0
    power = last_json(capfd.readouterr().out)
    assert power["official"] is True and power["average_watts"] == pytest.approx(200.0) and power["valid"] is True
    assert power["samples_per_joule"] == pytest.approx(power["samples_per_second"] / 200.0, rel=1e-3)

    # the v4.1 tree, checked: everything holds but the accuracy of zero logits
    assert cli.main(["submission", "--results", str(res), "--out", str(tmp_path / "sub"), "--submitter", "test",
                     "--division", "closed", "--round", "v4.1", "--check"]) == 1
    out = capfd.readouterr().out
    verdict = last_json(out)
    assert verdict["check"] == "FAIL" and len(verdict["problems"]) == 1, verdict["problems"]
    assert "accuracy.txt: F1" in verdict["problems"][0] and "below the bert-99 target 89.965" in verdict["problems"][0]
    assert out.count("CHECK FAIL: ") == 1
    root = tmp_path / "sub" / "closed" / "test"
    r = root / "results" / "r282_z93_q1" / "bert-99" / "Offline"
    m = root / "measurements" / "r282_z93_q1" / "bert-99" / "Offline"
    c = root / "compliance" / "r282_z93_q1" / "bert-99" / "Offline"
    required = [
        root / "systems" / "r282_z93_q1.json", root / "code" / "bert-99" / "packed-bert" / "README.md",
        *(r / "accuracy" / f for f in ("accuracy.txt", "mlperf_log_accuracy.json", "mlperf_log_summary.txt", "mlperf_log_detail.txt")),
        *(r / "performance" / f for f in ("run_1/mlperf_log_summary.txt", "run_1/mlperf_log_detail.txt", "run_1/spl.txt",
                                          "ranging/spl.txt", "power/client.json")),
        m / "user.conf", m / "README.md", m / "r282_z93_q1_packed-bert_Offline.json",
        *(c / "TEST01" / f for f in ("verify_accuracy.txt", "verify_performance.txt", "accuracy/mlperf_log_accuracy.json",
                                     "accuracy/accuracy.txt", "performance/run_1/mlperf_log_summary.txt")),
        c / "TEST05" / "verify_performance.txt", c / "TEST05" / "performance" / "run_1" / "mlperf_log_detail.txt",
    ]
    assert [p for p in required if not p.is_file()] == []
    for f in (c / "TEST01" / "verify_accuracy.txt", c / "TEST01" / "verify_performance.txt", c / "TEST05" / "verify_performance.txt"):
        assert f.read_text().rstrip().endswith("TEST PASS"), f
    log = r / "accuracy" / "mlperf_log_accuracy.json"
    assert log.stat().st_size < MAX_LOG_SIZE and MARKER.encode() in log.read_bytes()
    assert recorded_hash(r / "accuracy" / "accuracy.txt") == sha256(Path(acc["run_dir"]) / "mlperf_log_accuracy.json")
    for run in (r / "accuracy", r / "performance" / "run_1", c / "TEST01" / "performance" / "run_1"):
        assert detail_errors(run / "mlperf_log_detail.txt") == [], run
    impl = json.loads((m / "r282_z93_q1_packed-bert_Offline.json").read_text())
    assert impl["weight_data_types"] == "int8" and impl["starting_weights_filename"] == "random"
    readme = (m / "README.md").read_text()
    assert "run --mode accuracy --sut r282_z93_q1" in readme and "run --mode performance --sut r282_z93_q1" in readme
    desc = json.loads((root / "systems" / "r282_z93_q1.json").read_text())
    assert desc["system_name"] == "r282_z93_q1 (simulated)" and desc["accelerator_model_name"] == "Qualcomm Cloud AI 100"
    assert desc["accelerators_per_node"] == 1 and desc["other_software_stack"] == "SDK 1.5.9"

    # v6.0: compliance and measurements under results/<sut>/<model>/<Scenario>/, TEST01 only
    assert cli.main(["submission", "--results", str(res), "--out", str(tmp_path / "sub6"), "--submitter", "test", "--check"]) == 1
    assert len(last_json(capfd.readouterr().out)["problems"]) == 1
    r6 = tmp_path / "sub6" / "closed" / "test" / "results" / "r282_z93_q1" / "bert-99" / "Offline"
    assert {p.name for p in r6.iterdir()} == {"accuracy", "performance", "TEST01", "measurements.json", "user.conf", "README.md"}
    assert not (tmp_path / "sub6" / "closed" / "test" / "compliance").exists()


def test_test01_on_the_tiny_model_scores_differing_responses(tmp_path: Path, shared_data: Path,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    res = tmp_path / "results"
    # the cpu system's defaults give the same bits in any batch; ONNX Runtime's dynamic int8 (one
    # activation scale per batch tensor) does not, which is what exercises the fallback
    from importlib import resources

    cpu = resources.files("packed_bert.systems").joinpath("cpu.toml").read_text()
    system = tmp_path / "cpu-dynamic-int8.toml"
    system.write_text(cpu.replace('"bert-99" = "torch:bf16"', '"bert-99" = "int8"')
                      .replace('name = "cpu"', 'name = "cpu-dynamic-int8"\nbackend_options = {quant = "dynamic"}'))
    common = ["--sut", str(system), "--weights", "tiny", "--count", "24", "--results-dir", str(res), *data_flags(shared_data)]
    # the accuracy run packs; the audit run sorts: other neighbours, other int8 scales, other bits
    assert cli.main(["run", "--mode", "accuracy", "--batching", "packed", *common]) == 0
    acc = last_json(capfd.readouterr().out)
    code = cli.main(["run", "--compliance", "TEST01", "--accuracy-dir", acc["run_dir"], "--batching", "sorted",
                     "--target-qps", "2000", "--setting", "min_duration=300", *common])
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


def test_bad_inputs_are_one_line_errors(tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                        capsys: pytest.CaptureFixture[str]) -> None:
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
    assert cli.main([*base, "--power=yes", "--power_server_ip=127.0.0.1", f"--power_server_port={server.rsplit(':', 1)[1]}"]) == 2
    assert "power_client not found" in error_line(capsys)
    assert not res.exists() or not any(res.iterdir())  # nothing ran
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["submission", "--results", str(empty), "--out", str(tmp_path / "sub"), "--submitter", "test"]) == 2
    assert "no run directories" in error_line(capsys)
