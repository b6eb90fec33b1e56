"""What a run asks of the cluster: ``ClusterRequest``, and the Ray resource each device takes.

Devices are Ray resources, one unit per device: ``GPU`` for CUDA cards, and custom resources
for the rest, which a worker node declares when it joins (``ray start --resources``):

- ``packed_bert_sim_card``: a SIMULATED accelerator card (``backends/sim.py``);
- ``packed_bert_cpu_group``: a node's CPU as one device (the CPU backends use all its cores);
- ``packed_bert_null_device``: the null backend (no model; measures the harness).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from packed_bert.backends.sim import SimTiming

GPU = "GPU"
SIM_CARD = "packed_bert_sim_card"
CPU_GROUP = "packed_bert_cpu_group"
NULL_DEVICE = "packed_bert_null_device"


def resource_for(backend: str, device: str = "cpu") -> str:
    """The Ray resource one device of ``backend`` on ``device`` (``cpu`` / ``cuda``) takes."""
    if backend == "sim":
        return SIM_CARD
    if backend == "null":
        return NULL_DEVICE
    return GPU if device.startswith("cuda") else CPU_GROUP


def ray_start_command(head: str, resource: str, devices: int | None) -> list[str]:
    """The ``ray start`` command that joins the cluster at ``head`` (``HOST:PORT``) as a worker
    node offering ``devices`` of ``resource`` (``None`` with ``GPU``: Ray counts the cards)."""
    argv = ["ray", "start", "--address", head]
    if resource == GPU:
        return argv + ([] if devices is None else ["--num-gpus", str(devices)])
    if devices is None or devices < 1:
        raise ValueError(f"{resource}: say how many devices the node offers")
    return argv + ["--resources", json.dumps({resource: devices})]


@dataclass(frozen=True)
class ClusterRequest:
    """One run's devices on a Ray cluster, and what every device must run.

    ``weights`` is what ``backends.create`` loads on each node (``random``, ``tiny`` or a path
    that holds the same checkpoint on every node); ``weights_id`` its content id on the driver
    (``identity.weights_id``; empty when the driver does not have the file: then all devices
    must agree with the first). ``devices``: how many; ``None`` takes every device of that
    kind the cluster has. ``devices_per_node``: what the embedded cluster's one node offers
    (``None`` for GPUs: Ray counts them). ``inflight``: batches an actor takes at once (2: one
    travels while one runs; it runs them one after another).
    """

    backend: str
    model: str
    precision: str
    weights: str
    weights_id: str
    simulated: bool
    resource: str
    devices: int | None = None
    devices_per_node: int | None = 1
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    sim_timing: SimTiming | None = None
    inflight: int = 2
    run_name: str = "packed-bert run"
    placement_timeout_s: float = 10.0  # a run whose devices are held elsewhere fails after this
    startup_timeout_s: float = 600.0  # actors' start and model load (a CUDA graph capture is slow)
    batch_timeout_s: float | None = None  # None: wait for Ray to notice a dead actor or node
    # the features of the 100 MLPerf calibration questions, read on the driver (a node need not
    # have the dataset), for the int8 modes that calibrate scales when they build
    calibration: Mapping[str, np.ndarray] | None = None

    def node_resources(self) -> dict[str, float]:
        """What the embedded cluster's node declares: ``devices_per_node`` devices."""
        if self.resource == GPU or self.devices_per_node is None:
            return {}
        return {self.resource: float(self.devices_per_node)}

    def actor_resources(self) -> dict[str, Any]:
        """Ray options for one device actor."""
        if self.resource == GPU:
            return {"num_cpus": 0, "num_gpus": 1}
        return {"num_cpus": 0, "resources": {self.resource: 1}}

    def device_name(self, index: int) -> str:
        """The device a node's runner is built on (a GPU actor sees only its own card)."""
        if self.resource == GPU:
            return "cuda:0"
        if self.resource == SIM_CARD:
            return f"sim:{index}"
        return "cpu"
