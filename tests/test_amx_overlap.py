"""benchmarks/amx_overlap.py: its table from the C loop's lines, and the loop itself on an AMX CPU."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import amx_overlap  # noqa: E402

from packed_bert.backends.amx_kernels import has_amx  # noqa: E402

LINES = [
    ["beside", "short chains", "30.0", "20.0", "31.0"],
    ["beside", "long chains", "30.0", "40.0", "70.0"],
    ["linear", "products alone", "40.0"],
    ["linear", "B from L2", "56.0"],
    ["softmax", "exps from L2", "80.0", "20.0", "110.0"],
]


def test_the_tables_read_both_against_the_larger_alone_and_steps_against_the_products_alone() -> None:
    table = amx_overlap.render(LINES)
    assert "| short chains | 30.0 | 20.0 | 31.0 | 1.03 |" in table
    assert "| long chains | 30.0 | 40.0 | 70.0 | 1.75 |" in table
    assert "| products alone | 40.0 | 1.00x |" in table
    assert "| B from L2 | 56.0 | 1.40x |" in table
    assert "| exps from L2 | 80.0 | 20.0 | 110.0 | 1.38 | 1.10 |" in table  # and against the sum
    assert "class" in table.splitlines()[1]  # the CPU line names the class


@pytest.mark.skipif(not has_amx(), reason="needs a CPU with AMX tiles (the loop runs tile products)")
def test_the_loop_on_this_cpu_times_every_case_and_nothing_beats_its_own_parts() -> None:
    rows = amx_overlap.measure()
    beside = [r for r in rows if r[0] == "beside"]
    steps = [r for r in rows if r[0] == "linear"]
    exps = [r for r in rows if r[0] == "softmax"]
    assert len(beside) == 7 and len(steps) == 4 and len(exps) == 5
    for _, name, tiles, vector, both in beside + exps:
        # one loop doing both cannot take much less than the slower of the two alone
        assert float(both) >= 0.9 * max(float(tiles), float(vector)), name
    alone = float(steps[0][2])
    assert all(float(r[2]) >= 0.9 * alone for r in steps[1:])  # loads never make a step faster
