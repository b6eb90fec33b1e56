"""Low-precision Linear layers for CUDA (bert-99): fp8 (Hopper and newer) or int8.

fp8: ``torch._scaled_mm`` with e4m3 weights (per output channel scales) and e4m3 activations
scaled per token from each token's absolute maximum ("rowwise" scaling; no host sync, so CUDA
graphs can capture it). int8: ``torch._int_mm`` with per-channel weight scales and per-token
activation scales. Every activation scale belongs to one token, so a sample's logits do not
depend on its batch-mates' values (a per-tensor scale would). Both keep the attention core and
LayerNorm in bf16. The CUDA code imports cleanly on a CPU-only machine, and both layers' numerics
run on the CPU too (tests).

On CUDA the fp8 activation quantization (absolute maximum per token, scale, cast) runs as one
fused kernel made by ``torch.compile``: done op by op it reads and writes the activations five
times and cost more than the fp8 matmul itself (the H200 check ran fp8 at half the bf16 rate).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import torch
from torch import nn

FP8_MAX = 448.0
Quantizer = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def quantize_rows_fp8(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[tokens, features] -> (e4m3 values, fp32 scale per token [tokens, 1]); x ~ x8 * scale."""
    scale = flat.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12) / FP8_MAX
    return (flat.float() / scale).to(torch.float8_e4m3fn), scale


_FUSED: list[Quantizer] = []


def fused_quantizer() -> Quantizer:
    """``quantize_rows_fp8`` compiled into one kernel (made once per process, on first use)."""
    if not _FUSED:
        _FUSED.append(torch.compile(quantize_rows_fp8, dynamic=True, fullgraph=True))
    return _FUSED[0]


def can_fuse(x: torch.Tensor) -> bool:
    """Fused quantization needs CUDA and Triton (Inductor's GPU code generator)."""
    return x.is_cuda and importlib.util.find_spec("triton") is not None


class Fp8Linear(nn.Module):
    """y = x W^T + b with x and W in float8_e4m3fn (rowwise scales), fp32 accumulation, bf16 out."""

    weight_fp8: torch.Tensor
    weight_scale: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / FP8_MAX  # [out, 1]
        # [out, in] row-major; .t() is the column-major [in, out] that _scaled_mm wants.
        self.register_buffer("weight_fp8", (weight / scale).to(torch.float8_e4m3fn))
        self.register_buffer("weight_scale", scale.t().contiguous().float())  # [1, out]
        bias = linear.bias.detach().to(torch.bfloat16) if linear.bias is not None else None
        self.register_buffer("bias", bias)
        self.out_features = linear.out_features
        self.fused = True  # one compiled kernel quantizes the activations where ``can_fuse``

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        quantize = fused_quantizer() if self.fused and can_fuse(flat) else quantize_rows_fp8
        x8, x_scale = quantize(flat)  # [tokens, in] e4m3, [tokens, 1]
        y = torch._scaled_mm(
            x8,
            self.weight_fp8.t(),
            scale_a=x_scale,
            scale_b=self.weight_scale,
            bias=self.bias,
            out_dtype=torch.bfloat16,
        )
        if isinstance(y, tuple):  # torch < 2.5 returned (out, amax)
            y = y[0]
        return y.reshape(*x.shape[:-1], self.out_features)


class Int8Linear(nn.Module):
    """y = x W^T + b via int8 x int8 -> int32, rescaled per token and per output channel."""

    weight_q: torch.Tensor
    weight_scale: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # [out]
        w8 = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("weight_q", w8)  # [out, in]; .t() is the column-major [in, out]
        self.register_buffer("weight_scale", scale.float())
        bias = linear.bias.detach().float() if linear.bias is not None else None
        self.register_buffer("bias", bias)
        self.out_features = linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).float()
        rows = flat.shape[0]
        pad = max(0, 17 - rows)  # _int_mm on CUDA wants more than 16 rows
        if pad:
            flat = torch.nn.functional.pad(flat, (0, 0, 0, pad))
        x_scale = flat.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
        x8 = torch.round(flat / x_scale).clamp(-127, 127).to(torch.int8)
        acc = torch._int_mm(x8, self.weight_q.t())
        y = acc.float() * x_scale * self.weight_scale[None, :]
        if self.bias is not None:
            y = y + self.bias
        y = y[:rows].to(x.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)


def quantize_linears(model: nn.Module, precision: str, skip: tuple[str, ...] = ("qa_outputs",)) -> int:
    """Replace the encoder's ``nn.Linear`` layers in place; returns how many were replaced."""
    cls = {"fp8": Fp8Linear, "int8": Int8Linear}[precision]
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not any(name.endswith(s) for s in skip)
    ]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, cls(module))
    return len(targets)


def fp8_supported(device: torch.device | str = "cuda") -> bool:
    """Compute capability 8.9 or newer (Ada, Hopper, Blackwell) and the fp8 dtype present."""
    if not torch.cuda.is_available() or not hasattr(torch, "float8_e4m3fn"):
        return False
    major, minor = torch.cuda.get_device_capability(device)
    return (major, minor) >= (8, 9)
