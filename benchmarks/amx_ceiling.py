"""AMX int8 on this CPU: what the tiles issue, and what BERT-Large's four linear layers get from
packed-bert's own kernel (``backends/amx_kernels.py``) and from oneDNN's through torch
(``torch_int8.StaticInt8Linear``), at one sample's rows and at an Offline batch's.

    .venv/bin/python benchmarks/amx_ceiling.py
    .venv/bin/python benchmarks/amx_ceiling.py --rows 288,3072 --write-docs

"Issue rate": back-to-back tile products on registers only (no memory), every thread: the
ceiling no kernel passes. "ours, fp32 in": the kernel quantizing an fp32 input itself; "ours,
uint8 in": an input already quantized by the layer before it (what the AMX path hands over);
"oneDNN": ``qlinear_pointwise`` on the same recipe (fp32 out after GELU). Each layer writes what
it writes in the model: Q, K, V in bf16, the GELU output as the next layer's uint8, the others
fp32. TOP/s count the product's 2 x M x K x N
operations. Weights are random int8 and hot in the caches (one layer, repeated): a whole model
streams them from memory: the second table calls a whole encoder's distinct weights once each,
as the model does (docs/performance-history.md, tenth and eleventh sessions).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_label, publish, run_main  # noqa: E402

from packed_bert.backends.amx_kernels import AmxLinearWeights, block_rows, has_amx, issue_rate  # noqa: E402
from packed_bert.backends.torch_int8 import GELU, StaticInt8Linear, has_int8_kernels  # noqa: E402
from packed_bert.errors import UserError  # noqa: E402

LAYERS = (  # BERT-Large's encoder linear layers: (name, K, N, GELU after, output as in the model)
    ("Q, K, V", 1024, 3072, False, "bf16"),
    ("attention output", 1024, 1024, False, "fp32"),
    ("FFN input + GELU", 1024, 4096, True, "uint8"),
    ("FFN output", 4096, 1024, False, "fp32"),
)
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def rate(call: Callable[[], object], ops: float, seconds: float = 0.5) -> float:
    """TOP/s of ``call``: the best of three timed stretches after two warm calls."""
    call()
    call()
    best = float("inf")
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 3:
            call()
            count += 1
        best = min(best, (time.perf_counter() - start) / count)
    return ops / best / 1e12


def layer_rates(
    rows: int, k: int, n: int, gelu: bool, out: str, rng: np.random.Generator
) -> tuple[float, float, float]:
    """(ours fp32 in, ours uint8 in, oneDNN) TOP/s for one [rows, k] x [k, n] layer writing
    ``out`` as the model does (uint8: the next layer's input; oneDNN writes fp32 there)."""

    def weights(k: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w = (rng.standard_normal((k, n)) * 0.02).astype(np.float32)
        return w, rng.standard_normal(n).astype(np.float32) * 0.1, rng.uniform(0.5, 2.0, k).astype(np.float32)

    w, bias, smooth = weights(k, n)
    post = GELU if gelu else "none"
    dtype = DTYPES.get(out, torch.float32)
    ours = StaticInt8Linear(w, bias, smooth, (-4.0, 5.0), post_op=post, kernel="amx", out_dtype=dtype)
    onednn = StaticInt8Linear(w, bias, smooth, (-4.0, 5.0), post_op=post, out_dtype=dtype)
    assert isinstance(ours.amx, AmxLinearWeights)
    amx = ours.amx
    if out == "uint8":  # GELU's output goes to the FFN output layer as its uint8 input
        consumer = StaticInt8Linear(*weights(n, k), (0.0, 6.0), kernel="amx")
        assert consumer.amx is not None
        amx.feed(consumer.amx)
    x = torch.randn(rows, k)
    padded = torch.randint(0, 256, (-(-rows // 32) * 32, k), dtype=torch.uint8)
    ops = 2.0 * rows * k * n
    return (
        rate(lambda: amx(x, dtype), ops),
        rate(lambda: amx(padded[:rows], dtype), ops),
        rate(lambda: onednn(x), ops),
    )


def model_linears(rows: int, rng: np.random.Generator, layers: int = 24) -> tuple[float, list[float]]:
    """(ms, TOP/s by layer kind) for a whole encoder's linear layers with weights cold, as in the
    model: ``layers`` x 4 distinct random int8 weights (BERT-Large: about 300 MB, past the L2
    caches), each called once in order on uint8 inputs, writing what the model writes; the best of
    three passes after a warm one."""

    def weights(k: int, n: int, gelu: bool) -> AmxLinearWeights:
        wq = rng.integers(-127, 128, (k, n), dtype=np.int8)
        scale, bias = rng.uniform(1e-3, 3e-3, n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
        return AmxLinearWeights(wq, scale, bias, np.ones(k, np.float32), 0.05, 128, gelu=gelu)

    stack = []
    for _ in range(layers):
        made = [weights(k, n, gelu) for _, k, n, gelu, _ in LAYERS]
        made[2].feed(made[3])  # GELU's output goes to the FFN output layer as its uint8 input
        stack.append(made)
    inputs = {k: block_rows(rows, k, fill=128) for _, k, _, _, _ in LAYERS}
    times = [float("inf")] * len(LAYERS)
    for attempt in range(4):
        spent = [0.0] * len(LAYERS)
        for made in stack:
            for i, ((_, k, _, _, out), layer) in enumerate(zip(LAYERS, made, strict=True)):
                start = time.perf_counter()
                layer(inputs[k], DTYPES.get(out, torch.float32))
                spent[i] += time.perf_counter() - start
        if attempt and sum(spent) < sum(times):
            times = spent
    rates = [2.0 * rows * k * n * layers / t / 1e12 for (_, k, n, _, _), t in zip(LAYERS, times, strict=True)]
    return sum(times) * 1e3, rates


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="288,3072", help="comma list of row counts (tokens per call)")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    if not has_amx():
        raise UserError("amx_ceiling: this CPU has no AMX int8 tiles; the benchmark is for AMX machines")
    if not has_int8_kernels():
        raise UserError("amx_ceiling: this torch has no oneDNN quantized linear for the comparison")
    rng = np.random.default_rng(0)
    threads = torch.get_num_threads()
    ceiling = issue_rate()
    lines = [
        f"CPU: {cpu_label()}, {threads} threads; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        f"AMX int8 issue rate (tile products on registers, every thread): **{ceiling:.2f} TOP/s**.",
        "",
        "| rows | layer (K x N) | ours, fp32 in | ours, uint8 in | oneDNN (torch) | ours uint8 in / issue rate |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for rows in (int(r) for r in args.rows.split(",")):
        for name, k, n, gelu, out in LAYERS:
            fp32_in, u8_in, theirs = layer_rates(rows, k, n, gelu, out, rng)
            lines.append(
                f"| {rows} | {name} ({k} x {n}, {out} out) | {fp32_in:.2f} | {u8_in:.2f} | {theirs:.2f} "
                f"| {u8_in / ceiling:.0%} |"
            )
            print(lines[-1], flush=True)
    lines += [
        "",
        "A whole encoder's linear layers, weights cold (24 x 4 distinct random weights, about 300 MB, each called once",
        "in order on uint8 inputs; the best of three passes), TOP/s by layer:",
        "",
        "| rows | all 96 layers, ms | Q, K, V | attention output | FFN input + GELU | FFN output | of the issue rate |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rows in (int(r) for r in args.rows.split(",")):
        ms, rates = model_linears(rows, rng)
        total = 2.0 * rows * sum(k * n for _, k, n, _, _ in LAYERS) * 24 / (ms / 1e3) / 1e12
        lines.append(f"| {rows} | {ms:.1f} | " + " | ".join(f"{r:.2f}" for r in rates) + f" | {total / ceiling:.0%} |")
        print(lines[-1], flush=True)
    lines.append("")
    lines.append(
        "Command: `.venv/bin/python benchmarks/amx_ceiling.py" + (f" --rows {args.rows}`" if args.rows else "`")
    )
    publish("\n".join(lines), "amx-ceiling", args.write_docs)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
