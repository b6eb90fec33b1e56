import pytest

from packed_bert import cli
from packed_bert.errors import UserError


def test_flags_without_command_mean_run() -> None:
    assert cli._with_default_command(["--sut=r282_z93_q1", "--model=bert-99"]) == [
        "run",
        "--sut=r282_z93_q1",
        "--model=bert-99",
    ]
    assert cli._with_default_command(["preprocess", "--out", "x"])[0] == "preprocess"
    assert cli._with_default_command(["--help"]) == ["--help"]


def test_user_error_is_one_line_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def boom() -> None:
        raise UserError("dataset /x: not found; pass --dataset PATH")

    monkeypatch.setattr(cli, "build_parser", boom)
    assert cli.main(["anything"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0
    assert "dataset /x: not found" in err and "Traceback" not in err
