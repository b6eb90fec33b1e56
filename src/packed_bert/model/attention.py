"""Attention cores: packed rows with a block-diagonal mask, and unpadded varlen streams.

A core takes queries, keys and values laid out ``[..., T, heads, head_dim]`` and returns the
attention output in the same layout; the layers do not know which one they run with.
"""

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

AttentionCore = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def masked_core(mask: torch.Tensor) -> AttentionCore:
    """Rows [R, L, heads, D] with a mask [R, 1, L, L]: boolean (True = may attend) or additive."""

    def core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
        return out.transpose(1, 2)

    return core


def matmul_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v on [..., heads, n, D] as two plain matmuls: on the CPU in bf16
    about twice as fast as the fused SDPA kernel for one sequence of a few hundred tokens."""
    scores = torch.matmul(q * (q.shape[-1] ** -0.5), k.transpose(-1, -2))
    return torch.matmul(torch.softmax(scores, dim=-1), v)


def sequence_core(seq_lens: torch.Tensor, attend: Callable[..., torch.Tensor] | None = None) -> AttentionCore:
    """Rows [R, L, heads, D] holding the sequences ``seq_lens`` [R, K]: attention runs on each
    sequence alone, at its own length, with no mask (``attend``: SDPA unless given, e.g.
    ``matmul_attention``).

    The fused SDPA kernel's blocking on the CPU changes with the row length, so over a padded
    or packed row a sequence's attention differs in the last bits from the same sequence alone;
    run on exactly its own tokens it is the same computation in any batch. One kernel call per
    sequence and layer: a Python loop over the batch's sequences, not its tokens (a few percent
    of a BERT-Large batch; padding positions of the output are zeros).
    """
    kernel = attend or F.scaled_dot_product_attention
    lens = seq_lens.detach().to("cpu", torch.int64)
    starts = torch.cumsum(lens, dim=1) - lens
    spans = [
        (r, int(s), int(n))
        for r, k in zip(*torch.nonzero(lens > 0, as_tuple=True), strict=True)
        for s, n in [(starts[r, k], lens[r, k])]
    ]

    def core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(q)
        for r, s, n in spans:
            qs, ks, vs = (x[r, s : s + n].transpose(0, 1).unsqueeze(0) for x in (q, k, v))  # [1, heads, n, D]
            out[r, s : s + n] = kernel(qs, ks, vs)[0].transpose(0, 1)
        return out

    return core


def padded_varlen_core(cu_seqlens: torch.Tensor, max_seqlen: int) -> AttentionCore:
    """Stream [T, heads, D]: gather each sequence into a [S, max_seqlen] block, attend, scatter.

    Works on every device; wastes ``S * max_seqlen - T`` padded positions per attention.
    """
    cu = cu_seqlens.to(torch.int64)
    lens = cu[1:] - cu[:-1]
    offsets = torch.arange(max_seqlen, device=cu.device, dtype=torch.int64)
    valid = offsets[None, :] < lens[:, None]  # [S, M]
    index = torch.where(valid, cu[:-1, None] + offsets[None, :], 0)  # [S, M]
    mask = valid[:, None, None, :]  # keys of each sequence only

    def core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        def block(x: torch.Tensor) -> torch.Tensor:
            return x[index].transpose(1, 2)  # [S, heads, M, D]

        out = F.scaled_dot_product_attention(block(q), block(k), block(v), attn_mask=mask)
        return out.transpose(1, 2)[valid]  # [T, heads, D]

    return core


def nested_varlen_core(cu_seqlens: torch.Tensor) -> AttentionCore:
    """Stream [T, heads, D] as a jagged nested tensor: fused varlen kernels on CUDA."""
    offsets = cu_seqlens.to(torch.int64)

    def core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nq, nk, nv = (torch.nested.nested_tensor_from_jagged(x, offsets=offsets).transpose(1, 2) for x in (q, k, v))
            out = F.scaled_dot_product_attention(nq, nk, nv)
            return out.transpose(1, 2).values()

    return core


def varlen_core(cu_seqlens: torch.Tensor, max_seqlen: int, method: str = "auto") -> AttentionCore:
    """``method``: ``nested`` (jagged tensors), ``padded`` (gather), ``auto`` (nested on CUDA)."""
    if method == "auto":
        if cu_seqlens.device.type != "cuda":
            return padded_varlen_core(cu_seqlens, max_seqlen)
        nested = nested_varlen_core(cu_seqlens)
        padded = padded_varlen_core(cu_seqlens, max_seqlen)

        def core(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            try:  # jagged SDPA lacks a kernel for some dtype/device/version combinations
                return nested(q, k, v)
            except (RuntimeError, NotImplementedError):
                return padded(q, k, v)

        return core
    if method == "nested":
        return nested_varlen_core(cu_seqlens)
    if method == "padded":
        return padded_varlen_core(cu_seqlens, max_seqlen)
    raise ValueError(f"unknown varlen attention method {method!r}; use auto, nested or padded")
