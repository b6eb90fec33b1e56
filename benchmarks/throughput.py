"""CPU throughput of BERT-Large (random weights, SQuAD dev lengths) per backend, precision and
batching strategy, against the MLPerf reference way (each sample padded to 384, batch 1, torch
fp32), plus the FLOP rate on real tokens against this machine's measured matmul peak.

    .venv/bin/python benchmarks/throughput.py --samples 32 --write-docs
    .venv/bin/python benchmarks/throughput.py --schedule offline --batch-size 16 --batches 6 --write-docs

``--schedule samples`` (default): ``--samples`` random SQuAD-length samples, which each strategy
batches on its own (a small set: sorted and packed batches pad more than in a real run).
``--schedule offline``: the batches the harness builds for an Offline query of all 10,833 SQuAD
dev features (``BatchBuilder.plan_offline`` + ``offline_chunks`` at ``--batch-size``), of which
``--batches`` evenly spaced through the run are timed. The reference (padded to 384, batch 1: its cost does
not depend on the length) runs ``--samples`` random samples in both. Every variant runs the same
batches. Prints a table and a JSON line; ``--write-docs`` puts the table into
docs/performance.md.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import Probe, real_token_flops, run_main, sample_features, squad_lengths, write_doc_section  # noqa: E402

from packed_bert.backends import create  # noqa: E402
from packed_bert.backends.matmul_peak import (  # noqa: E402
    MatmulProbe,
    ort_matmul,
    ort_peak,
    torch_matmul,
    torch_peak,
)
from packed_bert.packing import PackedBatch, pack_batch, padded_batches, sorted_batches  # noqa: E402
from packed_bert.squad.calibration import load_calibration  # noqa: E402

MARKERS = {
    "samples": ("<!-- throughput:begin -->", "<!-- throughput:end -->"),
    "offline": ("<!-- throughput-offline:begin -->", "<!-- throughput-offline:end -->"),
}
VARIANTS = ("torch:fp32", "torch:bf16", "onnxruntime:fp32", "onnxruntime:int8")
# the cpu system's defaults (torch on the CPU is batch-invariant: torch_invariant)
RECIPES = {"bert-99": ("torch:bf16",), "bert-99.9": ("onnxruntime:fp32",)}


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


def offline_batches(
    strategy: str, feats: tuple[np.ndarray, np.ndarray, np.ndarray], batch_size: int, count: int, seed: int
) -> list[PackedBatch]:
    """``count`` of the batches the harness builds for an Offline query of ``feats``."""
    from types import SimpleNamespace

    from packed_bert.harness.batching import BatchBuilder
    from packed_bert.harness.qsl import SampleLibrary
    from packed_bert.harness.scheduler import offline_chunks
    from packed_bert.terms import Batching

    ids, seg, lens = feats
    builder = BatchBuilder(
        SampleLibrary.from_features(SimpleNamespace(input_ids=ids, segment_ids=seg, lengths=lens)),
        Batching(strategy),
        trim_rows=True,
    )
    query = np.random.default_rng(seed).permutation(lens.size)  # LoadGen issues in random order
    perm, cuts = builder.plan_offline(query)
    ordered = query[perm]
    chunks = offline_chunks(ordered.size, batch_size, 1, cuts=cuts)
    # evenly spaced through the run (sorted: from the longest batches to the shortest), so the
    # drawn batches' samples/s estimates the whole run's
    step = len(chunks) / min(count, len(chunks))
    pick = (np.arange(min(count, len(chunks))) * step + step / 2).astype(int)
    return [builder.build(ordered[chunks[i][0] : chunks[i][1]]) for i in pick]


def run_lengths(work: Sequence[PackedBatch]) -> np.ndarray:
    """Lengths of the sequences a list of batches holds."""
    return np.concatenate([b.seq_lens[b.seq_lens > 0] for b in work]).astype(np.int64)


def _slice(b: PackedBatch, lo: int, hi: int) -> PackedBatch:
    return PackedBatch(
        b.input_ids[lo:hi], b.segment_ids[lo:hi], b.position_ids[lo:hi], b.seq_lens[lo:hi], b.sample_index[lo:hi]
    )


@dataclass
class Timing:
    """One variant and strategy: the best pass, and every batch with the matmul rate beside it."""

    seconds: float  # best pass over the batches
    flops: float = 0.0  # real-token FLOPs of all passes
    peak_seconds: float = 0.0  # sum over batches of seconds x the probed peak around the batch, FLOP
    best_rate: float = 0.0  # the highest probe reading, FLOP/s

    @property
    def local_fraction(self) -> float | None:
        return self.flops / self.peak_seconds if self.peak_seconds else None


SETTLE_S = 0.1  # idle time before each probe and batch: a runtime's pool threads spin on after its work
STEADY_READINGS = 15  # at most this many probe windows (0.2 s each) before the first pass counts


def steady(probe: Probe) -> None:
    """Probe windows, at least three, until the last two agree within 10% and the last is within
    10% of the best (at most ``STEADY_READINGS``): after a runtime's first calls at new shapes the
    probe beside it read low for a second or more (OpenVINO int8 under oneDNN's AVX512_CORE_VNNI
    cap: 161, 149, 419, then 1,435 GOP/s; 1,350-1,456 for the rest of the run)."""
    readings = [probe.rate(), probe.rate()]
    while len(readings) < STEADY_READINGS:
        readings.append(probe.rate())
        if readings[-1] >= 0.9 * max(readings) and abs(readings[-1] - readings[-2]) <= 0.1 * readings[-1]:
            return


def timed(
    infer: Callable[[PackedBatch], np.ndarray],
    work: Sequence[PackedBatch],
    repeats: int = 1,
    probe: Probe | None = None,
) -> Timing:
    """Best of ``repeats`` passes over ``work`` (after one untimed call at each batch shape: a
    runtime's first call at a new shape costs more, which a long run pays once per shape, so a
    timed pass of few batches must not pay it per batch). With ``probe``, a short
    matmul probe runs before each batch and after the last, and each batch's real-token FLOPs
    are set against the mean of the probes on either side of it (paired: same load). Probes and
    batches start after ``SETTLE_S`` idle (not timed): ONNX Runtime's pool threads spin for a
    while after a run, and a probe started at once in another session measured 20% low; and the
    first probe waits until the probe reads steady after the warm-up (``steady``)."""
    for one_per_shape in {b.input_ids.shape: b for b in work}.values():
        infer(one_per_shape)  # warm-up (shape-specific setup)
    if probe:
        steady(probe)
    flops = [real_token_flops(b.seq_lens[b.seq_lens > 0]) for b in work]
    out = Timing(float("inf"))

    def settled_rate(matmul: Probe) -> float:
        time.sleep(SETTLE_S)
        rate = matmul.rate()
        out.best_rate = max(out.best_rate, rate)
        return rate

    for _ in range(repeats):
        before = settled_rate(probe) if probe else 0.0
        total = 0.0
        for b, f in zip(work, flops, strict=True):
            if probe:
                time.sleep(SETTLE_S)
            start = time.perf_counter()
            infer(b)
            secs = time.perf_counter() - start
            total += secs
            if probe:
                after = settled_rate(probe)
                out.flops += f
                out.peak_seconds += secs * (before + after) / 2
                before = after
        out.seconds = min(out.seconds, total)
    return out


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


def probe(variant: str, threads: int, n: int = 2048) -> MatmulProbe:
    """The matmul probe timed beside a variant's batches (same runtime and precision as its peak)."""
    backend, precision = variant.split(":")
    if backend == "onnxruntime":
        return MatmulProbe(ort_matmul(precision, n, threads), n)
    return MatmulProbe(torch_matmul(precision, n), n)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=32, help="SQuAD-length samples (same for all variants)")
    ap.add_argument("--rows", type=int, default=8, help="rows per batch (padded, sorted, packed)")
    ap.add_argument("--schedule", choices=("samples", "offline"), default="samples")
    ap.add_argument("--batch-size", type=int, default=16, help="offline: samples per batch (the cpu system's)")
    ap.add_argument("--batches", type=int, default=6, help="offline: batches timed per strategy")
    ap.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="backend:precision[@tags] list, tags joined with +: onnxruntime @static (fixed-shape session), "
        "@traced (the torch.onnx.export graph), any other tag an int8 quant mode (@dynamic, @rows); "
        "torch: a variant (@mixed)",
    )
    ap.add_argument("--strategies", default="padded,sorted,packed")
    ap.add_argument("--skip-reference", action="store_true", help="skip padded batch-1 torch fp32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="passes per variant and strategy; the best is kept")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args(argv)

    import torch

    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    from packed_bert.model.weights import load_model

    feats = sample_features(args.samples, args.seed)
    work: dict[str, list[PackedBatch]] = {"padded-b1": batches("padded-b1", feats, 1)}
    strategies = args.strategies.split(",")
    for strategy in strategies:
        work[strategy] = (
            offline_batches(
                strategy, sample_features(squad_lengths().size, args.seed), args.batch_size, args.batches, args.seed
            )
            if args.schedule == "offline"
            else batches(strategy, feats, args.rows)
        )
    lengths = {k: run_lengths(v) for k, v in work.items()}
    print(
        f"{args.samples} reference samples, mean length {feats[2].mean():.1f}, {threads} threads, torch {torch.__version__}"
    )
    for k, v in work.items():
        slots = sum(b.input_ids.size for b in v)
        print(f"  {k}: {len(v)} batches, {lengths[k].size} samples, token efficiency {lengths[k].sum() / slots:.3f}")
    peaks = measure_peaks(threads)
    print("matmul peaks GFLOP/s:", {k: round(v / 1e9, 1) for k, v in peaks.items()}, flush=True)

    results: list[dict[str, object]] = []

    def record(variant: str, strategy: str, timing: Timing) -> None:
        secs = timing.seconds
        flops = real_token_flops(lengths[strategy])
        rate = flops / secs
        slots = sum(b.input_ids.size for b in work[strategy])
        row = {
            "variant": variant,
            "strategy": strategy,
            "samples": int(lengths[strategy].size),
            "token_efficiency": round(float(lengths[strategy].sum()) / slots, 3),
            "seconds": round(secs, 2),
            "samples_per_s": round(lengths[strategy].size / secs, 3),
            "gflops_real": round(rate / 1e9, 1),
        }
        if timing.local_fraction is not None:
            row["local_peak_fraction"] = round(timing.local_fraction, 3)
        results.append(row)
        print(json.dumps(row), flush=True)

    base = load_model("random")
    if not args.skip_reference:
        ref = create("torch", base, "fp32", threads=threads, batch_invariant=False)  # the plain eager model
        record(
            "torch:fp32", "padded-b1", timed(ref.infer, work["padded-b1"], args.repeats, probe("torch:fp32", threads))
        )
    for variant in args.variants.split(","):
        # "onnxruntime:int8@static": fixed [rows, 384] session; "@traced": the torch.onnx.export graph
        name, _, tags = variant.partition("@")
        backend, precision = name.split(":")
        model = load_model("random") if precision != "fp32" and backend == "torch" else base
        tag_list = [t for t in tags.split("+") if t]
        opts: dict[str, Any] = {"static_rows": args.rows} if "static" in tag_list else {}
        if "traced" in tag_list:
            opts["graph"] = "traced"
        for tag in (t for t in tag_list if t not in ("static", "traced")):
            opts["quant" if backend == "onnxruntime" else "variant"] = tag  # an int8 mode / a torch variant
        if backend == "onnxruntime":
            opts["calibration"] = load_calibration  # used only by the int8 modes that calibrate
        shape = "static" if "static_rows" in opts else ""
        runner = create(backend, model, precision, threads=threads, **opts)
        for strategy in strategies:
            if shape == "static" and strategy == "sorted":
                continue  # a fixed-shape session takes only 384-token rows
            record(variant, strategy, timed(runner.infer, work[strategy], args.repeats, probe(name, threads)))
        del runner
        # a peak is a maximum: probe again after every variant, so one busy moment on this shared
        # machine at the first probe does not inflate every fraction
        peaks = {k: max(v, peaks[k]) for k, v in measure_peaks(threads).items() if k in peaks}
    for row in results:
        row["peak_fraction"] = round(float(row["gflops_real"]) * 1e9 / peaks[str(row["variant"]).split("@")[0]], 3)  # type: ignore[arg-type]

    ref_sps = next((float(r["samples_per_s"]) for r in results if r["strategy"] == "padded-b1"), None)  # type: ignore[arg-type]
    table = render(results, ref_sps, peaks, args, threads)
    print(table)
    print(
        json.dumps(
            {"results": results, "reference_sps": ref_sps, "peaks_gflops": {k: v / 1e9 for k, v in peaks.items()}}
        )
    )
    if args.write_docs:
        write_doc_section(*MARKERS[args.schedule], table)
    return 0


def render(
    results: list[dict[str, object]],
    ref_sps: float | None,
    peaks: dict[str, float],
    args: argparse.Namespace,
    threads: int,
) -> str:
    argv = " ".join(a for a in sys.argv[1:] if a != "--write-docs")
    if args.schedule == "offline":
        workload = (
            f"the harness's Offline batches of all 10,833 SQuAD dev lengths at --batch-size {args.batch_size}, "
            f"{args.batches} evenly spaced through the run per strategy (seed {args.seed}); reference: {args.samples} random samples"
        )
    else:
        workload = f"{args.samples} SQuAD dev lengths (seed {args.seed}), {args.rows} rows per batch"
    if args.repeats > 1:
        workload += f"; best of {args.repeats} passes"
    lines = [
        f"Command: `.venv/bin/python benchmarks/throughput.py {argv}`  ",
        f"Machine: {platform.processor() or platform.machine()}, {threads} threads; BERT-Large random weights; "
        f"{workload}; {time.strftime('%Y-%m-%d')}.",
        "",
        "| backend:precision | batching | samples | token efficiency | samples/s | x padded b1 fp32 | GFLOP/s real tokens "
        "| of matmul peak | of the peak beside it |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        ratio = f"{float(r['samples_per_s']) / ref_sps:.2f}x" if ref_sps else "-"  # type: ignore[arg-type]
        lines.append(
            f"| {r['variant']} | {r['strategy']} | {r['samples']} | {100 * float(r['token_efficiency']):.1f}% | "  # type: ignore[arg-type]
            f"{r['samples_per_s']} | {ratio} | {r['gflops_real']} | "
            f"{100 * float(r['peak_fraction']):.0f}% | {_pct(r.get('local_peak_fraction'))} |"  # type: ignore[arg-type]
        )
    lines.append("")
    lines.append(
        "Measured matmul peaks (2048^3, best of 5, highest of the probes before and after each variant): "
        + ", ".join(f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items())
    )
    lines.append(
        '"Of the peak beside it": every timed batch sits between two 0.2 s probes of the same 2048^3 matmul, '
        f"each started after {SETTLE_S:g} s idle "
        "(mean rate, same runtime and precision); the column is all batches' real-token FLOPs over the sum of "
        "each batch's seconds times the mean of its two probes, so the work and its yardstick see the same "
        'load on this shared machine. "Of matmul peak" uses the best probe of the whole run.'
    )
    for model, names in RECIPES.items():
        best = max((float(r["samples_per_s"]) for r in results if r["variant"] in names), default=None)  # type: ignore[arg-type]
        if best and ref_sps:
            lines.append(
                f"- {model} recipe ({names[-1]}): best {best:.3f} samples/s = {best / ref_sps:.2f}x the reference"
            )
    return "\n".join(lines)


def _pct(value: object) -> str:
    return "-" if value is None else f"{100 * float(value):.0f}%"  # type: ignore[arg-type]


if __name__ == "__main__":
    raise SystemExit(run_main(main))
