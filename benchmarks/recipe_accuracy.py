"""SQuAD F1 of every precision recipe with a real trained QA model, its ratio to fp32, how far its
logits stand from fp32's, its speed on this CPU, and whether a sample's logits depend on its
batch-mates.

The model is ``../shared/data/models/minilm-l6-squad`` (MiniLM-L6 fine-tuned on the
even-numbered dev articles; the odd-numbered ones were never seen). Each recipe runs every dev
feature (or ``--count``) in sorted batches of ``--batch-size``, directly (no LoadGen), and is
scored with the official-identical scorer on the whole dev set and on the unseen articles.
MLPerf's targets are ratios to fp32: bert-99 >= 99%, bert-99.9 >= 99.9%; this project's
defaults keep a margin (>= 99.5% and >= 99.95%).

Batch-invariance, on ``--invariance`` features: each feature run alone (batch 1, its own
length) against the same feature in the sorted run, padded to 384 in batches of 16, and packed
(<= 3 per row) with 15 others: the largest logit difference over the feature's logit range,
how many features are bit-for-bit equal in all three, and how many change their best span.

    .venv/bin/python benchmarks/recipe_accuracy.py --write-docs
    .venv/bin/python benchmarks/recipe_accuracy.py --recipes onnxruntime:int8@rows --count 2000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import class_markers, cpu_label, run_main, write_doc_section  # noqa: E402

from packed_bert.backends import create  # noqa: E402
from packed_bert.backends.amx_kernels import tiles_here  # noqa: E402
from packed_bert.backends.devices import CALIBRATING_BACKENDS  # noqa: E402
from packed_bert.packing import infer_sequences  # noqa: E402
from packed_bert.squad.accuracy_log import decode_payloads  # noqa: E402
from packed_bert.squad.calibration import load_calibration  # noqa: E402
from packed_bert.squad.features import SquadFeatures, load_features  # noqa: E402
from packed_bert.squad.postprocess import best_spans  # noqa: E402
from packed_bert.squad.scoring import score_by_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT.parent / "shared" / "data" / "models" / "minilm-l6-squad"
CPU_RECIPES = (
    "torch:fp32",
    "onnxruntime:fp32",
    "torch:bf16",
    "torch:bf16@mixed",
    "onnxruntime:int8@dynamic",
    "onnxruntime:int8@mixed",
    "onnxruntime:int8@static",
    "onnxruntime:int8@calibrated",
    "onnxruntime:int8@calibrated-mixed",
    "onnxruntime:int8@hybrid",
    "onnxruntime:int8@rows",
    "onnxruntime:int8@rows-mixed",
    "torch:int8@amx@residual=bf16",
    "torch:bf16@amx",
    "torch:int8-bf16@amx@residual=bf16",
    "torch:int8-bf16@amx@residual=bf16@kept=int8-rows",
    "torch:int8-bf16@amx@residual=bf16@kept=int8-hybrid",
    "openvino:fp32@mask",
    "openvino:bf16@mask",
    "openvino:int8@weights@dq0@mask",
    "openvino:fp32",
    "openvino:bf16",
    "openvino:int8@weights",
    "openvino:int8@qdq",
    "openvino:int8",
    "openvino:int8@mask",
    "torch:int8",
    "onnxruntime:fp32@seq",
    "onnxruntime:int8@rows@seq",
    "onnxruntime:int8@smoothquant@seq",
    "onnxruntime:int8@smoothquant-mixed@seq",
    "onnxruntime:int8@smoothquant@seq-ort",
    "openvino:int8@smoothquant-mixed",
)
REFERENCE = "torch:fp32"  # the fp32 F1 every ratio is taken to
GPU_RECIPES = ("torch:fp16@cuda", "torch:bf16@cuda", "torch:fp8@cuda", "torch:int8@cuda")
NOTES = {
    "torch:fp32": "PyTorch fp32, batch-invariant (tiled matmuls, per-sequence attention)",
    "onnxruntime:fp32": "fused graph (Attention operator); the cpu system's bert-99.9 on avx2, both models on a CPU of "
    "the other class",
    "torch:bf16": "whole module in bf16, batch-invariant; the cpu bert-99 default until 2026-12-05",
    "torch:bf16@mixed": "bf16 matmuls and attention, LayerNorm/residuals/QA head fp32 (not tiled)",
    "torch:bf16@frozen": "torch.compile with Inductor's freezing, whole module in bf16, sequences one per row in "
    "fixed call shapes (batch-invariant)",
    "torch:bf16@frozen@anyshape": "the same, called with the batches as they come (not batch-invariant)",
    "torch:bf16@mixed@frozen": "the mixed module under torch.compile with Inductor's freezing",
    "torch:int8@amx@residual=bf16": "static int8 after SmoothQuant (OpenVINO's factors and grids) in packed-bert's own "
    "AMX kernels: int8 linears, attention per sequence in bf16, add+LayerNorm, the residual stream in bf16: the amx "
    "class's bert-99 default",
    "torch:bf16@amx": "bf16 weights and inputs with fp32 sums in packed-bert's own AMX kernels: linears, attention per "
    "sequence (1/sqrt(d) in Q's weights), add+LayerNorm; residuals, LayerNorm and the QA head fp32",
    "torch:int8-bf16@amx@residual=bf16": "the amx int8 recipe with the FFN output layer (GELU's heavy-tailed output "
    "in) in bf16, fp32 sums: the amx class's bert-99.9 until the thirty-fourth session",
    "torch:int8-bf16@amx@residual=bf16@kept=int8-rows": "the FFN output layer's input after SmoothQuant (alpha per "
    "layer) on an 8-bit grid per row, int8 weights; residual stream in bf16",
    "torch:int8-bf16@amx@residual=bf16@kept=int8-hybrid": "the FFN output layer's input after SmoothQuant (alpha per "
    "layer) on a fixed 8-bit grid per layer, written by the FFN input layer, the rows past it on their own grids: "
    "the amx class's bert-99.9 default",
    "onnxruntime:int8@dynamic": "ORT dynamic: one activation scale per batch tensor",
    "onnxruntime:int8@mixed": "dynamic, FFN output projections fp32",
    "onnxruntime:int8@static": "ORT QDQ static (traced graph), MinMax on the 100 calibration questions",
    "onnxruntime:int8@calibrated": "fixed scales per layer input (min/max of the 100 calibration questions)",
    "onnxruntime:int8@calibrated-mixed": "calibrated, FFN output projections fp32",
    "onnxruntime:int8@hybrid": "calibrated Q/K/V and FFN input layers, per-token the other two",
    "onnxruntime:int8@rows": "per-token dynamic scales",
    "onnxruntime:int8@rows-mixed": "per-token, FFN output projections fp32",
    "openvino:fp32@mask": "OpenVINO CPU plugin, the fused ONNX graph (Attention over the masked row), f32",
    "openvino:bf16@mask": "OpenVINO, same graph, bf16 inference precision",
    "openvino:int8@weights@dq0@mask": "OpenVINO, int8 weights per column, bf16 activations",
    "openvino:fp32": "OpenVINO fp32, attention per sequence (the backend's default)",
    "openvino:bf16": "OpenVINO bf16, attention per sequence (the backend's default): the avx512-bf16 bert-99.9 default",
    "onnxruntime:fp32@seq": "ONNX Runtime fp32, attention per sequence (blocks of its length rounded up to 64)",
    "onnxruntime:int8@rows@seq": "per-token int8, attention per sequence",
    "onnxruntime:int8@smoothquant@seq": "OpenVINO's static int8 graph (SmoothQuant, calibrated) in ONNX Runtime, "
    "per-sequence: the avx2 bert-99 default",
    "openvino:int8@weights@dq256": "OpenVINO int8 weights, activations quantized per token in groups of 256, per-sequence",
    "openvino:int8@weights": "OpenVINO int8 weights, activations quantized per token (groups of 1024), per-sequence",
    "openvino:int8@qdq": "OpenVINO static int8: fixed activation scales (min/max of the 100 calibration questions)",
    "openvino:int8": "OpenVINO static int8 after SmoothQuant (alpha 0.8), calibrated, per-sequence (its default): the "
    "avx512-bf16 bert-99 default",
    "openvino:int8@mask": "the same over the masked row: the cpu system's SingleStream recipe on avx512-bf16",
    "torch:int8": "PyTorch static int8 (oneDNN u8 x s8) with the same SmoothQuant factors and grids, bf16 attention",
    "onnxruntime:int8@smoothquant-mixed@seq": "the SmoothQuant int8 graph with the FFN output layers fp32, per-sequence",
    "onnxruntime:int8@smoothquant@seq-ort": "the same SmoothQuant int8 in ONNX Runtime's own operators "
    "(MatMulIntegerToFloat with the bias inside, MultiHeadAttention on blocks cut per batch)",
    "openvino:int8@smoothquant-mixed": "OpenVINO's SmoothQuant int8 with the FFN output layers in the activations' "
    "precision (bf16 where the CPU has it)",
}


@dataclass
class Outcome:
    recipe: str
    f1: dict[str, float] = field(default_factory=dict)
    em: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    samples: int = 0
    invariance: dict[str, Any] = field(default_factory=dict)
    fidelity: dict[str, Any] = field(default_factory=dict)  # its logits against the reference's (``fidelity``)
    note: str = ""

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds else 0.0


def make_runner(recipe: str, weights: Any, threads: int, **extra: Any) -> Any:
    """A runner for ``recipe`` on ``weights`` (a spec or a loaded model), ``extra`` options given
    to the runtime as they are.
    ``backend:precision[@option][@seq][@cuda]``: onnxruntime's option is its quant mode, torch's a
    variant, ``amx`` (int8 or bf16 in packed-bert's AMX kernels; ``bf16=ROLE+ROLE``: the layers
    int8-bf16 keeps in bf16; ``residual=bf16``: the residual stream in bf16; ``attention=int8`` or ``int8-scores``: attention's products, or Q K^T alone, in int8; ``kept=int12``: int8-bf16's
    kept layers on 12-bit x int8 products) and/or ``frozen`` (``torch.compile`` with Inductor's freezing, batch-invariant through
    fixed call shapes; ``@anyshape``: calls as the batches come, not batch-invariant),
    openvino's ``dqN`` its dynamic quantization group size; ``@seq``: per-sequence attention
    (openvino's default), ``@seq-ort``: onnxruntime's per-sequence graph in its own operators,
    ``@mask``: openvino's Attention over the masked row."""
    name, *tags = recipe.split("@")
    backend, precision = name.split(":")
    device = "cuda" if "cuda" in tags else "cpu"
    opts: dict[str, Any] = {"threads": threads, **extra}
    rest = [t for t in tags if t not in ("cuda", "seq", "seq-ort", "mask")]
    if "seq" in tags:  # attention per sequence (onnx_fused.sequence_feeds)
        opts["graph" if backend == "onnxruntime" else "attention"] = "sequence"
    if "seq-ort" in tags:  # onnxruntime: the same in its own operators (onnx_fused, "sequence-ort")
        opts["graph"] = "sequence-ort"
    if "mask" in tags:  # openvino: the Attention operator over the masked row
        opts["attention"] = "mask"
    if backend in CALIBRATING_BACKENDS:
        opts["calibration"] = load_calibration  # used only by the int8 modes that calibrate
    if backend == "onnxruntime" and rest:
        opts["quant"] = rest[0]
    elif backend == "torch":
        for tag in rest:  # frozen: torch.compile with Inductor's freezing; any other tag: the variant
            if tag == "frozen":
                opts.update(compile=True, freezing=True)
            elif tag == "anyshape":  # calls as the batches come: not batch-invariant
                opts["batch_invariant"] = False
            elif tag == "amx":  # static int8 or bf16 in packed-bert's own AMX kernels
                opts["kernel"] = "amx"
            elif tag.startswith("bf16="):  # int8-bf16: the layers kept in bf16 (bf16=ffn-input+ffn-output)
                opts["bf16_layers"] = tag.removeprefix("bf16=").split("+")
            elif tag.startswith("residual="):  # on our AMX kernels: the residual stream in fp32 or bf16
                opts["residual"] = tag.removeprefix("residual=")
            elif tag.startswith("attention="):  # on our AMX kernels: attention's products (amx_kernels.ATTENTION_KINDS)
                opts["attention"] = tag.removeprefix("attention=")
            elif tag.startswith("kept="):  # int8-bf16 on our kernels: its kept layers' precision (KEPT_PRECISIONS)
                opts["kept"] = tag.removeprefix("kept=")
            else:
                opts["variant"] = tag
    elif backend == "openvino":
        for tag in rest:  # dqN: the dynamic quantization group; any other tag: the int8 graph (quant)
            if tag.startswith("dq"):
                opts["dynamic_quant"] = int(tag.removeprefix("dq"))
            else:
                opts["quant"] = tag
    return create(backend, weights, precision, device, **opts)


def spans(features: SquadFeatures, index: np.ndarray, logits: Sequence[np.ndarray]) -> np.ndarray:
    """Best (start, end) of each feature, as the official postprocessing picks it: [n, 2]."""
    best = best_spans(features, decode_payloads(dict(zip(index.tolist(), logits, strict=True)), features.num_features))
    return np.stack([best.start, best.end], axis=1)


def invariance(runner: Any, features: SquadFeatures, index: np.ndarray, in_run: Sequence[np.ndarray]) -> dict[str, Any]:
    """Alone against sorted (the run's), padded and packed batches of the same features."""
    ids, seg, lens = features.input_ids[index], features.segment_ids[index], features.lengths[index]
    alone = infer_sequences(runner.infer, ids, seg, lens, "sorted", 1)
    others = {
        "sorted": list(in_run),
        "padded": infer_sequences(runner.infer, ids, seg, lens, "padded", 16),
        "packed": infer_sequences(runner.infer, ids, seg, lens, "packed", 16),
    }
    base_spans = spans(features, index, alone)
    worst, exact, changed = 0.0, np.ones(index.size, bool), np.zeros(index.size, bool)
    for got in others.values():
        for k, (a, b) in enumerate(zip(alone, got, strict=True)):
            spread = float(a.max() - a.min()) or 1.0
            worst = max(worst, float(np.abs(a - b).max()) / spread)
            exact[k] &= bool(np.array_equal(a, b))
        changed |= (spans(features, index, got) != base_spans).any(axis=1)
    return {
        "features": int(index.size),
        "max_rel_diff": worst,
        "bit_exact": int(exact.sum()),
        "span_changed": int(changed.sum()),
    }


def fidelity(
    features: SquadFeatures,
    index: np.ndarray,
    reference: Sequence[np.ndarray],
    reference_spans: np.ndarray,
    got: Sequence[np.ndarray],
) -> dict[str, Any]:
    """How far a recipe's logits stand from the reference recipe's (``reference``, whose best spans
    ``spans`` gave once as ``reference_spans``) over the same features: the root mean square of their
    differences over every real token's start and end logit, and how many features' best spans
    differ. F1 moves by whole questions, so two recipes whose logits stand equally far from fp32's
    can differ by a few tenths of a percent of F1 (thirty-eighth session); these say which."""
    squares = sum(
        float(np.square(np.asarray(a, np.float64) - np.asarray(b, np.float64)).sum())
        for a, b in zip(reference, got, strict=True)
    )
    values = sum(int(np.asarray(a).size) for a in reference)
    changed = (reference_spans != spans(features, index, list(got))).any(axis=1)
    return {"rms": (squares / values) ** 0.5 if values else 0.0, "span_changed": int(changed.sum())}


def run_recipe(
    recipe: str, args: argparse.Namespace, features: SquadFeatures, index: np.ndarray, check: np.ndarray, threads: int
) -> tuple[Outcome, list[np.ndarray]]:
    out = Outcome(recipe, note=NOTES.get(recipe, ""))
    runner = make_runner(recipe, args.weights, threads)
    ids, seg, lens = features.input_ids[index], features.segment_ids[index], features.lengths[index]
    infer_sequences(
        runner.infer, ids[: args.batch_size], seg[: args.batch_size], lens[: args.batch_size], "sorted", args.batch_size
    )  # warm-up
    start = time.perf_counter()
    logits = infer_sequences(runner.infer, ids, seg, lens, "sorted", args.batch_size)
    out.seconds, out.samples = time.perf_counter() - start, int(index.size)
    scores = score_by_split(dict(zip(index.tolist(), logits, strict=True)), features, ("all", "odd-articles"))
    out.f1 = {k: v.f1 for k, v in scores.items()}
    out.em = {k: v.exact_match for k, v in scores.items()}
    if check.size:
        position = {int(f): k for k, f in enumerate(index.tolist())}
        out.invariance = invariance(runner, features, check, [logits[position[int(f)]] for f in check])
    print(
        json.dumps(
            {
                "recipe": recipe,
                "f1": out.f1,
                "em": out.em,
                "samples_per_s": round(out.samples_per_s, 2),
                "invariance": out.invariance,
            }
        ),
        flush=True,
    )
    return out, logits


def render(outcomes: list[Outcome], skipped: dict[str, str], args: argparse.Namespace, threads: int) -> str:
    base = next((o for o in outcomes if o.recipe == args.reference), None)
    argv = " ".join(a for a in sys.argv[1:] if a != "--write-docs")
    lines = [
        f"Command: `.venv/bin/python benchmarks/recipe_accuracy.py{' ' + argv if argv else ''}`  ",
        f"Machine: {cpu_label()}, {threads} threads; model {Path(args.weights).name}; "
        f"{base.samples if base else 0} dev features, sorted batches of {args.batch_size}; {time.strftime('%Y-%m-%d')}.",
        "",
        "| recipe | F1 all | F1 unseen | of fp32 (all / unseen) | >= 99% | >= 99.9% | logits vs fp32: RMS, best span "
        "changed | samples/s | batch-invariance: max diff / range, bit-exact, best span changed | what it is |",
        "| --- | ---: | ---: | ---: | :---: | :---: | --- | ---: | --- | --- |",
    ]
    for o in outcomes:
        if base is None:
            break
        r_all = o.f1["all"] / base.f1["all"] if base.f1["all"] else float("nan")
        r_odd = o.f1["odd-articles"] / base.f1["odd-articles"] if base.f1["odd-articles"] else float("nan")
        inv = o.invariance
        inv_text = (
            f"{inv['max_rel_diff']:.1e}, {inv['bit_exact']}/{inv['features']}, {inv['span_changed']}" if inv else "-"
        )
        fid = o.fidelity
        fid_text = f"{fid['rms']:.4f}, {fid['span_changed']}" if fid else "-"
        lines.append(
            f"| {o.recipe} | {o.f1['all']:.3f} | {o.f1['odd-articles']:.3f} | {100 * r_all:.3f}% / {100 * r_odd:.3f}% | "
            f"{'yes' if r_all >= 0.99 else 'NO'} | {'yes' if r_all >= 0.999 else 'NO'} | {fid_text} | "
            f"{o.samples_per_s:.1f} | {inv_text} | {o.note} |"
        )
    for recipe, why in skipped.items():
        lines.append(f"| {recipe} | - | - | - | - | - | - | - | - | not measured: {why} |")
    lines.append("")
    lines.append(
        'F1 by the official-identical scorer (`squad/scoring.py`); "unseen": the odd-numbered articles '
        "(5,173 questions the model was not trained on). Logits vs fp32: the root mean square of the "
        "differences from the reference recipe's start and end logits over every real token, and how many "
        "of the features' best spans differ from its (F1 moves by whole questions; this does not). "
        "samples/s: the whole timed pass on this CPU "
        "(a shared 2-core VM: absolute speeds move between runs; compare BERT-Large speed with "
        "`benchmarks/throughput.py`)."
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(WEIGHTS))
    ap.add_argument("--recipes", default=",".join(CPU_RECIPES + GPU_RECIPES))
    ap.add_argument("--count", type=int, help="only the first N dev features (quick looks; the table needs all)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--invariance", type=int, default=64, help="features checked for batch-invariance (0: none)")
    ap.add_argument("--write-docs", action="store_true")
    ap.add_argument("--reference", default=REFERENCE, help=f"the recipe every F1 ratio is taken to ({REFERENCE})")
    args = ap.parse_args(argv)

    import torch

    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    features = load_features()
    n = features.num_features if args.count is None else min(args.count, features.num_features)
    index = np.arange(n)
    check = (
        np.random.default_rng(0).choice(n, size=min(args.invariance, n), replace=False)
        if args.invariance
        else np.zeros(0, int)
    )
    outcomes: list[Outcome] = []
    skipped: dict[str, str] = {}
    recipes = args.recipes.split(",")
    if args.reference not in recipes:  # every ratio is to its F1: run it first
        recipes.insert(0, args.reference)
    # the reference's logits and best spans (it runs first; skipped: none)
    reference: tuple[list[np.ndarray], np.ndarray] | None = None
    for recipe in recipes:
        if "cuda" in recipe and not torch.cuda.is_available():
            skipped[recipe] = "no GPU"
            continue
        if "@amx" in recipe and tiles_here() is None:
            skipped[recipe] = "no AMX tiles nor AVX-512 VNNI on this CPU (packed-bert's kernels)"
            continue
        outcome, logits = run_recipe(recipe, args, features, index, check, threads)
        if recipe == args.reference:
            reference = logits, spans(features, index, logits)
        if reference is not None:
            outcome.fidelity = fidelity(features, index, *reference, logits)
            print(json.dumps({"recipe": recipe, "against": args.reference, "fidelity": outcome.fidelity}), flush=True)
        outcomes.append(outcome)
    table = render(outcomes, skipped, args, threads)
    print(table)
    print(json.dumps({"results": [o.__dict__ for o in outcomes], "skipped": skipped}, default=str))
    if args.write_docs:
        write_doc_section(*class_markers("recipe-accuracy"), table)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
