"""The device actor: one per device, in a Ray worker process on the device's node.

It builds its runner with ``backends.create`` once ``prepare`` is called (after it has checked
that the node holds the run's weights, so a wrong checkpoint is never loaded), and runs the
batches it is sent one at a time: Ray gives the actor ``inflight`` threads, so the next batch
arrives while one runs, and a lock keeps the device to one batch (runners are not required to
be thread-safe).
"""

from __future__ import annotations

import os
import platform
import threading
from typing import Any

import numpy as np

from packed_bert.cluster.identity import DeviceIdentity, package_version, weights_id
from packed_bert.cluster.request import ClusterRequest
from packed_bert.cluster.wire import WireBatch, decode


class DeviceActor:
    """Device ``index`` of a run (wrapped with ``ray.remote`` by ``cluster.runner``)."""

    def __init__(self, request: ClusterRequest, index: int) -> None:
        self.request = request
        self.index = index
        self._runner: Any = None
        self._lock = threading.Lock()

    def prepare(self) -> DeviceIdentity:
        """Build the runner (unless the node's weights differ) and say what runs here."""
        import ray

        req = self.request
        ctx = ray.get_runtime_context()
        found = weights_id(req.weights)
        base: dict[str, Any] = dict(
            index=self.index,
            node_id=ctx.get_node_id(),
            ip=ray.util.get_node_ip_address(),
            host=platform.node(),
            pid=os.getpid(),
            backend=req.backend,
            model=req.model,
            precision=req.precision,
            simulated=req.simulated,
            weights_id=found,
            version=package_version(),
            gpu_ids=tuple(str(g) for g in ray.get_gpu_ids()),
        )
        if req.weights_id and found != req.weights_id:
            return DeviceIdentity(**base)  # not loaded: the check names the difference
        try:
            runner = self._build()
        except Exception as exc:  # noqa: BLE001 - reported as one line naming the node
            return DeviceIdentity(**base, error=f"cannot start the runner: {type(exc).__name__}: {exc}")
        from packed_bert.backends.base import describe

        self._runner = runner
        base.update(backend=req.backend, precision=runner.precision, simulated=bool(runner.simulated))
        return DeviceIdentity(**base, device=str(runner.device), runner=describe(runner))

    def _build(self) -> Any:
        from packed_bert.backends import create

        req = self.request
        opts = dict(req.backend_options)
        if req.backend == "sim" and req.sim_timing is not None:
            opts["timing"] = req.sim_timing
        if req.calibration is not None:
            features = dict(req.calibration)
            opts["calibration"] = lambda: features
        return create(req.backend, req.weights, req.precision, req.device_name(self.index), model=req.model, **opts)

    def infer(self, wire: WireBatch) -> np.ndarray:
        """Float32 logits [R, L, 2] of one packed batch (``cluster.wire``)."""
        if self._runner is None:
            raise RuntimeError(f"device {self.index}: prepare() was not called or failed")
        batch = decode(wire)  # widened before the lock: the device waits for nothing
        with self._lock:
            return np.ascontiguousarray(self._runner.infer(batch), dtype=np.float32)

    def pid(self) -> int:
        return os.getpid()
