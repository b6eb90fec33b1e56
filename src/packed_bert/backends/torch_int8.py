"""PyTorch static int8 on the CPU: the OpenVINO runner's SmoothQuant recipe (``onnx_int8``) run
by oneDNN's quantized linear kernels through torch (``torch.ops.onednn.qlinear_pointwise``) or,
with ``kernel="amx"``, by packed-bert's own AMX kernels (``amx_kernels``; the amx class's bert-99
default).

Every encoder linear layer takes its input divided per channel by its SmoothQuant factors and
rounded to a fixed uint8 grid, both calibrated on the 100 MLPerf calibration questions only
(``quantize.calibrate_smoothquant``: the same factors and ranges as the OpenVINO graph), and
multiplies it with int32 accumulation by the smoothed weight in int8 per output column. The
kernel's epilogue applies the scales, the bias and, for the FFN input layer, the exact (erf)
GELU (our AMX kernel: the erf form from a table, within 5e-7). Q|K|V leave their kernel in bf16
and attention runs per sequence in bf16 (two plain matmuls and a softmax,
``model.attention.matmul_attention``, or the AMX kernel); embeddings, residuals and LayerNorm
stay fp32 (the AMX path adds the residual, to the bf16 output of the layer before, and
normalizes in one kernel, and hands each int8 layer its input already quantized), and the fp32
QA head runs on fixed row tiles.

Integer products are exact, every scale is fixed and attention sees only the sequence's own
tokens, so a sample's logits are the same in any batch (a test checks it).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Collection, Mapping
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from packed_bert.backends.amx_kernels import AmxLinearWeights, library
from packed_bert.backends.onnx_fused import site_bias, site_weight
from packed_bert.backends.onnx_int8 import quantize_weight, static_grid
from packed_bert.backends.torch_amx import (
    AmxBf16Linear,
    AmxInt8HybridLinear,
    AmxInt8RowsLinear,
    AmxInt12Linear,
    AmxLinear,
    DenseAddNorm,
    amx_attention,
    finish_amx_model,
    tile_qa_head,
    wire_block,
)
from packed_bert.errors import UserError
from packed_bert.model.bert import BertSelfAttention
from packed_bert.model.linears import ATTENTION_OUTPUT, FFN_INPUT, FFN_OUTPUT, LINEAR_KINDS, QKV

GELU = "gelu"  # the FFN input layer's fused activation (oneDNN's exact erf GELU: algorithm "none")
ONEDNN, AMX = "onednn", "amx"  # the linear layers' kernel: oneDNN's through torch, or ours (amx_kernels)
KERNELS = (ONEDNN, AMX)


def has_int8_kernels() -> bool:
    """Whether this torch has oneDNN's quantized linear (x86 builds with oneDNN)."""
    try:
        return hasattr(torch.ops.onednn, "qlinear_pointwise") and hasattr(torch.ops.onednn, "qlinear_prepack")
    except (AttributeError, RuntimeError):
        return False


def quantize_u8(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """``x`` (float) on the uint8 grid: round(x / scale) + zero point, clamped to 0..255."""
    with warnings.catch_warnings():  # the quantized-tensor API's deprecation notice
        warnings.simplefilter("ignore")
        return torch.quantize_per_tensor(x, scale, zero_point, torch.quint8).int_repr()


class StaticInt8Linear(nn.Module):
    """One encoder linear layer in static int8: ``weight_t`` [K, N] fp32, its input's SmoothQuant
    factors ``smooth`` [K] and the calibrated range of the smoothed input."""

    def __init__(
        self,
        weight_t: np.ndarray,
        bias: np.ndarray,
        smooth: np.ndarray,
        value_range: tuple[float, float],
        *,
        post_op: str = "none",
        out_dtype: torch.dtype = torch.float32,
        kernel: str = ONEDNN,
    ) -> None:
        super().__init__()
        wq, ws = quantize_weight(weight_t * smooth[:, None])
        self.scale, self.zero_point = static_grid(*value_range)
        self.inv_smooth = torch.from_numpy((1.0 / smooth).astype(np.float32))
        self.amx: AmxLinearWeights | None = None
        if kernel == AMX:
            in_scale = self.inv_smooth.numpy() / np.float32(self.scale)
            self.amx = AmxLinearWeights(wq, ws, bias, in_scale, self.scale, self.zero_point, gelu=post_op == GELU)
            self.out_dtype = out_dtype
            return
        self.packed = torch.ops.onednn.qlinear_prepack(torch.from_numpy(np.ascontiguousarray(wq.T)), None)
        self.weight_scale = torch.from_numpy(ws.astype(np.float32))
        self.weight_zero = torch.zeros(ws.size, dtype=torch.int64)
        self.bias = torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32))
        self.post_op = post_op
        self.out_dtype = out_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.amx is not None:
            return self.amx(x, self.out_dtype)
        flat = x.reshape(-1, x.shape[-1]).float()
        q = quantize_u8(flat * self.inv_smooth, self.scale, self.zero_point)
        out = torch.ops.onednn.qlinear_pointwise(
            q,
            self.scale,
            self.zero_point,
            self.packed,
            self.weight_scale,
            self.weight_zero,
            self.bias,
            1.0,
            0,
            self.out_dtype,
            self.post_op,
            [],
            "none",
        )
        return out.reshape(*x.shape[:-1], out.shape[-1])


def quantize_model(
    model: nn.Module,
    smooth: Mapping[str, np.ndarray],
    ranges: Mapping[str, tuple[float, float]],
    kernel: str = ONEDNN,
    bf16_layers: Collection[str] = (),
    residual: torch.dtype = torch.float32,
    attention: str = "bf16",
    kept: str = "bf16",
    bounds: Mapping[str, float] | None = None,
) -> nn.Module:
    """A copy of ``model`` (a ``PackedBertForQA``, fp32) whose encoder linear layers run in static
    int8 with the calibrated ``smooth`` factors and ``ranges`` (``quantize.calibrate_smoothquant``)
    on ``kernel`` (``KERNELS``), except the kinds named in ``bf16_layers``
    (``model.linears.LINEAR_KINDS``; AMX only), which run bf16 in every layer (the FFN output
    layer, whose input is GELU's heavy-tailed output, costs int8 most of its F1 loss). Our AMX
    kernel hands each layer's output on as the next one's tile input (the FFN's GELU output uint8
    or bf16, as the FFN output layer takes it) and keeps the residual stream in ``residual``
    (``torch_amx.finish_amx_model``); oneDNN's in fp32. ``attention``: the AMX kernel's
    attention products (``amx_kernels.ATTENTION_KINDS``). ``kept``: what the ``bf16_layers`` run in
    (``amx_kernels.KEPT_PRECISIONS``): bf16, int12 (``torch_amx.AmxInt12Linear``; the soft-tile
    builds), int8-rows (``torch_amx.AmxInt8RowsLinear``, with ``smooth``'s factors for those layers:
    the caller passes ``row_smoothing``'s) or int8-hybrid (``torch_amx.AmxInt8HybridLinear``, those
    factors and each layer's fixed grid bound from ``bounds``: ``row_smoothing``'s as well)."""
    if kernel not in KERNELS:
        raise UserError(f"torch int8: kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    unknown = sorted(set(bf16_layers) - set(LINEAR_KINDS))
    if unknown or (bf16_layers and kernel != AMX):
        raise UserError(
            f"torch int8: bf16_layers names layers kept in bf16 on kernel=amx, of {', '.join(LINEAR_KINDS)};"
            f" got {', '.join(unknown or bf16_layers)} on kernel={kernel}"
        )
    if kernel == AMX:  # built (or taken from the cache) and loaded here, before any timed call
        library()
    if kernel == ONEDNN and not has_int8_kernels():
        raise UserError("torch int8 on the CPU needs oneDNN's quantized linear (an x86 torch build); use openvino:int8")
    model = copy.deepcopy(model).float().eval()
    w = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}

    def layer(role: str, name: str, bias: np.ndarray, **kw: Any) -> StaticInt8Linear | AmxLinear:
        if role in bf16_layers:
            gelu, out_dtype = kw.get("post_op") == GELU, kw["out_dtype"]
            if kept == "int8-rows":
                return AmxInt8RowsLinear(site_weight(w, name), bias, smooth[name], gelu=gelu, out_dtype=out_dtype)
            if kept == "int8-hybrid":
                if bounds is None or name not in bounds:
                    raise UserError(f"torch int8: kept=int8-hybrid has no grid bound for {name}; recalibrate")
                return AmxInt8HybridLinear(
                    site_weight(w, name), bias, smooth[name], bounds[name], gelu=gelu, out_dtype=out_dtype
                )
            kept_class = AmxInt12Linear if kept == "int12" else AmxBf16Linear
            return kept_class(site_weight(w, name), bias, gelu=gelu, out_dtype=out_dtype)
        if name not in smooth or name not in ranges:
            raise UserError(f"torch int8: no calibration for {name}; recalibrate")
        return StaticInt8Linear(site_weight(w, name), bias, smooth[name], ranges[name], kernel=kernel, **kw)

    previous_block: DenseAddNorm | None = None  # AMX: the last layer's output block feeds this one's Q|K|V
    for name, module in list(model.named_modules()):
        if not isinstance(module, BertSelfAttention):
            continue
        p = name.removesuffix(".attention.self")
        qkv_bias = site_bias(w, name)
        qkv = layer(QKV, name, qkv_bias, out_dtype=torch.bfloat16)
        # on the AMX path the two layers before an add+LayerNorm write bf16: half the bytes that
        # kernel reads (it adds them to the fp32 residual)
        dense_dtype = torch.bfloat16 if kernel == AMX else torch.float32
        o_name, ffn_in, ffn_out = f"{p}.attention.output.dense", f"{p}.intermediate.dense", f"{p}.output.dense"
        o_layer = layer(ATTENTION_OUTPUT, o_name, w[f"{o_name}.bias"], out_dtype=dense_dtype)
        gelu_layer = layer(FFN_INPUT, ffn_in, w[f"{ffn_in}.bias"], post_op=GELU, out_dtype=torch.float32)
        out_layer = layer(FFN_OUTPUT, ffn_out, w[f"{ffn_out}.bias"], out_dtype=dense_dtype)
        if kernel == AMX:  # each kernel writes the next layer's uint8 input where the value feeds only it, or as well
            previous_block = wire_block(model, name, (qkv, o_layer, gelu_layer, out_layer), previous_block)
            continue
        model.get_submodule(f"{p}.attention.output").dense = o_layer
        setattr(model.get_submodule(p), "intermediate", gelu_layer)  # noqa: B010
        model.get_submodule(f"{p}.output").dense = out_layer
        module.qkv = qkv
        del module.query, module.key, module.value
    if kernel == AMX:
        finish_amx_model(model, residual)
    else:
        tile_qa_head(model)
    # PackedBertForQA's switch: each sequence alone, two plain matmuls, or our AMX kernel
    core = partial(amx_attention, attention=attention) if kernel == AMX else "sequence-matmul"
    setattr(model, "attention", core)  # noqa: B010
    return model
