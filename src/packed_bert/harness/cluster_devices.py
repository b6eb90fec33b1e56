"""A run's devices on a Ray cluster: the ``cluster.ClusterRequest`` of a plan, and its runners.

The glue between a ``RunPlan`` and ``packed_bert.cluster``: the same backend, precision,
weights and simulated timing as ``devices.local_runners`` builds here, asked of every device
actor of the cluster, and the content id of the weights each must hold.
"""

from __future__ import annotations

from typing import Any

from packed_bert.backends.devices import CALIBRATING_BACKENDS
from packed_bert.cluster import ClusterHandle, ClusterRequest, connect, make_cluster_runners
from packed_bert.cluster.identity import weights_id
from packed_bert.cluster.request import resource_for
from packed_bert.harness.plan import RunPlan
from packed_bert.harness.qsl import SampleLibrary
from packed_bert.terms import CALIBRATED

PIPELINE_DEPTH = 2  # batches in flight per device actor in Offline: one travels while one runs


def cluster_request(
    plan: RunPlan, library: SampleLibrary, devices: int | None = None, placement_timeout_s: float = 10.0
) -> ClusterRequest:
    """What every device actor of ``plan``'s run must run; ``devices``: how many (``None``:
    every device of the system's kind the cluster has)."""
    system = plan.system
    gpu = plan.backend == "torch" and system.devices is None  # "auto": every visible GPU
    timing = None
    if plan.backend == "sim":
        from packed_bert.backends.devices import sim_card_timing
        from packed_bert.harness.devices import device_request

        timing = sim_card_timing(device_request(plan, library))
    calibration = None
    if plan.precision in CALIBRATED and plan.backend in CALIBRATING_BACKENDS and not gpu:  # torch calibrates on the CPU
        from packed_bert.squad.calibration import load_calibration

        calibration = load_calibration(plan.cfg.dataset, plan.cfg.vocab)
    return ClusterRequest(
        backend=plan.backend,
        model=plan.cfg.model,
        precision=plan.precision,
        weights=plan.weights,
        weights_id=weights_id(plan.weights),
        simulated=system.simulated,
        resource=resource_for(plan.backend, "cuda" if gpu else "cpu"),
        devices=devices,
        devices_per_node=system.devices,
        backend_options=system.options_for(plan.backend, plan.scenario, plan.precision),
        sim_timing=timing,
        inflight=PIPELINE_DEPTH,
        run_name=f"{system.name} {plan.cfg.model} {plan.scenario} {plan.cfg.mode}",
        placement_timeout_s=placement_timeout_s,
        calibration=calibration,
    )


def cluster_runners(
    plan: RunPlan, library: SampleLibrary, address: str | None, devices: int | None = None
) -> tuple[ClusterHandle, list[Any]]:
    """Join (or start) the cluster and start the run's device actors; release the handle when
    the run ends (it holds the devices until then)."""
    request = cluster_request(plan, library, devices)
    handle = connect(address, node_resources=request.node_resources())
    try:
        return handle, list(make_cluster_runners(handle, request))
    except BaseException:
        handle.release()
        raise
