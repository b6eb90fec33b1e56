"""The benchmarks' entry point (``benchmarks/common.run_main``): bad input is one line, not a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from packed_bert.errors import UserError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from common import run_main  # noqa: E402


def test_a_user_error_is_one_line_on_stderr_and_its_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    def main() -> int:
        raise UserError("/nowhere/dev.json: SQuAD dev set not found;\n  pass --dataset PATH")

    assert run_main(main) == UserError("x").exit_code != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: /nowhere/dev.json: SQuAD dev set not found; pass --dataset PATH" in err
    assert run_main(lambda: 0) == 0


def test_other_errors_still_raise() -> None:
    def main() -> int:
        raise ValueError("a bug, not bad input")

    with pytest.raises(ValueError):
        run_main(main)
