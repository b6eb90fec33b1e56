"""The device actor: one per device, in a Ray worker process on the device's node.

It builds its runner with ``backends.create`` once ``prepare`` is called (after it has checked
that the node holds the run's weights, so a wrong checkpoint is never loaded), and runs the
batches it is sent one at a time: Ray gives the actor ``inflight`` threads, so the next batch
arrives while one runs, and a lock keeps the device to one batch (runners are not required to
be thread-safe).

A node's CPU device runs on the node's cores, shared among the CPU devices it offers: Ray starts
a worker that asks for no CPUs with ``OMP_NUM_THREADS=1``, which left PyTorch and packed-bert's
kernels one core (BERT-Large through a one-node cluster on 2 cores: 15.9 samples/s against 31.5
without Ray; 29.0 since), so the actor sets the thread count itself unless the run's options
name one.
"""

from __future__ import annotations

import os
import platform
import threading
from typing import Any

import numpy as np

from packed_bert.cluster.identity import DeviceIdentity, package_version, weights_id
from packed_bert.cluster.request import CPU_GROUP, ClusterRequest
from packed_bert.cluster.wire import WireBatch, decode


def node_cores_per_device(resource: str) -> int:
    """This process's cores shared among the devices of ``resource`` its node offers."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    offered = next((n["Resources"].get(resource, 1.0) for n in ray.nodes() if n["NodeID"] == node), 1.0)
    return max(1, len(os.sched_getaffinity(0)) // max(1, int(offered)))


class DeviceActor:
    """Device ``index`` of a run (wrapped with ``ray.remote`` by ``cluster.runner``)."""

    def __init__(self, request: ClusterRequest, index: int) -> None:
        self.request = request
        self.index = index
        self._runner: Any = None
        self._threads = 0  # the CPU threads given to the runner (0: its runtime's own choice)
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
        return DeviceIdentity(**base, device=str(runner.device), runner=describe(runner), threads=self._threads)

    def _build(self) -> Any:
        from packed_bert.backends import create

        req = self.request
        opts = dict(req.backend_options)
        if req.backend == "sim" and req.sim_timing is not None:
            opts["timing"] = req.sim_timing
        if req.calibration is not None:
            features = dict(req.calibration)
            opts["calibration"] = lambda: features
        if req.resource == CPU_GROUP:
            if "threads" not in opts:
                opts["threads"] = node_cores_per_device(req.resource)
                os.environ["OMP_NUM_THREADS"] = str(opts["threads"])  # for runtimes whose OpenMP starts later
            self._threads = int(opts["threads"])
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
