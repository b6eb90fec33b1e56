"""One runner per device of a system: simulated cards, CPU, every visible GPU, or null; plus the
devices of other hosts (``--hosts``: ``remote.client.RemoteRunner``, one per connection)."""

from __future__ import annotations

from typing import Any

import numpy as np

from packed_bert.errors import UserError
from packed_bert.harness.plan import RunPlan
from packed_bert.harness.qsl import SampleLibrary
from packed_bert.packing import pack_matrix


def samples_per_packed_row(lengths: np.ndarray, chunk: int, max_per_row: int = 3) -> float:
    """Sequences per 384-token row when ``lengths`` are packed in chunks of ``chunk``."""
    rows = 0
    for s in range(0, lengths.size, chunk):
        rows += pack_matrix(lengths[s : s + chunk], max_per_row, 384).shape[0]
    return lengths.size / rows if rows else 1.0


def device_count(plan: RunPlan) -> int:
    if plan.system.devices is not None:
        return plan.system.devices
    if plan.backend == "torch":
        import torch

        n = int(torch.cuda.device_count())
        if n == 0:
            raise UserError(f"--sut {plan.system.name}: no NVIDIA GPU is visible here")
        return n
    return 1


def make_runners(plan: RunPlan, library: SampleLibrary) -> list[Any]:
    """The run's runners: this host's devices (unless ``--no-local-devices``), then those of
    every ``--hosts`` worker. The workers are reached first, so a wrong address fails fast."""
    hosts = run_hosts(plan)
    if not plan.cfg.local_devices and not hosts:
        raise UserError("--no-local-devices needs --hosts HOST:PORT[,HOST:PORT...] (or hosts in the system file)")
    remote = connect_remote(plan, hosts) if hosts else []
    local = local_runners(plan, library) if plan.cfg.local_devices else []
    return local + remote


def run_hosts(plan: RunPlan) -> tuple[str, ...]:
    """``--hosts`` when given, else the system file's ``hosts``."""
    return plan.cfg.hosts if plan.cfg.hosts is not None else plan.system.hosts


def connect_remote(plan: RunPlan, hosts: tuple[str, ...]) -> list[Any]:
    from packed_bert.remote.client import connect_hosts
    from packed_bert.remote.info import Expected, weights_id

    want = Expected(plan.cfg.model, plan.precision, weights_id(plan.weights), plan.system.simulated)
    hint = f"--sut {plan.cfg.sut} --model {plan.cfg.model}"
    if plan.weights != plan.system.weights:
        hint += f" --weights {plan.weights}"
    # Offline: two connections per remote device, so one batch travels while the other runs.
    # Server/SingleStream: one, as the device pool gives a device one thread there (a batch is
    # only taken by a device that is free).
    per_device = 2 if plan.scenario == "Offline" else 1
    return connect_hosts(hosts, want, hint, connections_per_device=per_device)


def local_runners(plan: RunPlan, library: SampleLibrary) -> list[Any]:
    """One runner per device of this host (``packed-bert serve`` makes its runners here too)."""
    from packed_bert.backends import create

    n = device_count(plan)
    opts: dict[str, Any] = dict(plan.system.backend_options)
    if plan.backend == "sim":
        from packed_bert.backends.sim import SimTiming

        # The published per-card rate is for packed rows of SQuAD dev; the simulated card runs
        # that many 384-token rows a second, whatever the batching.
        rate = plan.system.sim_samples_per_s[plan.cfg.model]
        per_row = samples_per_packed_row(
            library.lengths, plan.system.batch_size["Offline"], plan.system.max_per_row
        )
        opts["timing"] = SimTiming.from_rate(rate / per_row, static_shape=True)
        return [
            create("sim", plan.weights, plan.precision, f"sim:{d}", model=plan.cfg.model, **opts)
            for d in range(n)
        ]
    if plan.backend == "null":
        return [create("null", plan.weights, plan.precision, "cpu", **opts) for _ in range(n)]
    auto = plan.system.devices is None  # "auto": every visible GPU
    devices = [f"cuda:{d}" for d in range(n)] if auto else ["cpu"] * n
    return [
        create(plan.backend, plan.weights, plan.precision, dev, model=plan.cfg.model, **opts)
        for dev in devices
    ]
