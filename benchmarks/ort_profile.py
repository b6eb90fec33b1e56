"""Where ONNX Runtime spends a BERT-Large int8 batch: kernel time per operator type, for the
fused and the traced graph, with and without SkipLayerNormalization fusion, on the same
harness Offline batches (BERT-Large random weights, SQuAD dev lengths).

    .venv/bin/python benchmarks/ort_profile.py --write-docs

Uses ONNX Runtime's own profiler (``enable_profiling``); the shares are of summed kernel time.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import real_token_flops, run_main, sample_features, squad_lengths, write_doc_section  # noqa: E402
from throughput import offline_batches, run_lengths  # noqa: E402

from packed_bert.backends.onnx_export import INPUT_NAMES  # noqa: E402
from packed_bert.backends.onnxruntime_backend import DISABLED_OPTIMIZERS, prepare_model  # noqa: E402
from packed_bert.model.weights import load_model  # noqa: E402

BEGIN, END = "<!-- ort-profile:begin -->", "<!-- ort-profile:end -->"
CONFIGS = (("traced", False), ("traced", True), ("fused", False), ("fused", True))


def profile(
    path: Path, feeds: list[dict[str, np.ndarray]], skip_ln_fusion_off: bool, threads: int
) -> tuple[float, dict[str, float]]:
    """(wall seconds of one pass, kernel seconds per operator type) with the profiler on."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.enable_profiling = True
    opts.profile_file_prefix = f"/tmp/packed_bert_ort_profile_{os.getpid()}"
    disabled = DISABLED_OPTIMIZERS if skip_ln_fusion_off else None
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    sess.run(None, feeds[0])  # warm-up, profiled too: dropped below by taking only the timed pass's share
    start = time.perf_counter()
    for f in feeds:
        sess.run(None, f)
    wall = time.perf_counter() - start
    trace = Path(sess.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    first_end = runs[0]["ts"] + runs[0]["dur"]  # the warm-up run
    per_op: collections.Counter[str] = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= first_end:
            per_op[e["args"]["op_name"]] += e["dur"] / 1e6
    return wall, dict(per_op)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--strategy", default="sorted")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    threads = len(os.sched_getaffinity(0))
    work = offline_batches(args.strategy, sample_features(squad_lengths().size, 0), args.batch_size, args.batches, 0)
    feeds = [{n: np.ascontiguousarray(getattr(b, n), dtype=np.int32) for n in INPUT_NAMES} for b in work]
    flops = real_token_flops(run_lengths(work))
    model = load_model("random")
    rows = []
    for graph, off in CONFIGS:
        wall, per_op = profile(prepare_model(model, "int8", "dynamic", graph=graph), feeds, off, threads)
        rows.append((graph, off, wall, per_op))
        print(
            f"{graph} skip-LN fusion {'off' if off else 'on'}: {wall:.2f} s, {flops / wall / 1e9:.0f} GFLOP/s real",
            flush=True,
        )
    table = render(rows, args, flops)
    print(table)
    if args.write_docs:
        write_doc_section(BEGIN, END, table)
    return 0


def render(rows: list[tuple[str, bool, float, dict[str, float]]], args: argparse.Namespace, flops: float) -> str:
    ops = sorted({op for *_, per_op in rows for op in per_op}, key=lambda op: -max(r[3].get(op, 0.0) for r in rows))
    ops = [op for op in ops if max(r[3].get(op, 0.0) / sum(r[3].values()) for r in rows) >= 0.005]
    head = [f"{g}, SkipLN fusion {'off' if off else 'on'}" for g, off, *_ in rows]
    lines = [
        f"Command: `.venv/bin/python benchmarks/ort_profile.py --batches {args.batches} --batch-size {args.batch_size} "
        f"--strategy {args.strategy}`; BERT-Large random weights, int8 (dynamic), {time.strftime('%Y-%m-%d')}.",
        "",
        "| operator (share of kernel time) | " + " | ".join(head) + " |",
        "| --- |" + " ---: |" * len(rows),
    ]
    for op in ops:
        cells = [f"{100 * r[3].get(op, 0.0) / sum(r[3].values()):.1f}%" if op in r[3] else "-" for r in rows]
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    lines.append("| **pass, wall seconds** | " + " | ".join(f"{r[2]:.2f} s" for r in rows) + " |")
    lines.append("| **GFLOP/s on real tokens** | " + " | ".join(f"{flops / r[2] / 1e9:.0f}" for r in rows) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(run_main(main))
