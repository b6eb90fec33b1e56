"""Where OpenVINO spends a BERT-Large batch: time per layer type and kernel, from the plugin's own
per-node counters (``PERF_COUNT``), for the cpu system's OpenVINO recipes on the harness's
Offline batches (BERT-Large random weights, real SQuAD dev lengths).

    .venv/bin/python benchmarks/ov_profile.py --recipes "openvino:int8,openvino:bf16" --write-docs

Recipes are spelled as ``recipe_accuracy.py`` spells them, OpenVINO's only:
``openvino:PRECISION[@mask]`` (``openvino:int8`` is the static SmoothQuant recipe). Shares are of the summed
node time over one timed pass (after a warm-up pass over the same batches); the wall time of that
pass and its rate on real-token FLOPs are printed beside them. The section is kept per CPU class.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    cpu_label,
    publish,
    real_token_flops,
    run_main,
    sample_features,
    squad_lengths,
)
from recipe_accuracy import make_runner  # noqa: E402
from throughput import offline_batches, run_lengths  # noqa: E402

MIN_SHARE = 0.005  # rows under half a percent in every recipe are summed into "other"


def profile(recipe: str, work: list, threads: int) -> tuple[float, dict[str, float]]:
    """(wall seconds of the timed pass, node seconds per 'layer type / kernel')."""
    runner = make_runner(recipe, "random", threads, perf_count=True)
    for batch in work:  # warm-up: first calls at a shape cost more
        runner.infer(batch)
    per_node: collections.defaultdict[str, float] = collections.defaultdict(float)
    wall = 0.0
    for batch in work:
        start = time.perf_counter()
        runner.infer(batch)
        wall += time.perf_counter() - start
        for layer, kernel, seconds in runner.node_times():
            per_node[f"{layer} / {kernel}"] += seconds
    return wall, dict(per_node)


def render(rows: list[tuple[str, float, dict[str, float]]], args: argparse.Namespace, flops: float) -> str:
    shares = [{k: v / sum(per.values()) for k, v in per.items()} for _, _, per in rows]
    keys = sorted({k for s in shares for k in s}, key=lambda k: -max(s.get(k, 0.0) for s in shares))
    shown = [k for k in keys if max(s.get(k, 0.0) for s in shares) >= MIN_SHARE]
    lines = [
        f'Command: `.venv/bin/python benchmarks/ov_profile.py --recipes "{args.recipes}" --batches {args.batches} '
        f"--batch-size {args.batch_size} --strategy {args.strategy}`  ",
        f"CPU: {cpu_label()}, {args.threads} threads; BERT-Large random weights, the harness's Offline batches of "
        f"{args.batch_size} ({args.strategy}), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| layer type / kernel (share of node time) | " + " | ".join(r for r, *_ in rows) + " |",
        "| --- |" + " ---: |" * len(rows),
    ]
    for k in shown:
        lines.append(f"| {k} | " + " | ".join(f"{100 * s[k]:.1f}%" if k in s else "-" for s in shares) + " |")
    other = [sum(v for k, v in s.items() if k not in shown) for s in shares]
    lines.append("| other | " + " | ".join(f"{100 * o:.1f}%" for o in other) + " |")
    lines.append("| **pass, wall seconds** | " + " | ".join(f"{w:.2f} s" for _, w, _ in rows) + " |")
    lines.append("| **GFLOP/s on real tokens** | " + " | ".join(f"{flops / w / 1e9:.0f}" for _, w, _ in rows) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipes", default="openvino:int8,openvino:bf16")
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--strategy", default="sorted")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    recipes = [r.strip() for r in args.recipes.split(",")]
    other = [r for r in recipes if not r.startswith("openvino:")]
    if other:
        raise SystemExit(f"ov_profile: {', '.join(other)}: not OpenVINO recipes; spell them openvino:PRECISION[@mask]")
    args.threads = len(os.sched_getaffinity(0))
    work = offline_batches(args.strategy, sample_features(squad_lengths().size, 0), args.batch_size, args.batches, 0)
    flops = real_token_flops(run_lengths(work))
    rows = []
    for recipe in recipes:
        wall, per_node = profile(recipe, work, args.threads)
        rows.append((recipe, wall, per_node))
        print(f"{recipe}: {wall:.2f} s, {flops / wall / 1e9:.0f} GFLOP/s on real tokens", flush=True)
    publish(render(rows, args, flops), "ov-profile", args.write_docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
