"""bf16 matmuls with an fp32 model around them (the torch backend's ``variant="mixed"``).

``.to(bfloat16)`` rounds everything to bf16, the residual stream and LayerNorm included. Here
only the encoder's Linear layers and attention run in bf16 (AMX/avx512_bf16 matmuls,
fp32 accumulation): each Linear takes its input in bf16 and gives Q/K/V and the FFN's inner
activations in bf16, while the two projections that feed a residual add give fp32, so the
residual stream, every LayerNorm and the QA head stay fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BF16_OUT = (".attention.self.query", ".attention.self.key", ".attention.self.value", ".intermediate.dense")
FP32_OUT = (".attention.output.dense", ".output.dense")


class Bf16Linear(nn.Module):
    """A Linear layer computed in bf16, its output in ``out_dtype``."""

    def __init__(self, linear: nn.Linear, out_dtype: torch.dtype) -> None:
        super().__init__()
        self.weight = nn.Parameter(linear.weight.detach().to(torch.bfloat16), requires_grad=False)
        self.bias = nn.Parameter(linear.bias.detach().to(torch.bfloat16), requires_grad=False)
        self.out_dtype = out_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(torch.bfloat16), self.weight, self.bias).to(self.out_dtype)


def bf16_matmuls(model: nn.Module) -> int:
    """Replace the encoder's Linear layers in place; returns how many."""
    count = 0
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if not isinstance(child, nn.Linear) or not full.startswith("bert.encoder."):
                continue
            if full.endswith(BF16_OUT):
                setattr(module, child_name, Bf16Linear(child, torch.bfloat16))
            elif full.endswith(FP32_OUT):
                setattr(module, child_name, Bf16Linear(child, torch.float32))
            else:
                continue
            count += 1
    return count
