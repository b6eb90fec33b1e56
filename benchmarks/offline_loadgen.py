"""Offline through LoadGen on the CPU: each cpu system recipe's samples/s as a user runs it, against
the matrix peak of its precision read around the run (issue 16's first goal, measured on the
scenario itself rather than on batches timed between probes).

    .venv/bin/python benchmarks/offline_loadgen.py
    .venv/bin/python benchmarks/offline_loadgen.py --models bert-99 --batching packed

Each model runs ``packed-bert run --sut cpu --model MODEL --scenario offline --mode performance``
(a test run, ``--execution valid`` for the full 600 s; ``--sut`` another CPU system, such as a copy of
cpu.toml with other recipes) in its own process, between ``PROBE_READS``
readings of the 2048^3 matmul probe before it and after it, in the runtime that multiplies fastest
at the recipe's precision here (``runtime_comparison.probe_for``). The run's work is the real-token
FLOPs of the samples LoadGen issued (the run's ``sample_tokens``: their tokens and the sum of their
lengths squared); "of the best probe" sets the run's rate against the highest reading, "of the probes
around it" against their mean. ``runtime_comparison.py`` times batches between probes instead,
whose matrices then push the model's weights out of the caches: a lower figure on the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Probe, cpu_label, publish, run_main, split_by_format, work_formats  # noqa: E402
from runtime_comparison import ensure_probes  # noqa: E402
from singlestream import PROBE_READS, cpu_run_between_probes, system_recipe  # noqa: E402


def row(
    model: str, args: argparse.Namespace, threads: int, probes: dict[str, Probe], sticks: dict[str, str]
) -> dict[str, Any]:
    label, _, recipe_precision, options = system_recipe(model, threads, args.sut)
    precision = work_formats(recipe_precision, options)
    parts = list(split_by_format(1.0, 1.0, precision))
    ensure_probes(parts, probes, 2048, threads, sticks)
    more = ["--execution", args.execution, "--weights", args.weights]
    more += ["--batching", args.batching] if args.batching else []
    summary, _, rates = cpu_run_between_probes(model, "offline", more, parts, probes, settle_s=0.5, sut=args.sut)
    toks = summary["sample_tokens"]
    work = split_by_format(float(toks["total"]), float(toks["sum_of_squares"]), precision)
    seconds = summary["samples"] / summary["samples_per_second"]
    best = sum(flops / max(rates[p]) for p, flops in work.items())  # the run's work at the best readings
    mean = sum(flops / (sum(rates[p]) / len(rates[p])) for p, flops in work.items())
    return {
        "recipe": f"{label}, {summary['batching']}, LoadGen {'VALID' if summary['valid'] else 'INVALID'}",
        "samples": summary["samples"],
        "samples_per_s": round(summary["samples_per_second"], 2),
        "gflops": round(sum(work.values()) / seconds / 1e9, 1),
        "best_probe_gflops": round(sum(work.values()) / best / 1e9, 1),
        "mean_probe_gflops": round(sum(work.values()) / mean / 1e9, 1),
        "yardstick": "+".join(sticks[p] for p in work),
        "of_best_probe": round(best / seconds, 3),
        "of_probes_around": round(mean / seconds, 3),
    }


def render(rows: list[dict[str, Any]], args: argparse.Namespace, threads: int) -> str:
    lines = [
        f"Command: `.venv/bin/python benchmarks/offline_loadgen.py --models {args.models}"
        + (f" --sut {args.sut}" if args.sut != "cpu" else "")
        + (f" --batching {args.batching}" if args.batching else "")
        + (f" --execution {args.execution}" if args.execution != "test" else "")
        + "`  ",
        f"CPU: {cpu_label()}, {threads} threads; BERT-Large {args.weights} weights; each recipe through a LoadGen "
        f"Offline {args.execution} run in its own process, {PROBE_READS} probe readings before and after it; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| recipe | samples | samples/s | real-token GFLOP/s | probe best / mean, GFLOP/s (runtime) | of the best probe | of the probes around it |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['recipe']} | {r['samples']} | {r['samples_per_s']} | {r['gflops']:,.0f} | "
            f"{r['best_probe_gflops']:,.0f} / {r['mean_probe_gflops']:,.0f} ({r['yardstick']}) | "
            f"{r['of_best_probe']:.0%} | {r['of_probes_around']:.0%} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="bert-99,bert-99.9")
    ap.add_argument("--sut", default="cpu", help="a CPU system by name or .toml path (default: cpu)")
    ap.add_argument("--batching", choices=("packed", "sorted", "padded"), help="default: the cpu system's")
    ap.add_argument("--execution", choices=("test", "valid"), default="test")
    ap.add_argument("--weights", default="random")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    threads = len(os.sched_getaffinity(0))
    probes: dict[str, Probe] = {}
    sticks: dict[str, str] = {}
    rows = []
    for model in args.models.split(","):
        rows.append(row(model.strip(), args, threads, probes, sticks))
        print(json.dumps(rows[-1]), flush=True)
    publish(render(rows, args, threads), "offline-loadgen", args.write_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
