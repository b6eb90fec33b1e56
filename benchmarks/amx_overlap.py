"""Where AMX tile products wait, on one core: vector work beside them, and the linear kernel's step.

    .venv/bin/python benchmarks/amx_overlap.py
    .venv/bin/python benchmarks/amx_overlap.py --write-docs

Builds ``benchmarks/amx_overlap.c`` with the system C compiler (-march=native) and runs it on one
core. The first table: four bf16 tile products on registers, a kind of vector work, and both in
one loop, in rdtsc ticks a loop; where "both" reads the larger of the two alone, the vector work
hid under the tiles, where it reads their sum, it did not (docs/performance.md, "What stops
SingleStream"). The second: the linear kernel's 2x2 step (two A tiles, two B tiles, four int8
products) over one thread's share of a 274-row Q|K|V layer, its operands from L1 or L2, against
the four products on registers. The third: the softmax's exps beside that step (could a head's
softmax run under the Q|K|V layer's tiles instead of its own?), its scores from a block that stays
in L1 or from one head's whole score buffer, which does not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_label, publish, run_main  # noqa: E402

from packed_bert.backends.amx_kernels import c_compiler, has_amx  # noqa: E402
from packed_bert.errors import UserError  # noqa: E402

SOURCE = Path(__file__).with_name("amx_overlap.c")


def measure() -> list[list[str]]:
    """The C program's lines, split at '|': ("beside", name, tiles, vector, both), ("linear",
    name, ticks a step) or ("softmax", name, linear steps, exps, both)."""
    compiler = c_compiler()
    if compiler is None:
        raise UserError("amx_overlap: no C compiler (cc, gcc or clang) on PATH; install gcc 11+")
    with tempfile.TemporaryDirectory() as tmp:
        binary = Path(tmp) / "amx_overlap"
        built = subprocess.run(
            [compiler, "-O2", "-march=native", str(SOURCE), "-o", str(binary)], capture_output=True, text=True
        )
        if built.returncode:
            first = (built.stderr.strip().splitlines() or ["no message"])[0]
            raise UserError(f"amx_overlap: {compiler} could not build {SOURCE.name} ({first}); install gcc 11+")
        core = min(os.sched_getaffinity(0))
        ran = subprocess.run(["taskset", "-c", str(core), str(binary)] if shutil.which("taskset") else [str(binary)],
                             capture_output=True, text=True)  # fmt: skip
        if ran.returncode:
            raise UserError(f"amx_overlap: the loop failed ({ran.stderr.strip() or ran.returncode})")
    return [line.split("|") for line in ran.stdout.splitlines() if "|" in line]


def side_by_side(rows: list[list[str]], kind: str, header: str, alone: tuple[str, str], with_sum: bool) -> list[str]:
    """The table of the C program's `kind` lines: each work alone, both in one loop, and both over
    the larger alone (and over the sum of both)."""
    lines = [
        "",
        f"| {header} | {alone[0]} | {alone[1]} | both | both / larger alone |" + (" both / sum |" if with_sum else ""),
        "| --- |" + " ---: |" * (5 if with_sum else 4),
    ]
    for row in (r for r in rows if r[0] == kind):
        a, b, both = (float(v) for v in row[2:5])
        cells = f"| {row[1]} | {a:.1f} | {b:.1f} | {both:.1f} | {both / max(a, b):.2f} |"
        lines.append(cells + (f" {both / (a + b):.2f} |" if with_sum else ""))
    return lines


def render(rows: list[list[str]]) -> str:
    """The three tables, with the CPU and the time."""
    lines = [
        "Command: `.venv/bin/python benchmarks/amx_overlap.py`  ",
        f"CPU: {cpu_label()}, one core; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
    ]
    beside = "vector work a loop, beside four bf16 tile products"
    lines += side_by_side(rows, "beside", beside, ("products alone", "vector alone"), with_sum=False)
    lines += [
        "",
        "| the linear kernel's 2x2 step (one thread's share of a 274-row Q, K, V layer) | ticks a step | of four products on registers |",
        "| --- | ---: | ---: |",
    ]  # fmt: skip
    steps = [r for r in rows if r[0] == "linear"]
    products = float(steps[0][2])  # the first: the products alone
    for row in steps:
        ticks = float(row[2])
        lines.append(f"| {row[1]} | {ticks:.1f} | {ticks / products:.2f}x |")
    exps = "softmax exps (of 16 scores) beside each step of the kernel's loads"
    lines += side_by_side(rows, "softmax", exps, ("steps alone", "exps alone"), with_sum=True)
    lines += ["", "Ticks: rdtsc counts, the best of 20 runs (10 in the third table): a loop of the first table (2,000 a run), a step of the second and third (6,912 a run)."]  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    if not has_amx():
        raise UserError("amx_overlap: this CPU has no AMX tiles; the benchmark is for AMX machines")
    publish(render(measure()), "amx-overlap", args.write_docs)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
