"""One-shot GPU check (one H200, at most ~8 minutes): correctness of packed / varlen / alone on
CUDA, samples/s per GPU for both recipes at BERT-Large with SQuAD dev lengths (packed with and
without CUDA graphs, sorted varlen, padded), and the fraction of the measured bf16 matmul peak.

Run through ``benchmarks/gpu_check.sh``; writes ``gpu_check.json`` and ``gpu_check.md`` to --out.
Only torch, numpy and packed_bert (PYTHONPATH=src) are imported. Every section is guarded and
time-boxed, so a failure in one still leaves the others' results.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import real_token_flops, run_main, sample_features  # noqa: E402

from packed_bert.backends.torch_backend import TorchRunner  # noqa: E402
from packed_bert.model import BERT_TINY  # noqa: E402
from packed_bert.model.weights import load_model  # noqa: E402
from packed_bert.packing import PackedBatch, pack_batch, padded_batches, sorted_batches, unpack  # noqa: E402

FIELD = {"bert-99": 9224.0, "bert-99.9": 8165.0}  # NVIDIA H200 per GPU, MLPerf v4.1 Offline
REPORT: dict[str, Any] = {"sections": {}, "errors": {}}
DEADLINE = [0.0]


def left() -> float:
    return DEADLINE[0] - time.monotonic()


def section(name: str, fn: Callable[[], Any], min_left: float = 20.0) -> None:
    if left() < min_left:
        REPORT["errors"][name] = f"skipped: {left():.0f} s left"
        print(f"[{name}] skipped (time)", flush=True)
        return
    start = time.monotonic()
    try:
        REPORT["sections"][name] = fn()
    except Exception as exc:  # keep going: one broken section must not lose the rest
        REPORT["errors"][name] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    print(
        f"[{name}] {time.monotonic() - start:.1f} s: {json.dumps(REPORT['sections'].get(name), default=str)[:600]}",
        flush=True,
    )


def cuda_time(fn: Callable[[], Any], repeats: int = 1) -> float:
    """Seconds per call, timed with CUDA events (the call itself also syncs to the host)."""
    fn()
    torch.cuda.synchronize()
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    begin.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return begin.elapsed_time(end) / 1e3 / repeats


def env() -> dict[str, Any]:
    props = torch.cuda.get_device_properties(0)
    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": props.name,
        "capability": list(torch.cuda.get_device_capability(0)),
        "memory_gib": round(props.total_memory / 2**30, 1),
        "fp8": hasattr(torch, "float8_e4m3fn"),
    }


def peaks() -> dict[str, float]:
    n = 8192
    out: dict[str, float] = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)

        def mm(a: torch.Tensor = a, b: torch.Tensor = b) -> torch.Tensor:
            return torch.matmul(a, b)

        out[name] = 2 * n**3 / cuda_time(mm, 10) / 1e12
    try:
        a8 = torch.randn(n, n, device="cuda").to(torch.float8_e4m3fn)
        b8 = torch.randn(n, n, device="cuda").to(torch.float8_e4m3fn).t()
        one = torch.ones((), device="cuda")
        out["fp8"] = (
            2
            * n**3
            / cuda_time(lambda: torch._scaled_mm(a8, b8, scale_a=one, scale_b=one, out_dtype=torch.bfloat16), 10)
            / 1e12
        )
    except Exception as exc:
        REPORT["errors"]["peak_fp8"] = repr(exc)
    try:
        a8 = torch.randint(-128, 127, (n, n), device="cuda", dtype=torch.int8)
        b8 = torch.randint(-128, 127, (n, n), device="cuda", dtype=torch.int8)
        out["int8"] = 2 * n**3 / cuda_time(lambda: torch._int_mm(a8, b8), 10) / 1e12
    except Exception as exc:
        REPORT["errors"]["peak_int8"] = repr(exc)
    return {k: round(v, 1) for k, v in out.items()}  # TFLOP/s


def _alone(
    model: torch.nn.Module, ids: np.ndarray, seg: np.ndarray, lens: np.ndarray, dtype: torch.dtype
) -> list[np.ndarray]:
    out = []
    with torch.inference_mode():
        for i, n in enumerate(lens.tolist()):
            t = [torch.from_numpy(a[i : i + 1, :n].copy()).cuda() for a in (ids, seg)]
            pos = torch.arange(n, device="cuda", dtype=torch.int32)[None]
            sl = torch.tensor([[n]], device="cuda", dtype=torch.int32)
            out.append(model(t[0], t[1], pos, sl)[0].float().cpu().numpy())
    return out


def correctness() -> dict[str, Any]:
    res: dict[str, Any] = {}
    for label, spec, count in (("tiny", "tiny", 24), ("large", "random", 12)):
        base = load_model(spec) if spec == "random" else load_model("tiny")
        vocab = BERT_TINY.vocab_size if spec == "tiny" else 30522
        ids, seg, lens = sample_features(count, seed=3, vocab=vocab)
        for prec, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
            model = copy.deepcopy(base).to("cuda", dtype).eval()
            want = _alone(model, ids, seg, lens, dtype)
            packed = pack_batch(ids, seg, lens)
            for mode, graphs, varlen in (
                ("packed+graphs", True, False),
                ("packed", False, False),
                ("varlen", False, True),
            ):
                key = f"{label} {prec} {mode} vs alone"
                try:
                    runner = TorchRunner(model, prec, "cuda", cuda_graphs=graphs, varlen=varlen)
                    batches = [packed] if mode != "varlen" else sorted_batches(ids, seg, lens, 8)
                    got: dict[int, np.ndarray] = {}
                    for b in batches:
                        for idx, seq in zip(
                            np.sort(b.sample_index[b.sample_index >= 0]), unpack(b, runner.infer(b)), strict=True
                        ):
                            got[int(idx)] = seq
                    res[key] = max(float(np.abs(got[i] - want[i]).max()) for i in range(count))
                except Exception as exc:  # one mode failing must not hide the others
                    REPORT["errors"][key] = f"{type(exc).__name__}: {exc}"[:300]
            del model
        torch.cuda.empty_cache()
    return res


def low_precision_agreement() -> dict[str, Any]:
    """Span agreement of bert-99 fp8/int8 with fp16 on BERT-Large random weights (a smoke check)."""
    base = load_model("random")
    ids, seg, lens = sample_features(96, seed=5)
    packed = pack_batch(ids, seg, lens)
    ref = unpack(packed, TorchRunner(copy.deepcopy(base), "fp16", "cuda", cuda_graphs=False).infer(packed))
    out: dict[str, Any] = {}
    for prec in ("fp8", "int8"):
        try:
            got = unpack(packed, TorchRunner(copy.deepcopy(base), prec, "cuda", cuda_graphs=False).infer(packed))
            same = np.mean(
                [
                    np.argmax(a[:, 0]) == np.argmax(b[:, 0]) and np.argmax(a[:, 1]) == np.argmax(b[:, 1])
                    for a, b in zip(got, ref, strict=True)
                ]
            )
            out[prec] = {
                "argmax_agreement_vs_fp16": round(float(same), 3),
                "max_abs_diff": round(max(float(np.abs(a - b).max()) for a, b in zip(got, ref, strict=True)), 4),
            }
        except Exception as exc:
            out[prec] = f"{type(exc).__name__}: {exc}"
    return out


def row_slices(packed: PackedBatch, rows: int) -> list[PackedBatch]:
    """``packed`` cut into batches of ``rows`` rows (the last one shorter)."""
    fields = ("input_ids", "segment_ids", "position_ids", "seq_lens", "sample_index")
    return [PackedBatch(*(getattr(packed, f)[s : s + rows] for f in fields)) for s in range(0, packed.num_rows, rows)]


def throughput(precisions: list[str], samples: int, budget_s: float) -> list[dict[str, Any]]:
    ids, seg, lens = sample_features(samples, seed=0)
    flops = real_token_flops(lens)
    plans: dict[str, tuple[list[PackedBatch], bool, bool]] = {}
    packed = pack_batch(ids, seg, lens)
    rows = 256
    packed_batches = row_slices(packed, rows)
    plans["packed+graphs"] = (packed_batches, True, False)
    plans["packed"] = (packed_batches, False, False)
    plans["sorted varlen"] = (sorted_batches(ids, seg, lens, 512), False, True)
    plans["sorted padded"] = (sorted_batches(ids, seg, lens, 512), False, False)
    plans["padded"] = (padded_batches(ids, seg, lens, rows), False, False)
    base = load_model("random")
    out: list[dict[str, Any]] = []
    for prec in precisions:
        try:
            runner = TorchRunner(copy.deepcopy(base), prec, "cuda")
        except Exception as exc:
            REPORT["errors"][f"throughput {prec}"] = f"{type(exc).__name__}: {exc}"
            continue
        for mode, (batches, graphs, varlen) in plans.items():
            if left() < budget_s:
                REPORT["errors"][f"throughput {prec} {mode}"] = "skipped: time"
                continue
            runner.static_shape, runner.varlen = graphs, varlen
            try:

                def run_all(bs: list[PackedBatch] = batches, r: TorchRunner = runner) -> None:
                    for b in bs:
                        r.infer(b)

                secs = cuda_time(run_all, 2)
                out.append(
                    {
                        "precision": prec,
                        "batching": mode,
                        "samples_per_s": round(samples / secs, 1),
                        "tflops_real": round(flops / secs / 1e12, 1),
                    }
                )
                print(json.dumps(out[-1]), flush=True)
            except Exception as exc:
                REPORT["errors"][f"throughput {prec} {mode}"] = f"{type(exc).__name__}: {exc}"
        del runner
        torch.cuda.empty_cache()
    return out


def markdown() -> str:
    s = REPORT["sections"]
    lines = [
        "# GPU check",
        "",
        f"Environment: `{json.dumps(s.get('env'))}`",
        "",
        f"Matmul peaks (TFLOP/s, 8192^3): `{json.dumps(s.get('peaks'))}`",
        "",
    ]
    if s.get("correctness"):
        lines += ["| correctness (max abs diff vs each sequence alone) | value |", "| --- | ---: |"]
        lines += [f"| {k} | {v:.2e} |" for k, v in s["correctness"].items()]
        lines.append("")
    if s.get("low_precision"):
        lines += [f"bert-99 low precision vs fp16: `{json.dumps(s['low_precision'])}`", ""]
    bf16 = (s.get("peaks") or {}).get("bf16")
    lines += [
        "| precision | batching | samples/s | vs field (H200) | TFLOP/s real tokens | of bf16 peak |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in s.get("throughput") or []:
        field = FIELD["bert-99"] if r["precision"] in ("fp8", "int8") else FIELD["bert-99.9"]
        frac = f"{100 * r['tflops_real'] / bf16:.0f}%" if bf16 else "-"
        lines.append(
            f"| {r['precision']} | {r['batching']} | {r['samples_per_s']} | {r['samples_per_s'] / field:.2f} | {r['tflops_real']} | {frac} |"
        )
    if REPORT["errors"]:
        lines += ["", "Errors / skipped:", *[f"- {k}: {v}" for k, v in REPORT["errors"].items()]]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget", type=float, default=430.0, help="seconds for the whole check")
    ap.add_argument("--samples", type=int, default=4096)
    args = ap.parse_args()
    DEADLINE[0] = time.monotonic() + args.budget
    args.out.mkdir(parents=True, exist_ok=True)
    if not torch.cuda.is_available():
        REPORT["errors"]["env"] = "no CUDA device"
    else:
        torch.backends.cuda.matmul.allow_tf32 = False
        section("env", env, 0)
        section("peaks", peaks)
        section("correctness", correctness, 60)
        section("low_precision", low_precision_agreement, 60)
        fast = "fp8" if REPORT["sections"].get("env", {}).get("capability", [0])[0] >= 9 else "int8"
        section("throughput", lambda: throughput(["fp16", fast, "bf16"], args.samples, 12.0), 30)
    (args.out / "gpu_check.json").write_text(json.dumps(REPORT, indent=2, default=str))
    (args.out / "gpu_check.md").write_text(markdown())
    print(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
