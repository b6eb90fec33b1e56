"""The run's devices: this host's (``backends.devices``, in this process) or a Ray cluster's
(``harness.cluster_devices``: one actor per device, on any node). ``open_devices`` gives the
runners and what must be released when the run ends."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from packed_bert.backends.base import Runner
from packed_bert.backends.devices import DeviceRequest, device_count, local_runners
from packed_bert.errors import UserError
from packed_bert.harness.plan import RunPlan
from packed_bert.harness.qsl import SampleLibrary
from packed_bert.squad.calibration import load_calibration
from packed_bert.terms import Scenario


def device_request(plan: RunPlan, library: SampleLibrary) -> DeviceRequest:
    system = plan.system
    return DeviceRequest(
        backend=plan.backend,
        model=plan.cfg.model,
        precision=plan.precision,
        weights=plan.weights,
        count=system.devices,
        options=system.options_for(plan.backend, plan.scenario, plan.precision),
        sim_samples_per_s=system.sim_samples_per_s.get(plan.cfg.model) if plan.backend == "sim" else None,
        sim_lengths=library.lengths if plan.backend == "sim" else None,
        sim_chunk=system.batch_size[Scenario.OFFLINE],
        max_per_row=system.max_per_row,
        calibration=functools.partial(load_calibration, plan.cfg.dataset, plan.cfg.vocab),
    )


def cluster_address(plan: RunPlan) -> str | None:
    """``--cluster``, else the system file's ``cluster``; a system of several nodes needs one."""
    address = plan.cfg.cluster if plan.cfg.cluster is not None else plan.system.cluster
    if address is None and plan.system.nodes > 1:
        raise UserError(
            f"--sut {plan.system.name}: a system of {plan.system.nodes} nodes runs on a Ray "
            "cluster; give --cluster HOST:PORT (docs/cluster.md)"
        )
    return address


def check_local_devices(plan: RunPlan) -> None:
    """Fail before the data is read (or downloaded) when this host lacks the devices the run
    names: a system of every visible GPU on a host with none."""
    if cluster_address(plan) is None:
        device_count(DeviceRequest(plan.backend, plan.cfg.model, plan.precision, plan.weights, plan.system.devices))


@dataclass
class RunDevices:
    """The runners of a run and how to let go of them."""

    runners: list[Runner]
    cluster: dict[str, Any] | None = None  # the cluster's description, when there is one
    release: Callable[[], None] = field(default=lambda: None)


def open_devices(plan: RunPlan, library: SampleLibrary) -> RunDevices:
    """This host's devices, or the cluster's when the run has one (held until ``release``)."""
    address = cluster_address(plan)
    if address is None:
        return RunDevices(local_runners(device_request(plan, library)))
    from packed_bert.harness.cluster_devices import cluster_runners

    handle, runners = cluster_runners(plan, library, address, plan.cfg.cluster_devices)
    try:
        described = handle.describe()
    except Exception:  # noqa: BLE001 - a description is not worth failing a run for
        described = {"address": handle.label()}
    return RunDevices(list(runners), described, handle.release)


def make_runners(plan: RunPlan, library: SampleLibrary) -> list[Runner]:
    """This host's runners (workflows that keep runners across runs, such as the demo)."""
    if cluster_address(plan) is not None:
        raise UserError("--cluster runs one benchmark at a time: drop --cluster for the demo")
    return local_runners(device_request(plan, library))
