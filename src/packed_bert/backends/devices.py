"""The devices of this host, one runner each: how many there are, what they are called, and
(for the simulated card) how fast each one is.

A new kind of device is added here and in its backend module; the harness only asks for
``local_runners(DeviceRequest(...))`` and gets a list of ``Runner``s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from packed_bert.backends import create
from packed_bert.backends.base import Runner
from packed_bert.errors import UserError
from packed_bert.packing import pack_matrix
from packed_bert.terms import MAX_SEQS_PER_ROW, SEQ_LEN

CALIBRATING_BACKENDS = ("onnxruntime", "openvino", "torch")  # their int8 modes may calibrate on the 100 questions


@dataclass(frozen=True)
class DeviceRequest:
    """What runners a run wants on this host."""

    backend: str  # a name of backends.BACKENDS
    model: str
    precision: str
    weights: str  # random | tiny | PATH
    count: int | None  # None: every visible device (CUDA)
    options: Mapping[str, Any] = field(default_factory=dict)  # the backend's own options
    # the simulated card: its published rate (samples/s, packed), which the run's sample
    # lengths packed in chunks of ``sim_chunk`` turn into 384-token rows per second
    sim_samples_per_s: float | None = None
    sim_lengths: np.ndarray | None = None
    sim_chunk: int = 4096
    max_per_row: int = MAX_SEQS_PER_ROW
    # the features of the 100 MLPerf calibration questions, for int8 modes that calibrate scales
    # (called only by those, when they build)
    calibration: Callable[[], Mapping[str, np.ndarray]] | None = None


def device_count(request: DeviceRequest) -> int:
    """The fixed count, or every visible GPU for a torch system with ``devices = "auto"``."""
    if request.count is not None:
        return request.count
    if request.backend == "torch":
        import torch

        n = int(torch.cuda.device_count())
        if n == 0:
            raise UserError('devices = "auto" asks for every NVIDIA GPU, and none is visible here')
        return n
    return 1


def device_names(request: DeviceRequest) -> list[str]:
    n = device_count(request)
    if request.backend == "sim":
        return [f"sim:{d}" for d in range(n)]
    if request.backend == "torch" and request.count is None:
        return [f"cuda:{d}" for d in range(n)]
    return ["cpu"] * n


def samples_per_packed_row(lengths: np.ndarray, chunk: int, max_per_row: int = MAX_SEQS_PER_ROW) -> float:
    """Sequences per 384-token row when ``lengths`` are packed in chunks of ``chunk``."""
    rows = sum(
        pack_matrix(lengths[s : s + chunk], max_per_row, SEQ_LEN).shape[0] for s in range(0, lengths.size, chunk)
    )
    return lengths.size / rows if rows else 1.0


def sim_card_timing(request: DeviceRequest) -> Any:
    """The simulated card's timing: the published per-card rate is for packed rows of SQuAD dev,
    so the card runs that many 384-token rows a second, whatever the batching."""
    from packed_bert.backends.sim import SimTiming

    if request.sim_samples_per_s is None or request.sim_lengths is None:
        raise UserError("a simulated card needs its published rate (sim_samples_per_s) and the run's lengths")
    per_row = samples_per_packed_row(request.sim_lengths, request.sim_chunk, request.max_per_row)
    return SimTiming.from_rate(request.sim_samples_per_s / per_row, static_shape=True)


def local_runners(request: DeviceRequest) -> list[Runner]:
    """One runner per device of this host."""
    opts: dict[str, Any] = dict(request.options)
    names = device_names(request)
    if request.backend == "sim":
        opts["timing"] = sim_card_timing(request)
    if request.backend in CALIBRATING_BACKENDS and request.calibration is not None:
        opts.setdefault("calibration", request.calibration)
    return [
        create(request.backend, request.weights, request.precision, name, model=request.model, **opts) for name in names
    ]
