import json
from pathlib import Path
from typing import Any

import pytest

from packed_bert import cli
from packed_bert.commands import run as run_cmd
from packed_bert.errors import UserError
from packed_bert.harness.config import RunConfig
from packed_bert.harness.flags import to_argv


def _cfg(argv: list[str]) -> RunConfig:
    args = cli.build_parser().parse_args(cli._with_default_command(argv))
    return run_cmd.config_from_args(args)


def test_old_spellings_mean_the_same_run() -> None:
    old = _cfg(
        [
            "--sut=r282_z93_q1",
            "--sdk=1.5.9",
            "--model=bert-99",
            "--mode=accuracy",
            "--scenario=offline",
            "--override_batch_size=4096",
            "--target_qps=300",
            "--verbose",
        ]
    )
    new = _cfg(
        [
            "run",
            "--sut",
            "r282_z93_q1",
            "--sdk",
            "1.5.9",
            "--model",
            "BERT-99",
            "--mode",
            "Accuracy",
            "--scenario",
            "Offline",
            "--batch-size",
            "4096",
            "--target-qps",
            "300",
            "-v",
        ]
    )
    assert old.sut == "r282_z93_q1" and old.sdk == "1.5.9" and old.model == "bert-99"
    assert (old.mode, old.scenario, old.batch_size, old.target_qps, old.verbose) == (
        "accuracy",
        "Offline",
        4096,
        300.0,
        True,
    )
    strip = {"command_line": ()}
    assert {**old.__dict__, **strip} == {**new.__dict__, **strip}
    assert _cfg(["--sut=cpu", "--scenario=SINGLESTREAM"]).scenario == "SingleStream"
    assert _cfg(["--sut=cpu", "--scenario=server", "--model=bert-99.9"]).model == "bert-99.9"


def test_batching_flags() -> None:
    assert _cfg(["--sut=cpu", "--no-packing"]).batching == "padded"
    assert _cfg(["--sut=cpu", "--batching", "sorted"]).batching == "sorted"
    assert _cfg(["--sut=cpu"]).batching is None  # the system file's default
    with pytest.raises(UserError):
        _cfg(["--sut=cpu", "--no-packing", "--batching", "sorted"])


def test_compliance_and_power_spellings() -> None:
    for flag in ("--compliance=TEST05,TEST01", "--compliance,=TEST05,TEST01"):
        cfg = _cfg(["--sut=r282_z93_q8", "--model=bert-99", "--scenario=offline", flag])
        assert cfg.mode == "compliance" and cfg.compliance_tests == ("TEST05", "TEST01")
    cfg = _cfg(["run", "--sut", "cpu", "--mode", "compliance", "--compliance", "test01,TEST05", "--round", "v4.1"])
    assert cfg.compliance_tests == ("TEST01", "TEST05") and cfg.round == "v4.1"
    old = _cfg(
        [
            "--sut=r282_z93_q5",
            "--power=yes",
            "--power_server_ip=10.0.0.2",
            "--power_server_port=4951",
            "--sleep_before_ck_benchmark_sec=90",
        ]
    )
    assert (old.mode, old.power_server, old.sleep_before_s) == ("power", "10.0.0.2:4951", 90.0)
    new = _cfg(
        [
            "run",
            "--sut",
            "r282_z93_q5",
            "--mode",
            "power",
            "--power-server",
            "10.0.0.2:4951",
            "--ntp",
            "pool.ntp.org",
            "--sleep-before",
            "90",
        ]
    )
    assert (new.mode, new.power_server, new.ntp_server, new.sleep_before_s) == (
        "power",
        "10.0.0.2:4951",
        "pool.ntp.org",
        90.0,
    )


def test_bad_values_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--sut", "cpu", "--scenario", "multistream"]) == 2
    assert cli.main(["run", "--sut", "nope"]) == 2
    assert cli.main(["run", "--sut", "null", "--setting", "bogus=1"]) == 2
    err = capsys.readouterr().err
    assert "multistream" in err and "unknown system" in err and "bogus" in err
    assert "Traceback" not in err


def test_a_gpu_system_without_a_gpu_fails_before_reading_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The device check comes first: a user with no GPU and no SQuAD copy is told about the GPU,
    not sent to download the data (the loader here fails if it is called)."""
    import torch

    import packed_bert.squad.features as sf

    def no_data(*_a: object, **_k: object) -> None:
        raise AssertionError("the data was read before the devices were checked")

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(sf, "load_features", no_data)
    assert cli.main(["run", "--sut", "cuda", "--weights", "tiny", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['packed-bert: error: devices = "auto" asks for every NVIDIA GPU, and none is visible here']
    assert not list(tmp_path.iterdir())


def test_modes_dispatch(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[tuple[str, Any]] = []
    import packed_bert.workflows.compliance as cw
    import packed_bert.workflows.power as pw

    monkeypatch.setattr(cw, "run_compliance", lambda cfg: seen.append(("c", cfg)) or 0)
    monkeypatch.setattr(pw, "run_power", lambda cfg: seen.append(("p", cfg)) or 0)
    assert cli.main(["--sut=r282_z93_q8", "--compliance=TEST01"]) == 0
    assert cli.main(["--sut=r282_z93_q8", "--power=yes"]) == 0
    assert [k for k, _ in seen] == ["c", "p"]


def test_run_prints_json_summary_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from helpers.fakes import synthetic_features

    import packed_bert.squad.features as sf

    monkeypatch.setattr(sf, "load_features", lambda *a, **k: synthetic_features(200))
    code = cli.main(
        [
            "--sut=null",
            "--mode=performance",
            "--scenario=offline",
            "--target_qps=2000",
            f"--results-dir={tmp_path}",
            "--setting",
            "min_duration=300",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert summary["sut"] == "null" and summary["batching"] == "packed"
    assert summary["simulated"] is False and summary["samples_per_second"] > 0
    assert "valid" in summary and Path(summary["run_dir"]).is_dir()
    assert any(line.startswith("performance:") for line in out)


def test_questions_flag_names_a_split_and_survives_to_argv() -> None:
    cfg = _cfg(["run", "--sut", "cpu", "--mode", "accuracy", "--questions", "odd-articles"])
    assert cfg.questions == "odd-articles"
    assert _cfg(["run", "--sut", "cpu", "--questions", "all"]).questions is None  # all = the default
    again = _cfg(to_argv(cfg)[1:])
    assert again.questions == "odd-articles"
    with pytest.raises((SystemExit, UserError)):
        _cfg(["run", "--sut", "cpu", "--questions", "first-half"])


@pytest.mark.parametrize(
    ("given", "expected"), [({}, "10000"), ({"GOMP_SPINCOUNT": "5"}, "5"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "unset")]
)
def test_openmp_threads_spin_briefly_unless_the_user_says(given: dict[str, str], expected: str) -> None:
    """Set before torch loads (OpenMP reads it once); what the user set is kept."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | given
    code = "import packed_bert, os; print(os.environ.get('GOMP_SPINCOUNT', 'unset'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == expected
