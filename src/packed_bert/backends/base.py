"""The one small interface every runtime sits behind.

A ``Runner`` turns a packed batch (``packing.PackedBatch``: ``input_ids``, ``segment_ids``,
``position_ids`` int32 [R, L] and ``seq_lens`` int32 [R, K]) into float32 start/end logits
[R, L, 2]. Runners know nothing of LoadGen. The harness makes one runner per device; that
device's worker threads share it and take turns under a per-device lock, so ``infer`` is never
called on one runner from two threads at once (the ``null`` and ``sim`` runners would allow it)
-- except a runner with ``pipelined = True`` (a device behind a link, such as a Ray actor): it
takes several ``infer`` calls at once and runs them one after another on its device, so the
next batch travels while one runs. A runner whose device dies raises ``DeviceLost``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from packed_bert.terms import SEQ_LEN, Precision

ROW_LEN = SEQ_LEN  # tokens per packed row

PRECISIONS = tuple(p.value for p in Precision)


class BatchLike(Protocol):
    """The fields of ``packing.PackedBatch`` a runner reads."""

    @property
    def input_ids(self) -> np.ndarray: ...
    @property
    def segment_ids(self) -> np.ndarray: ...
    @property
    def position_ids(self) -> np.ndarray: ...
    @property
    def seq_lens(self) -> np.ndarray: ...


class DeviceLost(RuntimeError):
    """Raised by ``Runner.infer`` when its device is gone for good (the process, node or link
    behind it died): the batch did not run there. The device pool stops using that device and
    sends the batch to the others; any other exception fails the run."""


@runtime_checkable
class Runner(Protocol):
    """One model prepared for one device and precision."""

    name: str
    precision: str
    device: str
    simulated: bool
    static_shape: bool

    def infer(self, batch: BatchLike) -> np.ndarray:
        """Float32 logits [R, L, 2] for the batch's rows; padding positions hold anything."""
        ...


@dataclass(frozen=True)
class RunnerInfo:
    """What a run records about its runner (``describe``)."""

    name: str
    precision: str
    device: str
    simulated: bool
    static_shape: bool
    detail: str = ""


def describe(runner: Runner) -> dict[str, Any]:
    """A JSON-ready description of a runner; simulated runners say so in every field a reader sees."""
    detail = str(getattr(runner, "detail", ""))
    info = RunnerInfo(runner.name, runner.precision, runner.device, runner.simulated, runner.static_shape, detail)
    out = dict(info.__dict__)
    if runner.simulated:
        out["name"] = f"{runner.name} (simulated)"
    return out


def batch_shape(batch: BatchLike) -> tuple[int, int]:
    """Rows and row length of a batch."""
    rows, length = batch.input_ids.shape
    return int(rows), int(length)


def real_tokens(batch: BatchLike) -> int:
    """Tokens that belong to a sequence (not padding)."""
    return int(np.asarray(batch.seq_lens).sum())
