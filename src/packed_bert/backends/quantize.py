"""Int8 ONNX models for bert-99 on CPU.

``dynamic``: MatMul weights int8 per channel, activations quantized at run time (u8), no
calibration. ``mixed``: the same, but the FFN output projections stay fp32. ``static``: QDQ int8 with activation ranges calibrated (MinMax) on the features of
the 100 MLPerf calibration questions (``squad.calibration``, passed in by the caller) and on nothing else.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np

from packed_bert.cache import atomic_path
from packed_bert.errors import UserError

FFN_OUTPUT = re.compile(
    r"output[./]dense/MatMul$"
)  # traced: /layer.0/output/dense/MatMul; fused: layer.0.output.dense/MatMul


def fp32_matmuls(model_path: Path) -> list[str]:
    """Names of the FFN output projections (GELU outputs have the widest range), kept fp32 by ``mixed``."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [
        n.name for n in graph.node if n.op_type == "MatMul" and FFN_OUTPUT.search(n.name) and "attention" not in n.name
    ]


def quantize_dynamic(fp32_path: Path, out_path: Path, keep_fp32: list[str] | None = None) -> Path:
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    # _quiet_root_logger: ORT's advice to pre-process the model, printed on every export
    with atomic_path(out_path) as tmp, _quiet_root_logger():
        ort_quantize_dynamic(
            str(fp32_path),
            str(tmp),
            op_types_to_quantize=["MatMul", "Attention"],
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=keep_fp32 or [],
            # contrib operators have no ONNX shape inference: untyped values are float
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return out_path


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


CalibrationFeatures = Mapping[str, np.ndarray]  # input_ids / segment_ids / lengths (squad.calibration)
Calibration = Callable[[], CalibrationFeatures]  # called only by a mode that calibrates, when it builds


def features_digest(features: CalibrationFeatures) -> str:
    """A short content id of calibration features (part of a calibrated model's cache key)."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(features):
        a = np.ascontiguousarray(features[name])
        h.update(f"{name}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:12]


class _CalibrationReader:
    """Packed rows of the calibration features, a few rows per batch."""

    def __init__(self, feats: dict[str, np.ndarray], rows_per_batch: int = 2, max_rows: int | None = None) -> None:
        from packed_bert.packing import pack_batch

        batch = pack_batch(feats["input_ids"], feats["segment_ids"], feats["lengths"])
        rows = batch.num_rows if max_rows is None else min(max_rows, batch.num_rows)
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            {
                "input_ids": batch.input_ids[s : s + rows_per_batch],
                "segment_ids": batch.segment_ids[s : s + rows_per_batch],
                "position_ids": batch.position_ids[s : s + rows_per_batch],
                "seq_lens": batch.seq_lens[s : s + rows_per_batch],
            }
            for s in range(0, rows, rows_per_batch)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_static(
    fp32_path: Path, out_path: Path, calibration: CalibrationFeatures, max_rows: int | None = None
) -> Path:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    reader = _CalibrationReader(dict(calibration), max_rows=max_rows)
    with atomic_path(out_path) as tmp:
        ort_quantize_static(
            str(fp32_path),
            str(tmp),
            reader,  # type: ignore[arg-type]
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return out_path


ChannelRanges = dict[str, tuple[np.ndarray, np.ndarray]]  # layer input name -> per-channel (min [K], max [K])
SMOOTHQUANT_ALPHA = 0.8  # the migration strength (docs/performance-history.md: the calibration-set error is least here)


def calibration_features(calibration: Calibration | None, recipe: str) -> CalibrationFeatures:
    """The calibration features, or a one-line error naming ``recipe`` when a caller gave none."""
    if calibration is None:
        raise UserError(
            f"int8 {recipe} calibrates its scales on the 100 MLPerf calibration "
            "questions; give the runner calibration= (squad.calibration.load_calibration), as a run does"
        )
    return calibration()


def calibrated_smoothquant(
    model: object, model_spec: object, seed: int, calibration: Calibration | None
) -> tuple[dict[str, np.ndarray], dict[str, tuple[float, float]]]:
    """``calibrate_smoothquant`` of ``model`` (loaded from ``model_spec``), kept in the cache per
    weights, calibration set and alpha (a BERT-Large calibration takes a minute)."""
    from packed_bert.backends._model import fingerprint
    from packed_bert.cache import cache_dir

    features = calibration_features(calibration, "SmoothQuant")
    weights = fingerprint(model_spec if isinstance(model_spec, str) else cast(Any, model), seed)
    path = cache_dir() / "smoothquant" / f"{weights}-cal{features_digest(features)}-a{SMOOTHQUANT_ALPHA}.npz"
    if path.exists():
        with np.load(path) as saved:
            names = [str(n) for n in saved["names"]]
            smooth = {n: saved[f"smooth/{n}"] for n in names}
            ranges = {n: (float(lo), float(hi)) for n, (lo, hi) in zip(names, saved["ranges"], strict=True)}
        return smooth, ranges
    smooth, ranges = calibrate_smoothquant(model, features)
    names = sorted(smooth)
    arrays: dict[str, Any] = {f"smooth/{n}": smooth[n] for n in names}
    arrays.update(names=np.array(names), ranges=np.array([ranges[n] for n in names], np.float64))
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, **arrays)
    return smooth, ranges


def calibrate_smoothquant(
    model: object, calibration: CalibrationFeatures, alpha: float = SMOOTHQUANT_ALPHA
) -> tuple[dict[str, np.ndarray], dict[str, tuple[float, float]]]:
    """SmoothQuant factors of every encoder linear layer's input and the range of the input
    divided by them (``onnx_int8.smooth_factors``), from the calibration features."""
    import torch

    from packed_bert.backends.onnx_fused import site_weight
    from packed_bert.backends.onnx_int8 import smooth_factors

    channels = calibrate_channels(model, calibration)
    w = {k: v.detach().float().cpu().numpy() for k, v in cast(torch.nn.Module, model).state_dict().items()}
    return smooth_factors(channels, {n: site_weight(w, n) for n in channels}, alpha)


def calibrate_ranges(
    model: object, calibration: CalibrationFeatures, batch_size: int = 8
) -> dict[str, tuple[float, float]]:
    """(min, max) of every encoder linear layer's input over the real tokens of the 100
    calibration questions' features, run through the fp32 torch model (``onnx_int8`` names:
    the Q|K|V input is ``...attention.self``, the others the layer's own name)."""
    channels = calibrate_channels(model, calibration, batch_size)
    return {name: (float(lo.min()), float(hi.max())) for name, (lo, hi) in channels.items()}


def calibrate_channels(model: object, calibration: CalibrationFeatures, batch_size: int = 8) -> ChannelRanges:
    """Per input channel, (min, max) of every encoder linear layer's input over the real tokens
    of the calibration features (names as ``calibrate_ranges``)."""
    ranges: ChannelRanges = {}
    each_layer_input(model, calibration, lambda name, values: extend_ranges(ranges, name, values), batch_size)
    return ranges


def extend_ranges(ranges: ChannelRanges, name: str, values: Any) -> None:
    """Widen ``ranges[name]`` to the per-channel (min, max) of ``values`` (a torch [T, K])."""
    lo, hi = values.amin(dim=0).numpy(), values.amax(dim=0).numpy()
    old = ranges.get(name, (lo, hi))
    ranges[name] = (np.minimum(old[0], lo), np.maximum(old[1], hi))


def layer_kind(name: str) -> str:
    """The ``model.linears`` kind of a calibrated layer input's name (``calibrate_ranges``)."""
    from packed_bert.model.linears import ATTENTION_OUTPUT, FFN_INPUT, FFN_OUTPUT, QKV

    for suffix, kind in (
        (".attention.self", QKV),
        (".attention.output.dense", ATTENTION_OUTPUT),
        (".intermediate.dense", FFN_INPUT),
        (".output.dense", FFN_OUTPUT),
    ):
        if name.endswith(suffix):
            return kind
    raise ValueError(f"{name} is no encoder linear layer's input")


def each_layer_input(
    model: object, calibration: CalibrationFeatures, visit: Callable[[str, Any], None], batch_size: int = 8
) -> None:
    """Run the calibration features through the fp32 torch ``model`` and call ``visit(name,
    values)`` with every encoder linear layer's input over each batch's real tokens (a torch
    [T, K]; names as ``calibrate_ranges``)."""
    import torch

    from packed_bert.packing import sorted_batches

    feats = calibration
    module = cast(torch.nn.Module, model).float().eval()
    real: list[torch.Tensor] = []  # the current batch's real-token mask [R, L]

    def hook(name: str) -> Callable[..., None]:
        def record(_mod: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            visit(name, args[0][real[0]])

        return record

    handles = []
    for name, sub in module.named_modules():
        if name.endswith(".attention.self.query"):
            handles.append(sub.register_forward_pre_hook(hook(name.rsplit(".", 1)[0])))
        elif name.endswith((".attention.output.dense", ".intermediate.dense", ".output.dense")):
            handles.append(sub.register_forward_pre_hook(hook(name)))
    try:
        with torch.inference_mode():
            for b in sorted_batches(feats["input_ids"], feats["segment_ids"], feats["lengths"], batch_size):
                lens = torch.from_numpy(b.seq_lens[:, 0].astype(np.int64))
                real[:] = [torch.arange(b.row_len)[None, :] < lens[:, None]]
                tensors = [
                    torch.from_numpy(np.ascontiguousarray(a))
                    for a in (b.input_ids, b.segment_ids, b.position_ids, b.seq_lens)
                ]
                module(*tensors)
    finally:
        for h in handles:
            h.remove()
