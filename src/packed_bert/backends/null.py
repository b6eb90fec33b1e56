"""The null runner: answers at once with zeros, so a run measures the harness alone."""

from __future__ import annotations

import threading

import numpy as np

from packed_bert.backends.base import BatchLike, batch_shape
from packed_bert.terms import SEQ_LEN


class NullRunner:
    """Zeros of the right shape from one preallocated, read-only buffer (thread-safe)."""

    name = "null"
    simulated = False
    static_shape = False
    detail = "no model: zeros, measures the harness"

    def __init__(self, precision: str = "fp32", device: str = "cpu", max_rows: int = 64) -> None:
        self.precision = precision
        self.device = device
        self._lock = threading.Lock()
        self._zeros = self._make(max_rows * SEQ_LEN)

    @staticmethod
    def _make(tokens: int) -> np.ndarray:
        buf = np.zeros(tokens * 2, dtype=np.float32)
        buf.setflags(write=False)
        return buf

    def infer(self, batch: BatchLike) -> np.ndarray:
        rows, length = batch_shape(batch)
        need = rows * length * 2
        zeros = self._zeros
        if zeros.size < need:
            with self._lock:
                if self._zeros.size < need:
                    self._zeros = self._make(rows * length)
                zeros = self._zeros
        return zeros[:need].reshape(rows, length, 2)
