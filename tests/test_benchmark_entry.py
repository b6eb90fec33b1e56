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


def test_the_work_of_a_run_from_its_token_totals_is_the_work_of_its_lengths() -> None:
    """A LoadGen run records its samples' token total and sum of squared lengths; the FLOPs from
    those equal the FLOPs counted length by length, split by format the same way."""
    import numpy as np
    from common import flops_by_format, real_token_flops, split_by_format, token_flops

    lengths = np.array([17, 164, 270, 384, 384, 95])
    total, squares = float(lengths.sum()), float((lengths.astype(np.int64) ** 2).sum())
    by_hand = sum(24 * n * (2 * (4 * 1024**2 + 2 * 1024 * 4096) + 4 * 1024 * n) for n in lengths.tolist())
    assert real_token_flops(lengths) == token_flops(total, squares) == by_hand
    mixed = split_by_format(total, squares, "int8-bf16")
    assert mixed == flops_by_format(lengths, "int8-bf16") and sum(mixed.values()) == by_hand
    assert mixed["bf16"] == 24 * 2 * 1024 * 4096 * total  # the FFN output layer
    assert split_by_format(total, squares, "int8") == {"int8": by_hand}


def test_int8_bf16_with_its_kept_layers_in_int12_counts_them_as_int12_work() -> None:
    """kept=int12 runs int8-bf16's FFN output layer on 12-bit x int8 products: its FLOPs are
    measured against the int12 layer's yardstick, not bf16's; other options change nothing."""
    import numpy as np
    from common import flops_by_format, work_formats

    assert work_formats("int8-bf16", {"kept": "int12", "kernel": "amx"}) == "int8-int12"
    assert work_formats("int8-bf16", {"kernel": "amx", "attention": "int8-scores"}) == "int8-bf16"
    assert work_formats("int8", {"kept": "int12"}) == "int8"  # the backend refuses it; the work is int8's
    assert work_formats("int8-bf16", {"kept": "int8-rows"}) == "int8"  # every layer on int8 products
    assert work_formats("int8-bf16", {"kept": "int8-hybrid"}) == "int8"
    lengths = np.array([285])
    kept = flops_by_format(lengths, "int8-int12")
    assert kept == {"int8": flops_by_format(lengths, "int8-bf16")["int8"], "int12": 24 * 2 * 1024 * 4096 * 285.0}
