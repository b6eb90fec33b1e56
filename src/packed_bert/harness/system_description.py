"""``system.json`` of a run: the system file, the devices and nodes that served it, this host."""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from packed_bert.backends.base import Runner
from packed_bert.backends.cpu_class import UNKNOWN_CPU, cpu_generation, cpu_model
from packed_bert.harness.host_facts import host_facts, version
from packed_bert.harness.plan import RunPlan

SIMULATED_NOTE = "SIMULATED: no such accelerator is here; timing from the published per-card rates"


def describe_system(plan: RunPlan, runners: Sequence[Runner], cluster: dict[str, Any] | None = None) -> dict[str, Any]:
    """The system file, then what ran: devices and nodes (``number_of_nodes``, and ``nodes``
    with each node's host and devices when they are not all this host), the cluster, this host."""
    from packed_bert.cluster.nodes import DRIVER, describe_nodes

    desc = plan.system.describe()
    desc["sdk"] = plan.cfg.sdk or plan.system.sdk
    nodes = describe_nodes(list(runners))
    devices = sum(n["devices"] for n in nodes)
    desc["devices"] = devices
    desc["number_of_nodes"] = len(nodes)
    desc["runners"] = [n["runner"] for n in nodes] + (
        [f"... {devices - len(nodes)} more alike"] if devices > len(nodes) else []
    )
    if cluster is not None or any(n["node"] != DRIVER for n in nodes):
        desc["nodes"] = [{k: v for k, v in n.items() if k != "runner"} for n in nodes]
    if cluster is not None:
        desc["cluster"] = cluster
    desc["run"] = plan.describe()
    desc["host_info"] = host_info(set(desc.get("backend_by_model", {}).values()) | {plan.backend})
    if plan.system.simulated:
        desc["note"] = SIMULATED_NOTE
    return desc


def host_info(backends: Iterable[str] = ()) -> dict[str, Any]:
    """This host, and the software of ``backends`` (what the run's models ran on)."""
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cpu_model": None if (model := cpu_model()) == UNKNOWN_CPU else model,
        "cpu_generation": cpu_generation() or None,
        "python": sys.version.split()[0],
        "loadgen": version("mlcommons-loadgen"),
        "numpy": np.__version__,
        "packed_bert": version("packed-bert"),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **host_facts(sorted(backends)),
    }
