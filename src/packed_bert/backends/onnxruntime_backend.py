"""ONNX Runtime (CPU) runner: the packed model in fp32, or int8 for bert-99.

``graph="fused"`` (default) is the model written with ONNX Runtime's fused attention operator
(``onnx_fused``); ``graph="traced"`` is ``torch.onnx.export`` of the PyTorch model
(``onnx_export``). Both give the same logits; the fused one is faster (docs/backends.md).
``graph="sequence"`` is the fused graph with attention per sequence (``attention_feeds.sequence_feeds``),
``graph="sequence-ort"`` the same in ONNX Runtime's own operators (``onnx_fused``: MultiHeadAttention
on blocks whose lengths the host cuts per batch, ``attention_feeds.slot_feeds``; int8 layers with the
bias inside the kernel).
SkipLayerNormalization fusion is switched off: on this CPU its kernel took five times as long
as the LayerNormalization + Add it replaces (ORT 1.32 profile, docs/performance.md).
Int8 (``quant``): ``rows`` (default) has per-token activation scales and ``calibrated`` fixed
ones (``onnx_int8``), so a sample's logits never depend on its batch-mates (bit-for-bit in
sorted and padded batches); ``dynamic``/``mixed`` are ONNX Runtime's dynamic quantization (one
scale per batch tensor) and ``static`` its QDQ quantization, kept for comparison
(benchmarks/recipe_accuracy.py). ``*-mixed`` keep the FFN output projections in fp32.
Exported and quantized models are cached (``onnx_export.cache_path``). ``static_rows=N`` makes
a fixed-shape session: every batch is run as [N, 384] (smaller batches are padded with empty
rows, longer ones split), the way a static-shape accelerator sees it. ``infer`` may be called
from several threads (ONNX Runtime sessions are thread-safe); the harness makes one runner per
device and its pool calls it from one thread at a time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from packed_bert.backends._model import fingerprint, load
from packed_bert.backends.attention_feeds import PER_SEQUENCE, graph_feeds
from packed_bert.backends.base import ROW_LEN, BatchLike, batch_shape
from packed_bert.backends.denormals import flushed
from packed_bert.backends.onnx_export import INPUT_NAMES, cache_path, export
from packed_bert.backends.onnx_fused import export_fused
from packed_bert.backends.quantize import Calibration, calibration_features, features_digest
from packed_bert.errors import UserError
from packed_bert.model.linears import every
from packed_bert.terms import Precision

# Fused-graph int8 with scales that do not depend on batch-mates (onnx_int8): mode -> scheme per
# layer kind (model.linears: Q|K|V, attention output, FFN input, FFN output)
FUSED_INT8: dict[str, dict[str, str]] = {
    "rows": every("rows"),
    "rows-mixed": every("rows", ffn_output="fp32"),
    "calibrated": every("static"),
    "calibrated-mixed": every("static", ffn_output="fp32"),
    # fixed scales where a layer's output is wide (per-token scaling costs a pass over it),
    # per-token scales on the 1024-wide outputs
    "hybrid": every("static", attention_output="rows", ffn_output="rows"),
    # int8 weights, floating-point activations: OpenVINO's int8 (it quantizes per token itself)
    "weights": every("weights"),
    # calibrated fixed scales as QuantizeLinear/DequantizeLinear pairs: OpenVINO's static int8
    "qdq": every("qdq"),
    # the same after SmoothQuant (quantize.SMOOTHQUANT_ALPHA): each input channel's range shared with the weight's row
    "smoothquant": every("qdq"),
    # the same with the FFN output layer in floating point (fp32 here; OpenVINO's bf16 hint where the
    # CPU has bf16): GELU's heavy-tailed output is where int8 loses F1 (torch_int8's int8-bf16)
    "smoothquant-mixed": every("qdq", ffn_output="fp32"),
}
SMOOTHQUANT = ("smoothquant", "smoothquant-mixed")  # the modes calibrated with SmoothQuant
FLOAT_FFN_OUTPUT = "smoothquant-mixed"  # the graph precisions int8-fp32 and int8-bf16 name


def int8_graph(precision: str, quant: str, default: str) -> tuple[str, str]:
    """(the graph's precision, its quant mode) for a runner asked for ``precision`` and ``quant``
    (``default``: the runner's own quant default): ``int8-fp32`` and ``int8-bf16`` are the
    SmoothQuant int8 graph with the FFN output layers in float (the runtime computes them in fp32
    or bf16)."""
    if precision not in (Precision.INT8_FP32, Precision.INT8_BF16):
        return precision, quant
    if quant not in (default, FLOAT_FFN_OUTPUT):
        raise UserError(f"precision {precision} is quant={FLOAT_FFN_OUTPUT}; drop quant={quant}")
    return Precision.INT8, FLOAT_FFN_OUTPUT


QUANT_MODES = ("dynamic", "mixed", "static", *FUSED_INT8)
DEFAULT_QUANT = "rows"  # batch-invariant, 99.8% of fp32 F1 (docs/performance.md)
GRAPHS = ("fused", "traced", *PER_SEQUENCE)  # sequence*: the fused graph with per-sequence attention
DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]


def default_graph(precision: str, quant: str) -> str:
    """Static (QDQ) quantization needs the traced graph: its calibrator cannot see through the
    fused attention operator and would leave the model in fp32."""
    return "traced" if precision == "int8" and quant == "static" else "fused"


def prepare_model(
    model_spec: Any,
    precision: str,
    quant: str = DEFAULT_QUANT,
    seed: int = 0,
    graph: str | None = None,
    calibration: Calibration | None = None,
) -> Path:
    """The cached ONNX file for ``model_spec`` at ``precision`` (exporting/quantizing if needed).

    ``calibration`` gives the features of the 100 MLPerf calibration questions
    (``squad.calibration``); only the calibrated int8 modes call it, once, when they build."""
    if quant not in QUANT_MODES:
        raise UserError(f"onnxruntime: quant must be one of {', '.join(QUANT_MODES)}, got {quant!r}")
    graph = graph or default_graph(precision, quant)
    if graph not in GRAPHS:
        raise UserError(f"onnxruntime: graph must be one of {', '.join(GRAPHS)}, got {graph!r}")
    if graph == "fused" and precision == "int8" and quant == "static":
        raise UserError("onnxruntime: static quantization needs graph=traced (the fused attention stays fp32)")
    weights = fingerprint(model_spec, seed)
    model = None
    config: object = getattr(model_spec, "config", None)
    if config is None:
        model = load(model_spec, seed)
        config = getattr(model, "config", None)
    fp32 = cache_path(weights, config, "fp32", graph)
    if not fp32.exists():
        built = model if model is not None else load(model_spec, seed)
        if graph == "traced":
            export(built, fp32)
        else:
            export_fused(built, fp32, attention=graph if graph in PER_SEQUENCE else "mask")
    if precision == "fp32":
        return fp32
    if precision != "int8":
        raise UserError(f"onnxruntime: precision {precision!r} is not available; use fp32 or int8")
    if quant in FUSED_INT8:
        if graph == "traced":
            raise UserError(f"onnxruntime: quant={quant} is written into the fused graph; use graph=fused")
        return _fused_int8(model_spec, seed, weights, config, quant, graph, calibration)
    features = calibration_features(calibration, f"quant={quant}") if quant == "static" else None
    calibrated_on = f"-cal{features_digest(features)}" if features is not None else ""
    out = cache_path(weights, config, "int8", f"{quant}-{graph}{calibrated_on}")
    if not out.exists():
        from packed_bert.backends import quantize

        if quant == "dynamic":
            quantize.quantize_dynamic(fp32, out)
        elif quant == "mixed":
            quantize.quantize_dynamic(fp32, out, quantize.fp32_matmuls(fp32))
        else:
            assert features is not None  # quant == "static"
            quantize.quantize_static(fp32, out, features)
    return out


def _fused_int8(
    model_spec: Any, seed: int, weights: str, config: object, quant: str, graph: str, calibration: Calibration | None
) -> Path:
    """The fused graph with int8 layers whose scales are per token or fixed (``onnx_int8``)."""
    from packed_bert.backends.onnx_int8 import Int8Recipe

    recipe = Int8Recipe(FUSED_INT8[quant])
    features = calibration_features(calibration, f"quant={quant}") if recipe.calibrated else None
    calibrated_on = f"-cal{features_digest(features)}" if features is not None else ""
    out = cache_path(weights, config, "int8", f"{quant}-{graph}-{recipe.key()}{calibrated_on}")
    if out.exists():
        return out
    model = load(model_spec, seed)
    if quant in SMOOTHQUANT:
        from packed_bert.backends.quantize import calibrated_smoothquant

        assert features is not None  # smoothquant calibrates; loaded above, not again
        smooth, ranges = calibrated_smoothquant(model, model_spec, seed, lambda: features)  # the graphs share it
        recipe = Int8Recipe(recipe.schemes, ranges, smooth)
    elif recipe.calibrated:
        from packed_bert.backends.quantize import calibrate_ranges

        assert features is not None
        recipe = Int8Recipe(recipe.schemes, calibrate_ranges(model, features))
    return export_fused(model, out, recipe, graph if graph in PER_SEQUENCE else "mask")


class OrtRunner:
    """An ``onnxruntime.InferenceSession`` on the CPU over the packed model."""

    name = "onnxruntime"
    simulated = False

    def __init__(
        self,
        model_spec: Any = "random",
        precision: str = "fp32",
        device: str = "cpu",
        *,
        quant: str = DEFAULT_QUANT,
        graph: str | None = None,
        static_rows: int | None = None,
        threads: int | None = None,
        seed: int = 0,
        calibration: Calibration | None = None,
    ) -> None:
        import onnxruntime as ort

        if not device.startswith("cpu"):
            raise UserError(f"onnxruntime backend runs on cpu only, not {device!r}")
        self.precision = precision
        self.device = device
        built, quant = int8_graph(precision, quant, DEFAULT_QUANT)
        graph = graph or default_graph(built, quant)
        self.path = prepare_model(model_spec, built, quant, seed, graph, calibration)
        self.per_sequence = graph in PER_SEQUENCE
        self.attention = graph if self.per_sequence else "mask"  # what the graph's inputs hold (graph_feeds)
        if self.per_sequence and static_rows is not None:
            raise UserError(f"onnxruntime: graph={graph} takes no static_rows (its attention inputs vary per batch)")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.set_denormal_as_zero", "1")  # see backends/denormals.py
        self.static_rows = static_rows
        self.static_shape = static_rows is not None
        if static_rows is not None:
            if static_rows < 1:
                raise UserError(f"onnxruntime: static_rows must be positive, got {static_rows}")
            for dim in ("rows",):
                opts.add_free_dimension_override_by_name(dim, static_rows)
            opts.add_free_dimension_override_by_name("length", ROW_LEN)
        with flushed():  # the session's threads keep flushing; this one gets its mode back
            self.session = ort.InferenceSession(
                str(self.path), opts, providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS
            )
        shape = f", fixed shape [{static_rows},{ROW_LEN}]" if self.static_shape else ""
        q = f" ({quant} quantization)" if built == "int8" else ""
        self.detail = (
            f"onnxruntime {ort.__version__} {precision}{q}, {graph} graph, on cpu, "
            f"{opts.intra_op_num_threads} threads{shape}"
        )

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        with flushed():  # this thread works in the run too
            out: np.ndarray = self.session.run(None, feeds)[0]
        return out

    def infer(self, batch: BatchLike) -> np.ndarray:
        feeds = graph_feeds(batch, self.attention)
        if not self.static_shape:
            return self._run(feeds)
        arrays = list(feeds.values())
        rows, length = batch_shape(batch)
        if length != ROW_LEN:
            raise UserError(f"fixed-shape onnxruntime session takes [N,{ROW_LEN}] rows, got length {length}")
        n = int(self.static_rows or 1)
        out = np.empty((rows, length, 2), dtype=np.float32)
        for start in range(0, rows, n):
            part = [a[start : start + n] for a in arrays]
            got = part[0].shape[0]
            if got < n:
                part = [np.concatenate([a, np.zeros((n - got, a.shape[1]), np.int32)]) for a in part]
            out[start : start + got] = self._run(dict(zip(INPUT_NAMES, part, strict=True)))[:got]
        return out
