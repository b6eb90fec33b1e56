"""kernels/linear.h's W_S8R arithmetic in float, from its grids: the reference of the int8-rows and
int8-hybrid layer tests."""

from __future__ import annotations

import numpy as np

from packed_bert.backends.amx_kernels import ROW_GRID_U8_LEVELS
from packed_bert.backends.onnx_int8 import quantize_weight


def own_row_grids(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row of float32 ``v`` on its own symmetric 8-bit grid as row_grid_u8 rounds it (the factor
    levels / max|v| in float32, the product rounded half to even): (the values, -127..127, around
    zero; each row's step, max|v| / levels in float32). A row of zeros: zeros, step 0."""
    levels = np.float32(ROW_GRID_U8_LEVELS)
    top = np.abs(v).max(axis=1)
    factor = np.where(top > 0, levels / np.where(top > 0, top, np.float32(1)), np.float32(0)).astype(np.float32)
    q = np.clip(np.rint(v * factor[:, None]), -ROW_GRID_U8_LEVELS, ROW_GRID_U8_LEVELS)
    return q, (top / levels).astype(np.float32)


def grid_product(q: np.ndarray, step: np.ndarray, w: np.ndarray, smooth: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The layer's output in float64 from its input grids (values ``q`` around zero, a ``step`` per
    row): the exact sums with weight x smooth on its int8 grid per column, times both steps, plus bias."""
    wq, scale = quantize_weight(w * smooth[:, None])
    sums = q.astype(np.float64) @ wq.astype(np.float64)
    return sums * scale.astype(np.float64) * step.astype(np.float64)[:, None] + bias
