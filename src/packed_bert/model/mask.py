"""Attention masks from per-row sequence lengths, written to export to ONNX with dynamic shapes.

No Python loop over rows and no data-dependent control flow: the mask is a comparison of
per-token sequence numbers.
"""

import torch


def sequence_ids(seq_lens: torch.Tensor, row_len: int) -> torch.Tensor:
    """Which slot each token belongs to: int64 [R, L]; padding gets K (past every slot)."""
    ends = torch.cumsum(seq_lens.to(torch.int64), dim=1)  # [R, K]
    positions = torch.arange(row_len, device=seq_lens.device, dtype=torch.int64)  # [L]
    return (positions[None, :, None] >= ends[:, None, :]).to(torch.int64).sum(dim=-1)


def block_diagonal_mask(seq_lens: torch.Tensor, row_len: int) -> torch.Tensor:
    """Boolean [R, 1, L, L]: True where query token i may attend key token j.

    Tokens attend only within their own sequence. Padding tokens attend to each other (never
    to a real token, and no real token to them), so no row of the mask is empty and the
    softmax stays finite; their outputs are ignored.
    """
    ids = sequence_ids(seq_lens, row_len)
    return (ids[:, :, None] == ids[:, None, :])[:, None, :, :]
