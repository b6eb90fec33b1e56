"""OpenVINO (CPU) runner: the fused ONNX graph (``onnx_fused``) compiled by OpenVINO's CPU plugin.

OpenVINO reads the same ONNX file ONNX Runtime runs (its ONNX front end takes the
``com.microsoft`` Attention and Gelu operators), so both runtimes see the same weights and
graph. Precisions:

- ``fp32``: ``INFERENCE_PRECISION_HINT=f32``.
- ``bf16``: the fp32 graph with ``INFERENCE_PRECISION_HINT=bf16``: the plugin runs matmuls and
  most element-wise work in bf16 (AMX / AVX512-BF16 where the CPU has them).
- ``int8``, ``quant="smoothquant"`` (default): static int8. Every encoder linear layer's input
  is divided per channel by its SmoothQuant factors (the weight's rows multiplied by them), then
  rounded to a fixed uint8 grid calibrated on the 100 MLPerf calibration questions
  (``QuantizeLinear``/``DequantizeLinear``, ``onnx_int8``), which the plugin turns into
  FakeQuantize + int8 FullyConnected kernels (VNNI / AMX). It needs ``calibration``
  (``squad.calibration.load_calibration``). 99.59% of fp32 F1 on the trained checkpoint,
  bit-exact in any batch, about 1.4x the per-token recipe on the avx512-bf16 class.
  ``quant="smoothquant-mixed"``: the FFN output layers in the activations' precision instead;
  precisions ``int8-fp32`` and ``int8-bf16`` name that graph with those layers (and the rest of
  the float work) in f32 or bf16.
  ``quant="qdq"``: the same without smoothing (98.1%).
- ``int8`` runs all but its int8 layers in bf16 where the CPU multiplies bf16 in hardware
  (avx512_bf16, AMX) and in f32 elsewhere (``int8_activations``).
- ``int8``, ``quant="weights"``: int8 weights only (``DequantizeLinear`` of int8 constants per
  output column); ``dynamic_quant`` (a group size, default ``PER_TOKEN_GROUP`` = 1024) has the
  plugin quantize each token's activations to int8 on the fly, one scale per ``dynamic_quant``
  values of a token: 99.86% of fp32 F1, no calibration; ``dynamic_quant=0`` leaves activations
  in bf16.

Attention (``attention``): ``sequence`` (default) runs it per sequence on blocks of the
sequence's own length rounded up to 64 (``attention_feeds.sequence_feeds``), and the plugin's
matmuls give a token row the same bits whatever the number of rows, so a sample's logits are
bit for bit the same alone, sorted, padded or packed (tests check it). ``mask`` is the Attention
operator over the whole masked row: faster here (no gathers), but its result depends in the last
bits on the row length and the sample's place in the row (same best spans in the checks so far).
Lengths (``length_step``, default ``LENGTH_STEP`` = 16): a batch's rows are padded with empty
tokens to a multiple of 16, so the plugin sees at most 24 lengths; ``warm(rows)`` runs each once
with blank rows (``length_buckets``), which the harness does before a SingleStream run: a first
call at a new shape costs 25-50% more. One infer request per runner: the harness calls
``infer`` from one thread at a time. ``perf_count`` turns on the plugin's per-node counters
(``node_times``; benchmarks/ov_profile.py).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from packed_bert.backends.attention_feeds import graph_feeds
from packed_bert.backends.base import BatchLike, batch_shape
from packed_bert.backends.cpu_class import CAP_VARIABLES, isa_cap, native_bf16
from packed_bert.backends.denormals import flushed
from packed_bert.backends.length_buckets import (
    LENGTH_STEP,
    blank_rows,
    bucket_length,
    bucket_lengths,
    check_step,
    lengthened,
)
from packed_bert.backends.onnxruntime_backend import int8_graph, prepare_model
from packed_bert.backends.quantize import SMOOTHQUANT_ALPHA, Calibration
from packed_bert.errors import UserError

# the activations' precision per recipe (int8: where the CPU has bf16, ``int8_activations``)
HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "bf16", "int8-fp32": "f32", "int8-bf16": "bf16"}
OV_QUANT = ("smoothquant", "smoothquant-mixed", "qdq", "weights")  # int8 graphs (onnxruntime_backend.FUSED_INT8)
DEFAULT_INT8 = "smoothquant"  # static int8 (docs/performance-history.md, avx512-bf16 class)
STATIC_DETAIL = {
    "smoothquant": f", static int8 activations (SmoothQuant alpha {SMOOTHQUANT_ALPHA}, calibrated)",
    "smoothquant-mixed": f", static int8 activations (SmoothQuant alpha {SMOOTHQUANT_ALPHA}, calibrated), FFN output"
    " layers in the activations' precision",
    "qdq": ", static int8 activations (calibrated)",
}
PER_TOKEN_GROUP = 1024  # int8's default dynamic_quant group (docs/performance-history.md, avx512-bf16 class)


def int8_activations() -> str:
    """The int8 recipe's precision for all but its int8 layers: bf16 where the CPU multiplies bf16
    in hardware, else f32. OpenVINO takes a bf16 hint on any AVX-512 CPU and emulates it there:
    with kernels capped to a VNNI-only CPU's (``ONEDNN_MAX_CPU_ISA``) the recipe ran 0.99 samples/s
    with bf16 against 3.77 with f32 (docs/performance-history.md, the avx512-vnni class, emulated)."""
    return HINTS["int8"] if native_bf16() else "f32"


def _last_line(exc: BaseException) -> str:
    """The last non-empty line of a runtime's multi-line message (OpenVINO's names the node)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _cap_hint() -> str:
    cap = isa_cap()
    return f", or unset {'/'.join(CAP_VARIABLES)} (oneDNN capped at {cap})" if cap else ""


class OvRunner:
    """An ``openvino`` compiled model on the CPU over the packed model."""

    name = "openvino"
    simulated = False
    static_shape = False

    def __init__(
        self,
        model_spec: Any = "random",
        precision: str = "bf16",
        device: str = "cpu",
        *,
        threads: int | None = None,
        dynamic_quant: int | None = None,
        quant: str = DEFAULT_INT8,
        attention: str = "sequence",
        length_step: int = LENGTH_STEP,
        seed: int = 0,
        calibration: Calibration | None = None,
        perf_count: bool = False,
    ) -> None:
        try:
            import openvino as ov
        except ImportError as exc:  # an optional runtime
            raise UserError("openvino backend: the openvino package is not installed (pip install openvino)") from exc
        if not device.startswith("cpu"):
            raise UserError(f"openvino backend runs on cpu only, not {device!r}")
        if precision not in HINTS:
            raise UserError(f"openvino backend: precision must be one of {', '.join(HINTS)}, got {precision!r}")
        if quant not in OV_QUANT:
            raise UserError(f"openvino backend: quant must be one of {', '.join(OV_QUANT)}, got {quant!r}")
        built, quant = int8_graph(precision, quant, DEFAULT_INT8)
        if dynamic_quant is None:
            dynamic_quant = PER_TOKEN_GROUP if precision == "int8" and quant == "weights" else 0
        if dynamic_quant < 0:
            raise UserError(f"openvino backend: dynamic_quant is a group size >= 0, got {dynamic_quant}")
        self.precision = precision
        self.device = device
        self.length_step = check_step(length_step)
        int8 = built == "int8"
        if attention not in ("mask", "sequence"):
            raise UserError(f"openvino backend: attention must be mask or sequence, got {attention!r}")
        self.attention = attention  # what the graph's inputs hold (graph_feeds)
        self.per_sequence = attention == "sequence"
        graph = "sequence" if self.per_sequence else "fused"
        self.path = prepare_model(
            model_spec, "int8" if int8 else "fp32", quant if int8 else "rows", seed, graph, calibration
        )
        count = threads or len(os.sched_getaffinity(0))
        hint = int8_activations() if precision == "int8" else HINTS[precision]
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": str(count),
            "INFERENCE_PRECISION_HINT": hint,
            "DYNAMIC_QUANTIZATION_GROUP_SIZE": str(dynamic_quant),
            "PERF_COUNT": "YES" if perf_count else "NO",
            "CPU_DENORMALS_OPTIMIZATION": "YES",  # see backends/denormals.py
        }
        core = ov.Core()
        with flushed():  # its threads keep flushing; this one gets its mode back
            try:
                self.compiled = core.compile_model(core.read_model(str(self.path)), "CPU", config)
            except RuntimeError as exc:  # e.g. bf16 under oneDNN capped below AVX-512: no kernel for a node
                raise UserError(
                    f"openvino backend: its CPU plugin cannot compile the {precision} model on this CPU "
                    f"({_last_line(exc)}); choose another --precision{_cap_hint()}"
                ) from exc
            self._request = self.compiled.create_infer_request()
        weights = ", int8 weights per column" if int8 else ""
        activations = STATIC_DETAIL.get(quant, "") if int8 else ""
        if dynamic_quant:
            activations += f", activations quantized per token (groups of {dynamic_quant})"
        attn = "per-sequence attention" if self.per_sequence else "attention over the masked row"
        self.detail = (
            f"openvino {ov.__version__} {precision} (inference precision {hint}{weights}{activations}), "
            f"fused graph, {attn}, lengths in steps of {self.length_step}, on cpu, {count} threads"
        )

    def infer(self, batch: BatchLike) -> np.ndarray:
        _, length = batch_shape(batch)
        padded = lengthened(batch, bucket_length(length, self.length_step))
        result = self._run(graph_feeds(padded, self.attention))
        return np.asarray(result[0], dtype=np.float32)[:, :length]

    def _run(self, feeds: dict[str, np.ndarray]) -> Any:
        with flushed():  # this thread works in the request too
            return self._request.infer(feeds)

    def node_times(self) -> list[tuple[str, str, float]]:
        """(layer type, kernel, seconds) of each node in the last ``infer``; needs ``perf_count``."""
        return [
            (info.node_type, info.exec_type, info.real_time.total_seconds())
            for info in self._request.get_profiling_info()
            if info.status == info.Status.EXECUTED
        ]

    def warm(self, rows: int) -> int:
        """Run every length a batch of ``rows`` rows can take once, on blank rows; how many."""
        lengths = bucket_lengths(self.length_step)
        for length in lengths:
            self._run(graph_feeds(blank_rows(rows, length), self.attention))
        return len(lengths)
