"""Second GPU check (one H200, a few minutes): where a packed BERT-Large batch spends its GPU
time, and the levers ``gpu_check.py`` pointed at, each timed in the same run.

- peaks: bf16 and fp8 matmul rates (8192^3), beside everything else.
- profile: CUDA kernel time of one packed 256-row batch by kind (matmul, attention, LayerNorm,
  elementwise, quantize), bf16 and fp8.
- fp8: the activation quantization op by op (as before) against one fused kernel
  (``cuda_quant.fused_quantizer``): samples/s packed with CUDA graphs, and their logits compared.
- rows: bf16 packed with CUDA graphs at 64 to 512 rows a batch.
- compile: bf16 and fp8 with ``torch.compile`` (Inductor) under the same CUDA graphs.

Run (repository root, PYTHONPATH=src): ``python3 benchmarks/gpu_tune.py --out DIR``; writes
``gpu_tune.json``. ``--device cpu --model tiny`` runs the sections that need no GPU (a dry run).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_check  # noqa: E402
from common import real_token_flops, run_main, sample_features  # noqa: E402
from gpu_check import REPORT, row_slices, section  # noqa: E402

from packed_bert.backends.cuda_quant import Fp8Linear  # noqa: E402
from packed_bert.backends.torch_backend import TorchRunner  # noqa: E402
from packed_bert.model import BERT_TINY  # noqa: E402
from packed_bert.model.weights import load_model  # noqa: E402
from packed_bert.packing import pack_batch, unpack  # noqa: E402

KINDS = (  # first match wins: attention kernels' names can hold "cutlass", fp8 GEMMs' "float8"
    ("attention", ("fmha", "flash", "attention", "efficient")),
    ("matmul", ("gemm", "cutlass", "nvjet", "xmma", "sm90", "matmul")),
    ("quantize", ("float8", "fp8", "triton_")),
    ("layernorm", ("layer_norm", "layernorm")),
    ("softmax", ("softmax",)),
)


def kind_of(kernel: str) -> str:
    name = kernel.lower()
    for kind, marks in KINDS:
        if any(m in name for m in marks):
            return kind
    return "elementwise / other"


class Bench:
    def __init__(self, spec: str, device: str, samples: int) -> None:
        vocab = BERT_TINY.vocab_size if spec == "tiny" else 30522
        self.ids, self.seg, self.lens = sample_features(samples, seed=0, vocab=vocab)
        self.samples = samples
        self.flops = real_token_flops(self.lens)
        self.packed = pack_batch(self.ids, self.seg, self.lens)
        self.base = load_model(spec)
        self.device = device

    def runner(self, precision: str, *, fused: bool = True, compile: bool = False) -> TorchRunner:  # noqa: A002
        r = TorchRunner(copy.deepcopy(self.base), precision, self.device, compile=compile)
        for m in (r.model._orig_mod if compile else r.model).modules():
            if isinstance(m, Fp8Linear):
                m.fused = fused and not compile  # compiled: Inductor fuses the quantization itself
        return r

    def rate(self, runner: TorchRunner, rows: int = 256) -> dict[str, Any]:
        batches = row_slices(self.packed, rows)

        def run_all() -> None:
            for b in batches:
                runner.infer(b)

        if self.device == "cuda":
            secs = gpu_check.cuda_time(run_all, 2)
        else:
            run_all()
            start = time.perf_counter()
            run_all()
            secs = time.perf_counter() - start
        return {"samples_per_s": round(self.samples / secs, 1), "tflops_real": round(self.flops / secs / 1e12, 1)}

    def logits(self, runner: TorchRunner) -> list[np.ndarray]:
        return [x for b in row_slices(self.packed, 256) for x in unpack(b, runner.infer(b))]


def profile(bench: Bench, precision: str) -> dict[str, Any]:
    runner = bench.runner(precision)
    runner.static_shape = False  # kernels as launched, not one graph replay
    batch = row_slices(bench.packed, 256)[0]
    runner.infer(batch)
    acts = [torch.profiler.ProfilerActivity.CPU]
    if bench.device == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts) as prof:
        runner.infer(batch)
    kernel_type = torch.autograd.DeviceType.CUDA if bench.device == "cuda" else torch.autograd.DeviceType.CPU
    per_kernel: dict[str, float] = {}
    for e in prof.events():
        if e.device_type == kernel_type and (bench.device == "cuda" or not e.cpu_children):
            per_kernel[e.name] = per_kernel.get(e.name, 0.0) + e.time_range.elapsed_us()
    total = sum(per_kernel.values()) or 1.0
    kinds: dict[str, float] = {}
    for name, us in per_kernel.items():
        kinds[kind_of(name)] = kinds.get(kind_of(name), 0.0) + us
    top = sorted(per_kernel.items(), key=lambda kv: -kv[1])[:12]
    return {
        "rows": int(batch.num_rows),
        "kernel_ms": round(total / 1e3, 2),
        "share_by_kind": {k: round(v / total, 3) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
        "top_kernels": [{"kernel": n[:110], "ms": round(us / 1e3, 3), "share": round(us / total, 3)} for n, us in top],
    }


def fp8_fusion(bench: Bench) -> dict[str, Any]:
    out: dict[str, Any] = {}
    logits = {}
    for label, fused in (("op by op", False), ("fused", True)):
        r = bench.runner("fp8", fused=fused)
        out[label] = bench.rate(r)
        logits[label] = bench.logits(r)
        print(json.dumps({"fp8": label, **out[label]}), flush=True)
    out["max_abs_diff_fused_vs_op_by_op"] = max(
        float(np.abs(a - b).max()) for a, b in zip(logits["fused"], logits["op by op"], strict=True)
    )
    return out


def rows_sweep(bench: Bench, precision: str) -> list[dict[str, Any]]:
    r = bench.runner(precision)
    out = []
    for rows in (64, 128, 256, 512):
        out.append({"precision": precision, "rows": rows, **bench.rate(r, rows)})
        print(json.dumps(out[-1]), flush=True)
    return out


def compiled(bench: Bench, precision: str) -> dict[str, Any]:
    start = time.monotonic()
    r = bench.runner(precision, compile=True)
    r.infer(row_slices(bench.packed, 256)[0])
    first = time.monotonic() - start
    res = {"precision": precision, "compile_s": round(first, 1), **bench.rate(r)}
    print(json.dumps(res), flush=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget", type=float, default=200.0, help="seconds for the whole check")
    ap.add_argument("--samples", type=int, default=4096)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="random", help="random (BERT-Large) or tiny (dry runs)")
    args = ap.parse_args()
    gpu_check.DEADLINE[0] = time.monotonic() + args.budget
    args.out.mkdir(parents=True, exist_ok=True)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        REPORT["errors"]["env"] = "no CUDA device"
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        bench = Bench(args.model, args.device, args.samples)
        if cuda:
            section("env", gpu_check.env, 0)
            section("peaks", gpu_check.peaks)
        low = "fp8" if cuda else "bf16"
        section("profile bf16", lambda: profile(bench, "bf16"))
        if cuda:
            section("profile fp8", lambda: profile(bench, "fp8"))
            section("fp8 fusion", lambda: fp8_fusion(bench), 40)
        section("rows bf16", lambda: rows_sweep(bench, "bf16"), 30)
        section(f"compile {low}", lambda: compiled(bench, low), 90)
        section("compile bf16", lambda: compiled(bench, "bf16"), 90)
    (args.out / "gpu_tune.json").write_text(json.dumps(REPORT, indent=2, default=str))
    print(json.dumps(REPORT, default=str)[:4000])
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
