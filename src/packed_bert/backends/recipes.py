"""Precision recipes: which numeric formats each MLPerf model may run in, on which runtime.

``bert-99`` must reach 99% of the fp32 F1, so int8 (ONNX Runtime, OpenVINO and PyTorch on CPU;
int8/fp8 on CUDA) is allowed. ``bert-99.9`` must reach 99.9%, so fp16, bf16 or fp32, or int8 with
the FFN output layer kept in bf16 (``int8-bf16``, PyTorch on our AMX kernels: 100.056% of fp32 on
the trained MiniLM, where int8 everywhere keeps 99.812%) or fp32 (``int8-fp32``, ONNX Runtime or
OpenVINO: 100.222%, and 100.027% with oneDNN capped at VNNI). Each recipe's F1 with a
real trained checkpoint is measured by ``benchmarks/recipe_accuracy.py`` (docs/performance.md);
a default keeps a margin (>= 99.5% / >= 99.95% of fp32) with logits that do not depend on
batch-mates. The CPU default for both models is ONNX Runtime fp32: fp32's F1 on any arithmetic,
for a CPU nothing here has measured (the cpu system's ``other`` class). Faster recipes are named
per CPU class (``cpu_class``; ``[precision_by_cpu]`` in systems/cpu.toml: on AMX packed-bert's own
AMX kernels, int8 for bert-99 and int8-bf16 for bert-99.9), each with its measurement; bf16 is not a
default where a CPU lacks bf16 hardware (oneDNN emulates it, 50-300x slower than fp32), nor int8
where its arithmetic was not measured (its logits differ between ISAs).
"""

from __future__ import annotations

from packed_bert.errors import UserError

MODEL_PRECISIONS: dict[str, tuple[str, ...]] = {
    "bert-99": ("fp32", "bf16", "fp16", "int8", "int8-bf16", "int8-fp32", "fp8"),
    "bert-99.9": ("fp32", "bf16", "fp16", "int8-bf16", "int8-fp32"),
}

# (backend, device kind) -> precisions the runtime implements.
BACKEND_PRECISIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("torch", "cpu"): ("fp32", "bf16", "fp16", "int8", "int8-bf16"),
    ("torch", "cuda"): ("fp32", "fp16", "bf16", "int8", "fp8"),
    ("onnxruntime", "cpu"): ("fp32", "int8", "int8-fp32"),
    ("openvino", "cpu"): ("fp32", "bf16", "int8", "int8-bf16", "int8-fp32"),
    ("null", "cpu"): ("fp32", "bf16", "fp16", "int8", "fp8"),
    ("sim", "sim"): ("fp32", "bf16", "fp16", "int8", "fp8"),
}

# The recipe a system uses unless its file says otherwise: (model, device kind) -> (backend, precision).
DEFAULT_RECIPES: dict[tuple[str, str], tuple[str, str]] = {
    ("bert-99", "cpu"): ("onnxruntime", "fp32"),
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
