"""One sample, or one Offline batch, through the cpu system's AMX recipes, kernel by kernel: where
a SingleStream sample's time goes (issue 16, item 4), and an Offline batch's (``--samples``).

    .venv/bin/python benchmarks/amx_phases.py
    .venv/bin/python benchmarks/amx_phases.py --models bert-99,bert-99.9 --lengths 128,268,384 --rounds 3
    .venv/bin/python benchmarks/amx_phases.py --weights ../shared/data/models/minilm-l6-squad --lengths 300
    .venv/bin/python benchmarks/amx_phases.py --models bert-99 --samples 16 --reps 2   # an Offline batch

The kernel library is built with ``-DPB_PHASE_TIMES``: the one-call encoder (``pb_encoder``) then
adds the time of each of a layer's seven kernel calls to a counter (the calls themselves are the
default build's). Each model's runner is the cpu system's SingleStream recipe for this CPU
(``singlestream.system_runner``) with random BERT-Large weights, or a checkpoint (``--weights``:
trained weights, whose attention scores spread much wider than random ones); one row of LEN
random tokens (or ``--samples`` rows, a sorted batch's lengths: neighbours from the middle of the
dev set's, so the rows are padded as little as sorting pads them) runs ``--reps`` times a round,
models alternating over ``--rounds``. Per round: the median batch (``infer``, everything
included), each kernel's mean time per batch (all layers; in brackets how long the first thread
done waited for the last at the ends of its parallel regions), and the linear layers' rate over the
real tokens (2 x tokens x K x N per layer). ``--define NAME=VALUE`` builds a variant of the
kernels (a ``#define`` of ``kernels/amx.c``) to time against the default. Needs a CPU with AMX
tiles.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_label, run_main  # noqa: E402

PHASES = ("Q, K, V", "attention", "attention output", "add+LN 1", "FFN input+GELU", "FFN output", "add+LN 2")


def linear_shapes(config: Any) -> dict[int, tuple[int, int]]:
    """Phase index: (K, N) of the linear layer it runs, for a model of ``config`` (BertConfig)."""
    h, i = config.hidden, config.intermediate
    return {0: (h, 3 * h), 2: (h, h), 4: (h, i), 5: (i, h)}


def random_rows(lengths: Sequence[int], seed: int) -> Any:
    """One sorted batch of a row of random tokens (two segments) per length in ``lengths``."""
    from packed_bert.packing import sorted_batches

    rng = np.random.default_rng(seed)
    width = max(lengths)
    ids = np.zeros((len(lengths), width), np.int32)
    segments = np.zeros_like(ids)
    for i, length in enumerate(lengths):
        ids[i, :length] = rng.integers(1000, 30000, length)
        segments[i, length // 3 : length] = 1
    return sorted_batches(ids, segments, np.array(lengths), len(lengths))[0]


def dev_lengths(samples: int) -> list[int]:
    """The lengths of a sorted Offline batch of ``samples`` from the middle of the SQuAD dev set's
    (benchmarks/data/squad_dev_lengths.npy, sorted): neighbours in length, as sorting groups them."""
    from packed_bert.errors import UserError

    lengths = np.sort(np.load(Path(__file__).resolve().parent / "data" / "squad_dev_lengths.npy"))
    if not 0 < samples <= len(lengths):
        raise UserError(f"amx_phases: --samples {samples}: give 1 to {len(lengths)} (the dev set's features)")
    start = (len(lengths) - samples) // 2
    return [int(x) for x in lengths[start : start + samples]]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="bert-99,bert-99.9")
    ap.add_argument("--sut", default="cpu", help="a CPU system by name or .toml path whose recipes use kernel=amx")
    ap.add_argument("--lengths", default="268", help="tokens of the one row (268: the dev set's p90)")
    ap.add_argument(
        "--samples",
        type=int,
        default=0,
        help="instead of --lengths (0: use --lengths): one sorted batch of this many rows from the middle of the dev set's lengths "
        "(16: an Offline batch of the amx recipes)",
    )
    ap.add_argument("--reps", type=int, default=8, help="samples a round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--define", action="append", default=[], help="a -D NAME[=VALUE] for the kernel build (a variant to time)"
    )
    ap.add_argument("--weights", default="random", help="random BERT-Large weights, or a checkpoint directory")
    args = ap.parse_args(argv)

    import torch

    from packed_bert.backends import amx_kernels
    from packed_bert.backends.cpu_class import runs_own_kernels
    from packed_bert.errors import UserError

    if amx_kernels.tiles_here() is None:
        raise UserError(
            "amx_phases: this CPU has no AMX tiles nor AVX-512 VNNI; the phases are those of packed-bert's kernels"
        )
    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    amx_kernels.build = functools.partial(amx_kernels.build, defines=("PB_PHASE_TIMES", *args.define))  # type: ignore[assignment]
    import ctypes

    from singlestream import system_recipe, system_runner

    count = ctypes.c_int.in_dll(amx_kernels.library(), "pb_phase_count").value
    if count != len(PHASES):
        raise UserError(f"amx_phases: the kernel times {count} phases a layer, this script names {len(PHASES)}")
    counters = (ctypes.c_double * count).in_dll(amx_kernels.library(), "pb_phase_seconds")
    idle = (ctypes.c_double * count).in_dll(amx_kernels.library(), "pb_idle_seconds")
    batches = (  # before the runners are built: a bad --samples ends the run at once
        [random_rows(dev_lengths(args.samples), seed=args.samples)]
        if args.samples
        else [random_rows([int(x)], seed=int(x)) for x in args.lengths.split(",")]
    )
    models = args.models.split(",")
    for model in models:  # the phases are our kernels' counters: another runtime's recipe has none
        label, backend, _, options = system_recipe(model, threads, args.sut)
        if not runs_own_kernels(backend, options):
            raise UserError(
                f"amx_phases: {label} does not run on packed-bert's kernels (torch with kernel=amx); "
                "name a system file whose recipe does with --sut"
            )
    runners = [system_runner(m, args.weights, threads, args.sut) for m in models]
    config = runners[0][2].model.config  # the PackedBertForQA the runner wired
    shapes = linear_shapes(config)
    weights = "random BERT-Large weights" if args.weights == "random" else f"the weights of {args.weights}"
    shape = f"a sorted batch of {args.samples} rows" if args.samples else "one row at a time"
    print(f"{cpu_label()}, {threads} threads; {shape}, {weights}")
    header = (
        "| recipe | tokens | round | batch ms (median) | "
        + " | ".join(f"{phase} (idle)" for phase in PHASES)
        + " | kernels ms | linears, TOP/s over the real rows |"
    )
    print(header)
    print("|" + " --- |" * (len(PHASES) + 6))
    for batch in batches:
        length = int(batch.seq_lens.sum())
        for _label, _precision, runner in runners:
            runner.infer(batch)  # warm: buffers, tiles
        for round_ in range(1, args.rounds + 1):
            for label, _precision, runner in runners:
                for i in range(len(PHASES)):
                    counters[i] = idle[i] = 0.0
                times = []
                for _ in range(args.reps):
                    start = time.perf_counter()
                    runner.infer(batch)
                    times.append(time.perf_counter() - start)
                per_sample = [counters[i] / args.reps * 1e3 for i in range(len(PHASES))]
                waited = [idle[i] / args.reps * 1e3 for i in range(len(PHASES))]
                linear_ops = sum(2.0 * length * k * n * config.layers for k, n in shapes.values())
                linear_ms = sum(per_sample[i] for i in shapes)
                print(
                    f"| {label} | {length} | {round_} | {statistics.median(times) * 1e3:.1f} | "
                    + " | ".join(f"{v:.2f} ({w:.2f})" for v, w in zip(per_sample, waited, strict=True))
                    + f" | {sum(per_sample):.1f} | {linear_ops / linear_ms / 1e9:.2f} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
