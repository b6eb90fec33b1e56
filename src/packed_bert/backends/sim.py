"""A simulated accelerator: sleeps by a timing model, so schedulers and multi-card scaling can
be tested without the card. Everything it reports says "simulated".

Timing model (per ``infer`` call)::

    static_shape=True  (fixed-shape card):  overhead_s + rows * row_time_s
    static_shape=False (token-proportional): overhead_s + rows * (L / 384) * row_time_s

``time.sleep`` releases the GIL, so many simulated cards run concurrently in threads without
loading the CPU.

Logits: with random weights, zeros (or ``logits="cheap"``); with real weights (a checkpoint,
or ``tiny``), the model's fp32 logits computed on this CPU by ONNX Runtime (the fused graph,
whose logits do not depend on batch-mates), one session shared by every simulated card of the
process. The card's timing model still sets the pace, unless the CPU takes longer than it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from packed_bert.backends.base import ROW_LEN, BatchLike, batch_shape
from packed_bert.errors import UserError


@dataclass(frozen=True)
class SimTiming:
    """Per-batch overhead plus per-row time (a row = 384 tokens)."""

    overhead_s: float = 0.0005
    row_time_s: float = 0.002
    static_shape: bool = True

    def batch_seconds(self, rows: int, length: int) -> float:
        scale = 1.0 if self.static_shape else length / ROW_LEN
        return self.overhead_s + rows * scale * self.row_time_s

    @classmethod
    def from_rate(cls, rows_per_s: float, overhead_s: float = 0.0005, static_shape: bool = True) -> SimTiming:
        """A card that runs ``rows_per_s`` full 384-token rows a second."""
        if rows_per_s <= 0:
            raise UserError(f"sim: rows per second must be positive, got {rows_per_s}")
        return cls(overhead_s, 1.0 / rows_per_s, static_shape)


class SimRunner:
    """Sleeps for the timing model, then returns zeros or cheap deterministic logits."""

    name = "sim"
    simulated = True

    def __init__(
        self,
        timing: SimTiming | None = None,
        precision: str = "fp32",
        device: str = "sim:0",
        logits: str = "zeros",
        weights: Any = "random",
    ) -> None:
        if logits not in ("zeros", "cheap"):
            raise UserError(f"sim: logits must be 'zeros' or 'cheap', got {logits!r}")
        self._model = None if isinstance(weights, str) and weights == "random" else cpu_model(weights)
        if self._model is not None:
            logits = "model"
        self.timing = timing or SimTiming()
        self.precision = precision
        self.device = device
        self.static_shape = self.timing.static_shape
        self.logits_kind = logits
        t = self.timing
        self.detail = (
            f"simulated accelerator: {t.overhead_s * 1e3:.3f} ms per batch + "
            f"{t.row_time_s * 1e3:.3f} ms per {'row' if t.static_shape else '384 tokens'}"
            + ("; logits from the fp32 model on this CPU (onnxruntime)" if self._model is not None else "")
        )

    def infer(self, batch: BatchLike) -> np.ndarray:
        start = time.perf_counter()
        rows, length = batch_shape(batch)
        if self._model is not None:
            out = self._cpu_logits(batch, rows, length)
        elif self.logits_kind == "zeros":
            out = np.zeros((rows, length, 2), dtype=np.float32)
        else:
            out = cheap_logits(np.asarray(batch.input_ids), np.asarray(batch.position_ids))
        remaining = self.timing.batch_seconds(rows, length) - (time.perf_counter() - start)
        if remaining > 0:
            time.sleep(remaining)
        return out

    def _cpu_logits(self, batch: BatchLike, rows: int, length: int) -> np.ndarray:
        """The CPU model's logits, ``CPU_ROWS`` rows a call: a simulated card's batch (4,096
        samples) at once would need tens of GB for attention scores. Each row's logits do not
        depend on the others', so the chunks change nothing."""
        out = np.empty((rows, length, 2), dtype=np.float32)
        for s in range(0, rows, CPU_ROWS):
            part = _Rows(
                *(
                    np.asarray(getattr(batch, n))[s : s + CPU_ROWS]
                    for n in ("input_ids", "segment_ids", "position_ids", "seq_lens")
                )
            )
            assert self._model is not None
            out[s : s + CPU_ROWS] = self._model.infer(part)
        return out


@dataclass(frozen=True)
class _Rows:
    """A slice of a batch's rows, as a runner reads it."""

    input_ids: np.ndarray
    segment_ids: np.ndarray
    position_ids: np.ndarray
    seq_lens: np.ndarray


CPU_ROWS = 64  # rows per CPU model call behind a simulated card


def cheap_logits(input_ids: np.ndarray, position_ids: np.ndarray) -> np.ndarray:
    """Deterministic logits that depend only on each token and its position in its sequence,
    so they are the same packed, sorted or padded."""
    ids = input_ids.astype(np.float32)
    pos = position_ids.astype(np.float32)
    start = np.sin(ids * 0.37 + pos * 0.011)
    end = np.cos(ids * 0.53 - pos * 0.017)
    return np.stack([start, end], axis=-1).astype(np.float32)


_CPU_MODELS: dict[int | str, Any] = {}
_CPU_MODELS_LOCK = threading.Lock()


def cpu_model(weights: Any) -> Any:
    """The shared fp32 ONNX Runtime runner of ``weights`` (a spec or a module), made once per process."""
    from packed_bert.backends.onnxruntime_backend import OrtRunner

    key: int | str = weights if isinstance(weights, str) else id(weights)
    with _CPU_MODELS_LOCK:
        if key not in _CPU_MODELS:
            _CPU_MODELS[key] = OrtRunner(weights, "fp32", "cpu")
        return _CPU_MODELS[key]
