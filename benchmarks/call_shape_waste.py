"""Tokens a batch-invariant compiled runner computes per real token (``backends/sequence_rows``):
each sequence in a row of its own, padded to a multiple of the length step, in calls of a fixed
row count filled with blank rows, for sorted Offline batches of SQuAD dev lengths.

    .venv/bin/python benchmarks/call_shape_waste.py --samples 704,2112,10833

A test run draws few samples (704 at the cpu system's amx target), so a batch's sequences spread
over several length steps and many calls are partly blank; a full-size run's batches hold one
length or two. Compare with the rows the runner is given (``rows``; the run's batch size by
default).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import squad_lengths  # noqa: E402

from packed_bert.backends.sequence_rows import plan_calls  # noqa: E402


def computed_per_real(lengths: np.ndarray, batch_size: int, rows: int, step: int) -> tuple[float, int]:
    """(tokens computed / real tokens, calls) over sorted batches of ``batch_size`` (longest first)."""
    order = np.sort(lengths)[::-1]
    computed = 0
    calls = 0
    for first in range(0, order.size, batch_size):
        for call in plan_calls(order[first : first + batch_size, None], rows, step):
            computed += rows * call.length
            calls += 1
    return computed / float(order.sum()), calls


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", default="704,2112,10833", help="samples per run (drawn from the dev lengths)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rows", default="4,8,16")
    ap.add_argument("--steps", default="16,32")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    lengths = squad_lengths()
    print("| samples | rows | step | computed / real tokens | calls |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for count in (int(x) for x in args.samples.split(",")):
        drawn = np.random.default_rng(args.seed).choice(lengths, min(count, lengths.size), replace=False)
        for rows in (int(x) for x in args.rows.split(",")):
            for step in (int(x) for x in args.steps.split(",")):
                ratio, calls = computed_per_real(drawn, args.batch_size, rows, step)
                print(f"| {drawn.size} | {rows} | {step} | {ratio:.3f} | {calls} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
