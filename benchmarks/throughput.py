"""CPU throughput of BERT-Large (random weights, SQuAD dev lengths) per backend, precision and
batching strategy, against the MLPerf reference way (each sample padded to 384, batch 1, torch
fp32), plus the FLOP rate on real tokens against this machine's measured matmul peak.

    .venv/bin/python benchmarks/throughput.py --samples 32 --write-docs

Every variant runs the same samples. Prints a table and a JSON line; ``--write-docs`` puts the
table into docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import real_token_flops, sample_features, write_doc_section  # noqa: E402

from packed_bert.backends import create  # noqa: E402
from packed_bert.backends.peak import ort_peak, torch_peak  # noqa: E402
from packed_bert.packing import PackedBatch, pack_batch, padded_batches, sorted_batches  # noqa: E402

BEGIN, END = "<!-- throughput:begin -->", "<!-- throughput:end -->"
VARIANTS = ("torch:fp32", "torch:bf16", "onnxruntime:fp32", "onnxruntime:int8")
RECIPES = {"bert-99": "onnxruntime:int8", "bert-99.9": "torch:bf16"}


def batches(strategy: str, feats: tuple[np.ndarray, np.ndarray, np.ndarray], rows: int) -> list[PackedBatch]:
    ids, seg, lens = feats
    if strategy == "padded-b1":
        return padded_batches(ids, seg, lens, 1)
    if strategy == "padded":
        return padded_batches(ids, seg, lens, rows)
    if strategy == "sorted":
        return sorted_batches(ids, seg, lens, rows)
    packed = pack_batch(ids, seg, lens)
    return [_slice(packed, s, s + rows) for s in range(0, packed.num_rows, rows)]


def _slice(b: PackedBatch, lo: int, hi: int) -> PackedBatch:
    return PackedBatch(b.input_ids[lo:hi], b.segment_ids[lo:hi], b.position_ids[lo:hi], b.seq_lens[lo:hi], b.sample_index[lo:hi])


def timed(infer: Callable[[PackedBatch], np.ndarray], work: Sequence[PackedBatch]) -> float:
    infer(work[0])  # warm-up (shape-specific setup)
    start = time.perf_counter()
    for b in work:
        infer(b)
    return time.perf_counter() - start


def measure_peaks(threads: int) -> dict[str, float]:
    peaks = {
        "torch:fp32": torch_peak("fp32", n=2048),
        "torch:bf16": torch_peak("bf16", n=2048),
        "onnxruntime:fp32": ort_peak("fp32", n=2048, threads=threads),
        "onnxruntime:int8": ort_peak("int8", n=2048, threads=threads),
    }
    with contextlib.suppress(RuntimeError):
        peaks["torch:int8"] = torch_peak("int8", n=2048)
    return peaks


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=32, help="SQuAD-length samples (same for all variants)")
    ap.add_argument("--rows", type=int, default=8, help="rows per batch (padded, sorted, packed)")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="backend:precision[@static] list (@static: fixed-shape onnxruntime session)")
    ap.add_argument("--strategies", default="padded,sorted,packed")
    ap.add_argument("--skip-reference", action="store_true", help="skip padded batch-1 torch fp32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args(argv)

    import torch

    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    from packed_bert.model.weights import load_model

    feats = sample_features(args.samples, args.seed)
    flops = real_token_flops(feats[2])
    print(f"{args.samples} samples, mean length {feats[2].mean():.1f}, {flops / 1e12:.2f} TFLOP on real tokens, "
          f"{threads} threads, torch {torch.__version__}", flush=True)
    peaks = measure_peaks(threads)
    print("matmul peaks GFLOP/s:", {k: round(v / 1e9, 1) for k, v in peaks.items()}, flush=True)

    results: list[dict[str, object]] = []

    def record(variant: str, strategy: str, secs: float) -> None:
        sps = args.samples / secs
        rate = flops / secs
        row = {"variant": variant, "strategy": strategy, "seconds": round(secs, 2), "samples_per_s": round(sps, 3),
               "gflops_real": round(rate / 1e9, 1), "peak_fraction": round(rate / peaks[variant.split("@")[0]], 3)}
        results.append(row)
        print(json.dumps(row), flush=True)

    base = load_model("random")
    if not args.skip_reference:
        ref = create("torch", base, "fp32", threads=threads)
        record("torch:fp32", "padded-b1", timed(ref.infer, batches("padded-b1", feats, 1)))
    for variant in args.variants.split(","):
        name, _, shape = variant.partition("@")  # "onnxruntime:int8@static": fixed [rows, 384] session
        backend, precision = name.split(":")
        model = load_model("random") if precision != "fp32" and backend == "torch" else base
        opts = {"static_rows": args.rows} if shape == "static" else {}
        runner = create(backend, model, precision, threads=threads, **opts)
        for strategy in args.strategies.split(","):
            if shape == "static" and strategy == "sorted":
                continue  # a fixed-shape session takes only 384-token rows
            record(variant, strategy, timed(runner.infer, batches(strategy, feats, args.rows)))
        del runner

    ref_sps = next((float(r["samples_per_s"]) for r in results if r["strategy"] == "padded-b1"), None)  # type: ignore[arg-type]
    table = render(results, ref_sps, peaks, args, threads)
    print(table)
    print(json.dumps({"results": results, "reference_sps": ref_sps, "peaks_gflops": {k: v / 1e9 for k, v in peaks.items()}}))
    if args.write_docs:
        write_docs(table)
    return 0


def render(results: list[dict[str, object]], ref_sps: float | None, peaks: dict[str, float],
           args: argparse.Namespace, threads: int) -> str:
    lines = [
        f"Command: `.venv/bin/python benchmarks/throughput.py --samples {args.samples} --rows {args.rows}`  ",
        f"Machine: {platform.processor() or platform.machine()}, {threads} threads; BERT-Large random weights; "
        f"{args.samples} SQuAD dev lengths (seed {args.seed}); {time.strftime('%Y-%m-%d')}.",
        "",
        "| backend:precision | batching | samples/s | x padded b1 fp32 | GFLOP/s real tokens | of matmul peak |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        ratio = f"{float(r['samples_per_s']) / ref_sps:.2f}x" if ref_sps else "-"  # type: ignore[arg-type]
        lines.append(f"| {r['variant']} | {r['strategy']} | {r['samples_per_s']} | {ratio} | {r['gflops_real']} | "
                     f"{100 * float(r['peak_fraction']):.0f}% |")  # type: ignore[arg-type]
    lines.append("")
    lines.append("Measured matmul peaks (2048^3, best of 5): " +
                 ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()))
    for model, variant in RECIPES.items():
        best = max((float(r["samples_per_s"]) for r in results if r["variant"] == variant), default=None)  # type: ignore[arg-type]
        if best and ref_sps:
            lines.append(f"- {model} recipe ({variant}): best {best:.3f} samples/s = {best / ref_sps:.2f}x the reference")
    return "\n".join(lines)


def write_docs(table: str) -> None:
    write_doc_section(BEGIN, END, table)


if __name__ == "__main__":
    raise SystemExit(main())
