"""CPU runtimes side by side: ONNX Runtime, OpenVINO and PyTorch (eager, torch.compile, the
batch-invariant path), each in the precisions it offers, on the same BERT-Large weights and the
same packed and sorted batches of real SQuAD features, each against its precision's matrix
peak measured beside it.

    .venv/bin/python benchmarks/runtime_comparison.py --write-docs
    .venv/bin/python benchmarks/runtime_comparison.py --quick      # smoke run: tiny model, 1 batch

The batches are the harness's own Offline batches (``throughput.offline_batches``) of the real
SQuAD v1.1 dev features (``squad.features.load_features``), ``--batches`` evenly spaced through
the run per strategy; every variant runs the same ones. Every batch sits between two short
probes of a 2048^3 matmul at the variant's precision (``throughput.timed``), in whichever runtime
multiplies fastest at that precision on this machine (``matmul_peak.fastest_matmul``: torch,
ONNX Runtime or OpenVINO; the table names it); "of peak beside" is the batches' real-token FLOPs
over the sum of each batch's seconds times the mean of its two probes. The table names the CPU
model and its matrix flags, since the winner depends on them.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    CompositeProbe,
    Probe,
    class_markers,
    cpu_label,
    flops_by_format,
    run_main,
    work_formats,
    write_doc_section,
)
from throughput import offline_batches, run_lengths, timed  # noqa: E402

from packed_bert.backends import create  # noqa: E402
from packed_bert.backends.cpu_class import CAP_VARIABLES, ignores_cap  # noqa: E402
from packed_bert.backends.devices import CALIBRATING_BACKENDS  # noqa: E402
from packed_bert.backends.matmul_peak import MatmulProbe, fastest_matmul  # noqa: E402
from packed_bert.packing import PackedBatch  # noqa: E402
from packed_bert.squad.calibration import load_calibration  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Variant:
    """One runtime and recipe: ``create(backend, ..., precision, **options)``."""

    label: str
    backend: str
    precision: str
    options: dict[str, Any] = field(default_factory=dict)
    note: str = ""


VARIANTS = (
    Variant(
        "onnxruntime fp32",
        "onnxruntime",
        "fp32",
        note="fused Attention graph; both models on a CPU of the other class (no measured table)",
    ),
    Variant(
        "onnxruntime int8 rows",
        "onnxruntime",
        "int8",
        {"quant": "rows"},
        "per-token scales, 99.81% of fp32 F1, batch-invariant",
    ),
    Variant(
        "onnxruntime int8 dynamic",
        "onnxruntime",
        "int8",
        {"quant": "dynamic"},
        "one scale per batch tensor: 98.9% F1, depends on batch-mates (not a recipe)",
    ),
    Variant(
        "openvino fp32", "openvino", "fp32", {"attention": "mask"}, "same ONNX graph (Attention over the masked row)"
    ),
    Variant("openvino bf16", "openvino", "bf16", {"attention": "mask"}, "same graph, bf16 inference precision"),
    Variant(
        "openvino int8 weights",
        "openvino",
        "int8",
        {"attention": "mask", "quant": "weights", "dynamic_quant": 0},
        "int8 weights per column, bf16 activations",
    ),
    Variant(
        "openvino int8 dq32",
        "openvino",
        "int8",
        {"quant": "weights", "dynamic_quant": 32, "attention": "mask"},
        "int8 weights, activations quantized per token in groups of 32",
    ),
    Variant("onnxruntime fp32 seq", "onnxruntime", "fp32", {"graph": "sequence"}, "attention per sequence"),
    Variant(
        "onnxruntime int8 rows seq",
        "onnxruntime",
        "int8",
        {"quant": "rows", "graph": "sequence"},
        "per-token int8, attention per sequence",
    ),
    Variant(
        "openvino fp32 seq",
        "openvino",
        "fp32",
        {"attention": "sequence"},
        "attention per sequence, bit-exact in any batch",
    ),
    Variant(
        "openvino bf16 seq",
        "openvino",
        "bf16",
        {"attention": "sequence"},
        "attention per sequence: bit-exact in any batch; the avx512-bf16 bert-99.9 default",
    ),
    Variant(
        "openvino int8 dq256 seq",
        "openvino",
        "int8",
        {"quant": "weights", "dynamic_quant": 256, "attention": "sequence"},
        "int8 weights, activations quantized per token in groups of 256, attention per sequence",
    ),
    Variant(
        "openvino int8 dq4096 seq",
        "openvino",
        "int8",
        {"quant": "weights", "dynamic_quant": 4096, "attention": "sequence"},
        "int8 weights, one activation scale per token on every layer, attention per sequence",
    ),
    Variant(
        "openvino int8 per-token seq",
        "openvino",
        "int8",
        {"attention": "sequence", "quant": "weights"},
        "int8 weights, activations quantized per token (groups of 1024), attention per sequence; 99.857% of fp32 F1",
    ),
    Variant(
        "openvino int8 qdq seq",
        "openvino",
        "int8",
        {"attention": "sequence", "quant": "qdq"},
        "static int8: fixed activation scales calibrated on the 100 calibration questions, attention per sequence; "
        "98.1% of fp32 F1 (not a recipe)",
    ),
    Variant(
        "openvino int8 smoothquant seq",
        "openvino",
        "int8",
        {"attention": "sequence", "quant": "smoothquant"},
        "static int8 after SmoothQuant (alpha 0.8), calibrated on the 100 calibration questions, attention per "
        "sequence; 99.59-99.64% of fp32 F1; the avx512-bf16 bert-99 default",
    ),
    Variant(
        "openvino int8-fp32 seq",
        "openvino",
        "int8-fp32",
        {"attention": "sequence"},
        "the SmoothQuant int8 graph with the FFN output layers in fp32 (smoothquant-mixed), attention per sequence; "
        "the avx512-vnni bert-99.9 default until 2026-12-06",
    ),
    Variant(
        "openvino int8-bf16 seq",
        "openvino",
        "int8-bf16",
        {"attention": "sequence"},
        "the SmoothQuant int8 graph with the FFN output layers in bf16 (smoothquant-mixed), attention per sequence",
    ),
    Variant(
        "onnxruntime int8 smoothquant seq",
        "onnxruntime",
        "int8",
        {"quant": "smoothquant", "graph": "sequence"},
        "OpenVINO's static int8 graph (SmoothQuant, QuantizeLinear/DequantizeLinear pairs) in ONNX Runtime, "
        "attention per sequence",
    ),
    Variant(
        "onnxruntime int8 smoothquant seq-ort",
        "onnxruntime",
        "int8",
        {"quant": "smoothquant", "graph": "sequence-ort"},
        "the same SmoothQuant int8 in ONNX Runtime's own operators: MatMulIntegerToFloat with the bias inside, "
        "MultiHeadAttention on blocks cut per batch",
    ),
    Variant(
        "onnxruntime fp32 seq-ort",
        "onnxruntime",
        "fp32",
        {"graph": "sequence-ort"},
        "fp32, attention per sequence in MultiHeadAttention on blocks cut per batch",
    ),
    Variant(
        "torch int8 smoothquant seq",
        "torch",
        "int8",
        {},
        "static int8 in oneDNN's u8 x s8 kernels with OpenVINO's SmoothQuant factors and grids, bf16 attention "
        "per sequence, batch-invariant",
    ),
    Variant(
        "torch int8 amx kernel",
        "torch",
        "int8",
        {"kernel": "amx", "residual": "bf16"},
        "the same recipe in packed-bert's own AMX kernel (quantize, int8 tiles, scales, bias, GELU in one call), "
        "bf16 attention per sequence, the residual stream in bf16, batch-invariant: the amx bert-99 default; AMX "
        "CPUs, or AVX-512 VNNI ones on soft tiles",
    ),
    Variant(
        "torch int8-bf16 amx kernel",
        "torch",
        "int8-bf16",
        {"kernel": "amx", "residual": "bf16"},
        "the int8 amx recipe with the FFN output layer in bf16 (fp32 sums): the amx bert-99.9 default until the "
        "thirty-fourth session; AMX CPUs, or AVX-512 VNNI ones on soft tiles",
    ),
    Variant(
        "torch int8-bf16 amx kernel hybrid",
        "torch",
        "int8-bf16",
        {"kernel": "amx", "residual": "bf16", "kept": "int8-hybrid"},
        "the int8 amx recipe whose FFN output layer reads 8-bit inputs after SmoothQuant (alpha per layer) on a "
        "fixed grid per layer, the rows past it on their own: int8 products throughout, the amx bert-99.9 default; "
        "AMX CPUs, or AVX-512 VNNI ones on soft tiles",
    ),
    Variant(
        "torch bf16 amx kernel",
        "torch",
        "bf16",
        {"kernel": "amx"},
        "bf16 weights and inputs, fp32 sums, in packed-bert's own AMX kernels (linear with bias and GELU, "
        "attention per sequence, add+LayerNorm), batch-invariant; AMX CPUs, or AVX-512 VNNI ones on soft tiles",
    ),
    Variant("torch fp32 eager", "torch", "fp32", {"batch_invariant": False}, "SDPA over the masked row"),
    Variant("torch bf16 eager", "torch", "bf16", {"batch_invariant": False}, "SDPA over the masked row"),
    Variant(
        "torch bf16 invariant",
        "torch",
        "bf16",
        {},
        "512-row tiles, per-sequence attention; bert-99 on the other class until 2026-12-05",
    ),
    # last: inductor leaves compile workers behind
    Variant(
        "torch bf16 compile",
        "torch",
        "bf16",
        {"batch_invariant": False, "compile": True},
        "torch.compile(dynamic=True), inductor",
    ),
    Variant(
        "torch bf16 frozen",
        "torch",
        "bf16",
        {"batch_invariant": False, "compile": True, "freezing": True},
        "torch.compile(dynamic=True) with Inductor's freezing: weights packed once for oneDNN, bias and GELU "
        "fused into the matmuls; not batch-invariant",
    ),
    Variant(
        "torch bf16 frozen fixed",
        "torch",
        "bf16",
        {"compile": True, "freezing": True},
        "the frozen model with every sequence in a row of its own, in calls of 16 rows of one 16-token length "
        "step: batch-invariant",
    ),
)
NOT_OFFERED = (
    "onnxruntime bf16 (no bf16 CPU kernels for the graph's MatMul/Attention)",
    "torch int8 with per-token scales (static int8 only: `torch int8 smoothquant seq`)",
)


def real_features(quick: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, segments, lengths) of the SQuAD dev features (``--quick``: synthetic ones, no data)."""
    if quick:
        from common import sample_features

        return sample_features(2000, 0)
    os.environ.setdefault("PACKED_BERT_SQUAD", str(SHARED / "squad" / "dev-v1.1.json"))
    os.environ.setdefault("PACKED_BERT_VOCAB", str(SHARED / "vocab" / "bert-uncased-vocab.txt"))
    from packed_bert.squad.features import load_features

    f = load_features()
    return f.input_ids.astype(np.int32), f.segment_ids.astype(np.int32), f.lengths.astype(np.int64)


def quick_calibration(feats: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Callable[[], dict[str, np.ndarray]]:
    """``--quick``: the first 100 synthetic features stand in for the calibration questions."""
    ids, seg, lens = feats
    return lambda: {"input_ids": ids[:100], "segment_ids": seg[:100], "lengths": lens[:100]}


def ensure_probes(
    formats: Iterable[str], probes: dict[str, Probe], n: int, threads: int, yardsticks: dict[str, str]
) -> None:
    """One probe per number format (a mixed recipe has two) in ``probes``, each built once."""
    for part in formats:
        if part not in probes:
            probes[part] = probe_for(part, n, threads, yardsticks)


def probe_for(
    precision: str,
    n: int,
    threads: int,
    yardsticks: dict[str, str],
    lengths: np.ndarray | None = None,
    probes: dict[str, Probe] | None = None,
) -> Probe:
    """The yardstick of ``precision``: the fastest runtime's matmul here (recorded in ``yardsticks``);
    for a recipe mixing formats (int8-bf16), each format's, weighted by its share of the FLOPs of
    ``lengths`` (``common.flops_by_format``), taken from ``probes`` (the run's, per format) where
    the run has one and added to it otherwise."""
    parts = flops_by_format(np.array([384]) if lengths is None else lengths, precision)
    if len(parts) > 1:
        total = sum(parts.values())
        per_format = {} if probes is None else probes
        ensure_probes(parts, per_format, n, threads, yardsticks)
        yardsticks[precision] = "+".join(yardsticks[p] for p in parts)
        return CompositeProbe({p: per_format[p] for p in parts}, {p: flops / total for p, flops in parts.items()})
    runtime, matmul = fastest_matmul(precision, n, threads)
    yardsticks[precision] = runtime
    print(f"{precision} yardstick: {runtime}'s matmul", flush=True)
    return MatmulProbe(matmul, n)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-size", type=int, default=16, help="samples per Offline batch (the cpu system's)")
    ap.add_argument("--batches", type=int, default=3, help="batches timed per strategy and variant")
    ap.add_argument("--strategies", default="sorted,packed")
    ap.add_argument("--variants", default="", help="comma list of labels, in order, repeats allowed (default: all)")
    ap.add_argument("--weights", default="random", help="random (BERT-Large shape) | tiny | a checkpoint path")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny model, synthetic features, 1 batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args(argv)

    import torch

    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    weights = "tiny" if args.quick else args.weights
    count = 1 if args.quick else args.batches
    n = 512 if args.quick else 2048
    by_label = {v.label: v for v in VARIANTS}
    unknown = [x for x in args.variants.split(",") if x and x not in by_label]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(by_label)}")
    wanted = [by_label[x] for x in args.variants.split(",")] if args.variants else list(VARIANTS)  # repeats alternate
    feats = real_features(args.quick)
    strategies = args.strategies.split(",")
    work: dict[str, list[PackedBatch]] = {
        s: offline_batches(s, feats, args.batch_size, count, args.seed) for s in strategies
    }
    lengths = {s: run_lengths(w) for s, w in work.items()}
    cpu = cpu_label()
    print(f"{cpu}, {threads} threads, weights {weights}")
    for s, w in work.items():
        slots = sum(b.input_ids.size for b in w)
        print(f"  {s}: {len(w)} batches, {lengths[s].size} samples, token efficiency {lengths[s].sum() / slots:.3f}")

    from packed_bert.model.weights import load_model

    base = load_model(weights)
    calibration = quick_calibration(feats) if args.quick else load_calibration  # for the variants that calibrate
    probes: dict[str, Probe] = {}
    yardsticks: dict[str, str] = {}
    results: list[dict[str, Any]] = []
    for v in wanted:
        if ignores_cap(v.backend, v.precision):  # emulating a class: it would run this CPU's kernels
            note = f"ignores {'/'.join(CAP_VARIABLES)} (its kernels would be this CPU's, not the capped ISA's)"
            print(f"{v.label}: not run ({note})", flush=True)
            results.append({"variant": v.label, "error": note, "note": v.note})
            continue
        start = time.perf_counter()
        try:
            extra: dict[str, Any] = {"calibration": calibration} if v.backend in CALIBRATING_BACKENDS else {}
            runner = create(v.backend, base, v.precision, threads=threads, **extra, **v.options)
        except Exception as exc:  # a runtime that cannot build this variant here: say so, go on
            print(f"{v.label}: not run ({type(exc).__name__}: {str(exc)[:200]})", flush=True)
            results.append({"variant": v.label, "error": f"{type(exc).__name__}: {str(exc)[:120]}", "note": v.note})
            continue
        setup = time.perf_counter() - start
        formats = work_formats(v.precision, v.options)  # the yardstick's: int8 where kept layers run int8 products
        probe = probes.get(formats) or probes.setdefault(
            formats, probe_for(formats, n, threads, yardsticks, np.concatenate(list(lengths.values())), probes)
        )
        for s in strategies:
            t = timed(runner.infer, work[s], 1, probe)
            row = {
                "variant": v.label,
                "backend": v.backend,
                "precision": v.precision,
                "formats": formats,
                "strategy": s,
                "samples": int(lengths[s].size),
                "seconds": round(t.seconds, 2),
                "samples_per_s": round(lengths[s].size / t.seconds, 3),
                "peak_beside_gflops": round(t.peak_seconds / t.seconds / 1e9, 1) if t.seconds else 0.0,
                "of_peak_beside": round(t.local_fraction or 0.0, 3),
                "gflops": round(t.flops / t.seconds / 1e9, 1) if t.seconds else 0.0,
                "best_probe_gflops": round(t.best_rate / 1e9, 1),
                "setup_s": round(setup, 1),
                "note": v.note,
            }
            results.append(row)
            print(json.dumps(row), flush=True)
        del runner
        gc.collect()
    run_peaks = run_peak_fractions(results)
    table = render(results, args, cpu, threads, weights, yardsticks, run_peaks)
    print(table)
    print(json.dumps({"cpu": cpu, "yardsticks": yardsticks, "results": results}))
    if args.write_docs and not args.quick:
        write_doc_section(*class_markers("runtime-comparison"), table)
    return 0


def run_peak_fractions(results: list[dict[str, Any]]) -> dict[str, float]:
    """Per format a recipe's work runs in (its precision, or int8 where its kept layers run int8
    products: ``common.work_formats``), the highest probe reading of the whole run (FLOP/s): a
    yardstick no slow probe lowers. Each row gets ``of_run_peak``: its real-token FLOP rate over that peak."""
    peaks: dict[str, float] = {}
    for r in results:
        if "error" not in r:
            peaks[r["formats"]] = max(peaks.get(r["formats"], 0.0), 1e9 * r["best_probe_gflops"])
    for r in results:
        if "error" not in r and peaks.get(r["formats"]):
            r["of_run_peak"] = round(1e9 * r["gflops"] / peaks[r["formats"]], 3)
    return peaks


def render(
    results: list[dict[str, Any]],
    args: argparse.Namespace,
    cpu: str,
    threads: int,
    weights: str,
    yardsticks: dict[str, str],
    run_peaks: dict[str, float],
) -> str:
    argv = " ".join(a for a in sys.argv[1:] if a != "--write-docs")
    lines = [
        f"Command: `.venv/bin/python benchmarks/runtime_comparison.py {argv}`  ",
        f"CPU: {cpu}, {threads} threads; weights {weights} (BERT-Large shape unless tiny); the harness's Offline "
        f"batches of the real SQuAD dev features at batch size {args.batch_size}, {args.batches} per strategy; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| runtime and recipe | precision | batching | samples | samples/s | peak beside, GFLOP/s | of peak beside "
        "| of the run's peak | packed / sorted | what it is |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    last_sorted: dict[str, float] = {}  # the variant's sorted rate of the same pass (rows come sorted, then packed)
    for r in results:
        if "error" in r:
            lines.append(f"| {r['variant']} | - | - | - | - | - | - | - | - | not run: {r['error']} |")
            continue
        if r["strategy"] == "sorted":
            last_sorted[r["variant"]] = r["samples_per_s"]
        ratio = (
            f"{r['samples_per_s'] / last_sorted[r['variant']]:.2f}"
            if r["strategy"] == "packed" and last_sorted.get(r["variant"])
            else ""
        )
        lines.append(
            f"| {r['variant']} | {r['precision']} | {r['strategy']} | {r['samples']} | {r['samples_per_s']} | "
            f"{r['peak_beside_gflops']:.0f} | {100 * r['of_peak_beside']:.0f}% | "
            f"{100 * r.get('of_run_peak', 0.0):.0f}% | {ratio} | {r['note']} |"
        )
    lines += [
        "",
        "Not offered: " + "; ".join(NOT_OFFERED) + ".",
        "Peak beside: the mean rate of the 2048^3 matmul probes around each batch, weighted by the batch's "
        "time, in the runtime that multiplies fastest at that precision here ("
        + ", ".join(f"{p}: {r}" for p, r in yardsticks.items())
        + "). The run's peak: the highest of those probes in the whole run ("
        + ", ".join(f"{p}: {v / 1e9:,.0f} GFLOP/s" for p, v in run_peaks.items())
        + "), which a slow probe cannot lower.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(run_main(main))
