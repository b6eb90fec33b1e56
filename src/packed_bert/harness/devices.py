"""The run's runners: this host's devices (``backends.devices``) and those of other hosts."""

from __future__ import annotations

from packed_bert.backends.base import Runner
from packed_bert.backends.devices import DeviceRequest, local_runners
from packed_bert.errors import UserError
from packed_bert.harness.plan import RunPlan
from packed_bert.harness.qsl import SampleLibrary
from packed_bert.terms import Scenario


def device_request(plan: RunPlan, library: SampleLibrary) -> DeviceRequest:
    system = plan.system
    return DeviceRequest(
        backend=plan.backend, model=plan.cfg.model, precision=plan.precision, weights=plan.weights,
        count=system.devices, options=dict(system.backend_options),
        sim_samples_per_s=system.sim_samples_per_s.get(plan.cfg.model) if plan.backend == "sim" else None,
        sim_lengths=library.lengths if plan.backend == "sim" else None,
        sim_chunk=system.batch_size[Scenario.OFFLINE], max_per_row=system.max_per_row,
    )


def make_runners(plan: RunPlan, library: SampleLibrary) -> list[Runner]:
    """This host's devices (unless ``--no-local-devices``), then those of every ``--hosts``
    worker. The workers are reached first, so a wrong address fails fast."""
    hosts = run_hosts(plan)
    if not plan.cfg.local_devices and not hosts:
        raise UserError("--no-local-devices needs --hosts HOST:PORT[,HOST:PORT...] (or hosts in the system file)")
    remote = connect_remote(plan, hosts) if hosts else []
    local = local_runners(device_request(plan, library)) if plan.cfg.local_devices else []
    return local + remote


def run_hosts(plan: RunPlan) -> tuple[str, ...]:
    """``--hosts`` when given, else the system file's ``hosts``."""
    return plan.cfg.hosts if plan.cfg.hosts is not None else plan.system.hosts


def connect_remote(plan: RunPlan, hosts: tuple[str, ...]) -> list[Runner]:
    from packed_bert.remote.client import connect_hosts
    from packed_bert.remote.info import Expected, weights_id

    want = Expected(plan.cfg.model, plan.precision, weights_id(plan.weights), plan.system.simulated)
    hint = f"--sut {plan.cfg.sut} --model {plan.cfg.model}"
    if plan.weights != plan.system.weights:
        hint += f" --weights {plan.weights}"
    # Offline: two connections per remote device, so one batch travels while the other runs.
    # Server/SingleStream: one, as the device pool gives a device one thread there (a batch is
    # only taken by a device that is free).
    per_device = 2 if plan.scenario == Scenario.OFFLINE else 1
    return list(connect_hosts(hosts, want, hint, connections_per_device=per_device))
