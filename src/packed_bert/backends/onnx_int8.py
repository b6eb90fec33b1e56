"""Int8 linear layers written into the fused ONNX graph, with activation scales that do not
depend on a sample's batch-mates.

ONNX Runtime's dynamic quantization (``quantize.quantize_dynamic``) takes one activation scale
per batch tensor, so a sample's logits change with the other samples of its batch. Here every
scale belongs to one token or is fixed:

- ``rows``: per-token dynamic scales. Each token's input row ``x`` is quantized symmetrically,
  ``q = round(x / s) + 128`` with ``s = max|x| / 127`` (``QuantizeLinear`` along the token
  axis, unsigned with zero point 128), then ``MatMulIntegerToFloat`` (int32 accumulation, exact)
  multiplies by ``s`` and the weight's per-column scale.
- ``static``: one fixed scale and zero point per layer input, calibrated (min/max) on the
  features of the 100 MLPerf calibration questions only (``quantize.calibrate_ranges``).
- ``qdq``: the calibrated fixed scale of ``static`` written as ``QuantizeLinear`` then
  ``DequantizeLinear`` of the layer input, before a float MatMul over the dequantized int8
  weights: the form OpenVINO turns into its static int8 kernels (a FakeQuantize on the input and
  an int8 FullyConnected), about 1.7x the speed of per-token quantization on the avx512-bf16
  class (docs/performance.md).
- ``weights``: int8 weights only (``DequantizeLinear`` of a constant feeding the fp MatMul), the
  activations left in floating point. ONNX Runtime folds the dequantization away (fp32 math);
  OpenVINO keeps the int8 weights and on its CPU plugin quantizes each token's activations on
  the fly (``openvino_backend``), so the scales again belong to one token.

Weights are int8 per output column (symmetric, ``max|w| / 127``). Every scale is the token's own
or a constant and a token's integer sums do not depend on other rows, so a token's output is
bit-for-bit the same in any batch. The sums are the exact integer product on CPUs with a u8 x s8
dot-product instruction (VNNI, AMX); without one (AVX2) the kernels pair products in 16 bits,
which saturates (``cpu_class.exact_int8_products``; the recipe's F1 there is measured as is). A
recipe chooses per kind of layer (``model.linears.LINEAR_KINDS``): ``rows``, ``static`` or ``fp32``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from packed_bert.errors import UserError
from packed_bert.model.linears import LINEAR_KINDS

if TYPE_CHECKING:
    from packed_bert.backends.onnx_fused import _Graph

MS_DOMAIN = "com.microsoft"
SCHEMES = ("rows", "static", "qdq", "weights")
ZERO_POINT = 128  # activations are uint8 (MatMulIntegerToFloat takes only uint8 A)
UINT8 = 2  # onnx.TensorProto.UINT8


@dataclass(frozen=True)
class Int8Recipe:
    """How each kind of encoder linear layer runs: ``rows``, ``static`` (int8) or ``fp32``."""

    schemes: Mapping[str, str]  # layer kind (LINEAR_KINDS) -> rows | static | fp32; missing: fp32
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # static: input (min, max) by layer name
    # qdq: per input channel factors s by layer name (SmoothQuant): the input is divided by s, the weight's rows times s
    smooth: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.schemes) - set(LINEAR_KINDS))
        if unknown:
            raise UserError(f"int8: unknown layer kind(s) {', '.join(unknown)}; choose from {', '.join(LINEAR_KINDS)}")
        bad = sorted({v for v in self.schemes.values() if v not in (*SCHEMES, "fp32")})
        if bad:
            raise UserError(f"int8 scheme must be one of {', '.join(SCHEMES)} or fp32, got {', '.join(bad)}")

    def scheme(self, kind: str) -> str:
        return self.schemes.get(kind, "fp32")

    @property
    def calibrated(self) -> bool:
        """Whether some layer needs calibrated ranges."""
        return bool({"static", "qdq"} & set(self.schemes.values()))

    def key(self) -> str:
        """What identifies the recipe in a cache key (ranges by digest)."""
        import hashlib

        kinds = ",".join(f"{k}={self.scheme(k)}" for k in LINEAR_KINDS)
        digest = hashlib.sha256(repr(sorted(self.ranges.items())).encode())
        for name in sorted(self.smooth):
            digest.update(name.encode() + np.ascontiguousarray(self.smooth[name], np.float32).tobytes())
        return kinds + (f";{digest.hexdigest()[:12]}" if self.ranges or self.smooth else "")

    def smoothing(self, name: str) -> np.ndarray | None:
        """The SmoothQuant factors of layer input ``name``, if it has them."""
        return self.smooth.get(name)


def smooth_factors(
    channels: Mapping[str, tuple[np.ndarray, np.ndarray]], weights_t: Mapping[str, np.ndarray], alpha: float
) -> tuple[dict[str, np.ndarray], dict[str, tuple[float, float]]]:
    """SmoothQuant: per input channel ``s = max|x|^alpha / max|w|^(1 - alpha)`` of each layer input
    (``channels``: its calibrated per-channel (min, max); ``weights_t``: its [K, N] weight), and the
    per-tensor range of ``x / s`` that the fixed scale then covers."""
    smooth, ranges = {}, {}
    for name, (lo, hi) in channels.items():
        act = np.maximum(np.abs(lo), np.abs(hi)).astype(np.float64)
        wmax = np.abs(weights_t[name]).max(axis=1).astype(np.float64)
        s = np.where((act > 0) & (wmax > 0), act**alpha / np.maximum(wmax, 1e-12) ** (1 - alpha), 1.0)
        s = np.clip(s, 1e-5, None).astype(np.float32)
        smooth[name] = s
        ranges[name] = (float((lo / s).min()), float((hi / s).max()))
    return smooth, ranges


def quantize_weight(w_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A [K, N] fp32 weight as int8 per output column: (int8 [K, N], scale float32 [N])."""
    amax = np.abs(w_t).max(axis=0)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(w_t / scale), -127, 127).astype(np.int8)
    return q, scale


@dataclass(frozen=True)
class Quantized:
    """A layer input in uint8 (zero point 128) and its scale: per token [R, L, 1] or a scalar."""

    values: str
    scale: str
    zero_point: str


def quantize_rows(g: _Graph, x: str, width: int, name: str) -> Quantized:
    """Each token's row of ``x`` [R, L, width] to uint8 with its own symmetric scale."""
    mx = g.op("ReduceMax", [x], f"{name}/rowmax", axes=[-1], keepdims=1)
    mn = g.op("ReduceMin", [x], f"{name}/rowmin", axes=[-1], keepdims=1)
    amax = g.op("Max", [mx, g.op("Neg", [mn]), g.const(f"{name}/tiny", np.array(1e-12, np.float32))])
    scale = g.op("Mul", [amax, g.const(f"{name}/inv127", np.array(1 / 127, np.float32))], f"{name}/scale")
    flat_scale = g.op("Reshape", [scale, g.const(f"{name}/flat", np.array([-1], np.int64))])
    zero_points = g.op("Expand", [g.const(f"{name}/zp", np.array(ZERO_POINT, np.uint8)), g.op("Shape", [flat_scale])])
    rows = g.op("Reshape", [x, g.const(f"{name}/rows", np.array([-1, width], np.int64))])
    q = g.op("QuantizeLinear", [rows, flat_scale, zero_points], f"{name}/quantize", axis=0)
    q = g.op("Reshape", [q, g.op("Shape", [x])])
    return Quantized(q, scale, g.const(f"{name}/zp_scalar", np.array(ZERO_POINT, np.uint8)))


def static_grid(lo: float, hi: float) -> tuple[float, int]:
    """The uint8 grid (scale, zero point) that covers the calibrated range [lo, hi] and 0."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / 255.0 if hi > lo else 1.0
    return scale, int(np.clip(np.rint(-lo / scale), 0, 255))


def quantize_static(g: _Graph, x: str, lo: float, hi: float, name: str) -> Quantized:
    """``x`` to uint8 with the fixed asymmetric scale of the calibrated range [lo, hi]."""
    scale, zp = static_grid(lo, hi)
    s = g.const(f"{name}/scale", np.array(scale, np.float32))
    z = g.const(f"{name}/zp", np.array(zp, np.uint8))
    return Quantized(g.op("QuantizeLinear", [x, s, z], f"{name}/quantize"), s, z)


def fake_quantized(g: _Graph, ranges: Mapping[str, tuple[float, float]], x: str, name: str) -> str:
    """``x`` rounded to the uint8 grid of its calibrated range and back (``qdq``): a float tensor."""
    q = quantize_input(g, "static", ranges, x, 0, name)
    return g.op("DequantizeLinear", [q.values, q.scale, q.zero_point], f"{name}/input_dequantize")


def int8_matmul(g: _Graph, q: Quantized, w_t: np.ndarray, bias: np.ndarray | None, name: str, per_token: bool) -> str:
    """``q`` times the [K, N] weight, in int8 with int32 accumulation, scaled back to fp32.

    A per-token scale is applied after the product (``MatMulIntegerToFloat`` multiplies its
    output by a non-scalar A scale after adding any bias, so the bias is added afterwards);
    a scalar scale takes the bias inside the kernel.
    """
    wq, ws = quantize_weight(w_t)
    inputs = [q.values, g.const(f"{name}.weight_q", wq), q.scale, g.const(f"{name}.weight_scale", ws), q.zero_point]
    if bias is not None and not per_token:
        out = g.op("MatMulIntegerToFloat", [*inputs, "", g.const(f"{name}.bias", bias)], name, MS_DOMAIN)
        return out
    out = g.op("MatMulIntegerToFloat", inputs, name, MS_DOMAIN)
    return out if bias is None else g.op("Add", [out, g.const(f"{name}.bias", bias)], name)


def dequantized_weight(g: _Graph, w_t: np.ndarray, name: str) -> str:
    """The [K, N] weight as an int8 constant per output column and its ``DequantizeLinear``."""
    wq, ws = quantize_weight(w_t)
    return g.op(
        "DequantizeLinear",
        [g.const(f"{name}.weight_q", wq), g.const(f"{name}.weight_scale", ws)],
        f"{name}/dequantize",
        axis=1,
    )


def quantize_input(
    g: _Graph, scheme: str, ranges: Mapping[str, tuple[float, float]], x: str, width: int, name: str
) -> Quantized:
    """A layer input quantized by ``scheme`` (static: its calibrated range in ``ranges``)."""
    if scheme == "rows":
        return quantize_rows(g, x, width, name)
    if name not in ranges:
        raise UserError(f"int8 static: no calibrated range for {name}; recalibrate")
    lo, hi = ranges[name]
    return quantize_static(g, x, lo, hi, name)
