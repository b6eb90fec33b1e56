"""Tokens a batch-invariant compiled runner computes per real token (``backends/sequence_rows``):
each sequence in a row of its own, padded to a multiple of the length step, in calls of a fixed
row count filled with blank rows, for sorted Offline batches of SQuAD dev lengths.

    .venv/bin/python benchmarks/call_shape_waste.py --samples 704,2112,10833

A test run draws few samples (704 at the cpu system's amx target), so a batch's sequences spread
over several length steps and many calls are partly blank; a full-size run's batches hold one
length or two. Compare with the rows the runner is given (``rows``; the run's batch size by
default). "cut to fill calls": the harness's Offline plan for such a runner (``full_call_ends``:
batches end only after full calls or at a length step's end); "every batch size": batches of
``--batch-size`` as they fall in length order.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_main, squad_lengths  # noqa: E402

from packed_bert.backends.sequence_rows import full_call_ends, plan_calls  # noqa: E402
from packed_bert.harness.scheduler import offline_chunks  # noqa: E402


def computed_per_real(
    lengths: np.ndarray, batch_size: int, rows: int, step: int, fill_calls: bool
) -> tuple[float, int, int]:
    """(tokens computed / real tokens, calls, blank rows) over one Offline query of ``lengths``
    in sorted batches of about ``batch_size`` (longest first), cut to fill calls or not."""
    order = np.sort(lengths)[::-1]
    cuts = full_call_ends(order, rows, step) if fill_calls else None
    computed = calls = blanks = 0
    for first, stop in offline_chunks(order.size, batch_size, 1, cuts=cuts):
        for call in plan_calls(order[first:stop, None], rows, step):
            computed += rows * call.length
            calls += 1
            blanks += rows - call.lens.size
    return computed / float(order.sum()), calls, blanks


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", default="704,2112,10833", help="samples per run (drawn from the dev lengths)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rows", default="4,8,16")
    ap.add_argument("--steps", default="16,32")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    lengths = squad_lengths()
    print("| samples | rows | step | batches cut | computed / real tokens | calls | blank rows |")
    print("| ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for count in (int(x) for x in args.samples.split(",")):
        drawn = np.random.default_rng(args.seed).choice(lengths, min(count, lengths.size), replace=False)
        for rows in (int(x) for x in args.rows.split(",")):
            for step in (int(x) for x in args.steps.split(",")):
                for fill in (False, True):
                    ratio, calls, blanks = computed_per_real(drawn, args.batch_size, rows, step, fill)
                    cut = "to fill calls" if fill else "every batch size"
                    print(f"| {drawn.size} | {rows} | {step} | {cut} | {ratio:.3f} | {calls} | {blanks} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
