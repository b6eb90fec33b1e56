"""Precision recipes: which numeric formats each MLPerf model may run in, on which runtime.

``bert-99`` must reach 99% of the fp32 F1, so int8 (ONNX Runtime, OpenVINO and PyTorch on CPU;
int8/fp8 on CUDA) is allowed. ``bert-99.9`` must reach 99.9%, so only fp16, bf16 or fp32. Each recipe's F1 with a
real trained checkpoint is measured by ``benchmarks/recipe_accuracy.py`` (docs/performance.md);
the CPU defaults are the fastest that keep a margin (>= 99.5% / >= 99.95% of fp32) with logits
that do not depend on batch-mates: batch-invariant PyTorch bf16 (99.94%, as fast here as ONNX
Runtime's dynamic int8, which kept 98.9% and depends on batch-mates), and ONNX Runtime fp32 (bf16
measured 99.93-99.94%, short of 99.95%). These are the defaults of a CPU without a measured
table of its own; a system file may name other recipes per CPU class (``cpu_class``; on AMX the
cpu system runs packed-bert's own AMX kernels: int8 for bert-99, bf16 for bert-99.9).
"""

from __future__ import annotations

from packed_bert.errors import UserError

MODEL_PRECISIONS: dict[str, tuple[str, ...]] = {
    "bert-99": ("fp32", "bf16", "fp16", "int8", "fp8"),
    "bert-99.9": ("fp32", "bf16", "fp16"),
}

# (backend, device kind) -> precisions the runtime implements.
BACKEND_PRECISIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("torch", "cpu"): ("fp32", "bf16", "fp16", "int8"),
    ("torch", "cuda"): ("fp32", "fp16", "bf16", "int8", "fp8"),
    ("onnxruntime", "cpu"): ("fp32", "int8"),
    ("openvino", "cpu"): ("fp32", "bf16", "int8"),
    ("null", "cpu"): ("fp32", "bf16", "fp16", "int8", "fp8"),
    ("sim", "sim"): ("fp32", "bf16", "fp16", "int8", "fp8"),
}

# The recipe a system uses unless its file says otherwise: (model, device kind) -> (backend, precision).
DEFAULT_RECIPES: dict[tuple[str, str], tuple[str, str]] = {
    ("bert-99", "cpu"): ("torch", "bf16"),
    ("bert-99.9", "cpu"): ("onnxruntime", "fp32"),
    ("bert-99", "cuda"): ("torch", "fp8"),
    ("bert-99.9", "cuda"): ("torch", "fp16"),
}


def device_kind(device: str) -> str:
    """``cuda:1`` -> ``cuda``; ``sim:3`` -> ``sim``; ``cpu`` -> ``cpu``."""
    return device.split(":", 1)[0].lower()


def check_precision(backend: str, device: str, precision: str, model: str | None = None) -> None:
    """Raise ``UserError`` (one line) if the runtime lacks ``precision`` or ``model`` forbids it."""
    kind = device_kind(device)
    if backend in ("null", "sim"):
        kind = "cpu" if backend == "null" else "sim"
    supported = BACKEND_PRECISIONS.get((backend, kind))
    if supported is None:
        raise UserError(f"backend {backend!r} does not run on device {device!r}")
    if precision not in supported:
        raise UserError(
            f"backend {backend!r} on {kind} has no precision {precision!r}; choose one of {', '.join(supported)}"
        )
    if model is not None:
        allowed = MODEL_PRECISIONS.get(model)
        if allowed is None:
            raise UserError(f"unknown model {model!r}; choose one of {', '.join(MODEL_PRECISIONS)}")
        if precision not in allowed:
            raise UserError(
                f"precision {precision!r} is not allowed for {model} (accuracy target); use one of {', '.join(allowed)}"
            )


def default_recipe(model: str, device: str) -> tuple[str, str]:
    """(backend, precision) for ``model`` on ``device``."""
    key = (model, device_kind(device))
    if key not in DEFAULT_RECIPES:
        raise UserError(f"no precision recipe for {model} on {device!r}")
    return DEFAULT_RECIPES[key]
