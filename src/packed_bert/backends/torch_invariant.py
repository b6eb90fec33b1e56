"""PyTorch on the CPU with logits that do not depend on a sample's batch-mates.

oneDNN picks its matmul kernel and blocking by shape, so the same token row multiplied in a
batch of 3,040 rows and in one of 190 rows can differ in the last bits (bf16 and fp32 alike),
and the fused attention kernel's blocking changes with the row length. Here every Linear layer
runs on fixed tiles of ``TILE`` rows (the last tile padded with zero rows), so each row meets
the very same matmul whatever the batch, and attention runs per sequence
(``model.attention = "sequence"``). Together with per-token LayerNorm and GELU, a sequence's
logits are then bit for bit the same alone, sorted, padded or packed.
"""

from __future__ import annotations

import torch
from torch import nn

from packed_bert.model.bert import BertSelfAttention

TILE = 512  # rows per matmul call (oneDNN is as fast on 512-row blocks as on whole batches)


class TiledLinear(nn.Module):
    """``nn.Linear`` computed on fixed ``tile``-row blocks of its flattened input, with the
    weight packed once for that block shape (oneDNN's layout: no repacking per call)."""

    def __init__(self, linear: nn.Linear, tile: int = TILE) -> None:
        super().__init__()
        weight = linear.weight.detach()
        self.packed = _pack(weight, tile)
        self.weight_t = None if self.packed is not None else weight.t().contiguous()  # [in, out]
        self.bias = linear.bias.detach().clone()
        self.tile = tile
        self.out_features = linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        rows = flat.shape[0]
        padded = -(-rows // self.tile) * self.tile
        if padded != rows:
            flat = torch.cat([flat, flat.new_zeros(padded - rows, flat.shape[1])])
        out = flat.new_empty(padded, self.out_features)
        for s in range(0, padded, self.tile):
            block = flat[s : s + self.tile]
            if self.packed is not None:
                out[s : s + self.tile] = torch.ops.mkldnn._linear_pointwise(
                    block, self.packed, self.bias, "none", [], ""
                )
            else:
                assert self.weight_t is not None
                torch.addmm(self.bias, block, self.weight_t, out=out[s : s + self.tile])
        return out[:rows].reshape(*x.shape[:-1], self.out_features)


def _pack(weight: torch.Tensor, tile: int) -> torch.Tensor | None:
    """The weight in oneDNN's layout for ``tile``-row inputs, or None where this torch lacks it."""
    try:
        return torch.ops.mkldnn._reorder_linear_weight(weight, tile)
    except (AttributeError, RuntimeError):
        return None


def make_batch_invariant(model: nn.Module, tile: int = TILE) -> int:
    """Tile every Linear layer (Q, K and V as one Q|K|V layer) and run attention per sequence;
    returns how many matmul layers there are now."""
    count = 0
    for module in list(model.modules()):
        if isinstance(module, BertSelfAttention):
            parts = (module.query, module.key, module.value)
            fused = nn.Linear(parts[0].in_features, 3 * parts[0].out_features, dtype=parts[0].weight.dtype)
            with torch.no_grad():
                fused.weight.copy_(torch.cat([p.weight for p in parts]))
                fused.bias.copy_(torch.cat([p.bias for p in parts]))
            module.qkv = TiledLinear(fused, tile)
            del module.query, module.key, module.value
            count += 1
    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear) and not name.endswith(".qkv")]
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, TiledLinear(linear, tile))
    setattr(model, "attention", "sequence")  # noqa: B010 - PackedBertForQA's switch
    return count + len(targets)
