"""``system.json`` of a run: the system file, the devices and nodes that served it, this host."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from packed_bert.backends.base import Runner
from packed_bert.harness.plan import RunPlan

SIMULATED_NOTE = "SIMULATED: no such accelerator is here; timing from the published per-card rates"


def describe_system(plan: RunPlan, runners: Sequence[Runner]) -> dict[str, Any]:
    from packed_bert.remote.nodes import describe_nodes

    desc = plan.system.describe()
    desc["sdk"] = plan.cfg.sdk or plan.system.sdk
    # the nodes whose devices served batches (the lead only where its own devices took part)
    nodes = describe_nodes(list(runners))
    devices = sum(n["devices"] for n in nodes)
    desc["devices"] = devices
    desc["number_of_nodes"] = len(nodes)
    desc["runners"] = [n["runner"] for n in nodes] + (
        [f"... {devices - len(nodes)} more alike"] if devices > len(nodes) else [])
    if len(nodes) > 1 or any(n["node"] != "lead" for n in nodes):
        desc["nodes"] = [{k: v for k, v in n.items() if k != "runner"} for n in nodes]
        desc["local_devices"] = plan.cfg.local_devices  # False: the lead only ran LoadGen
    desc["run"] = plan.describe()
    desc["host_info"] = host_info()
    if plan.system.simulated:
        desc["note"] = SIMULATED_NOTE
    return desc


def host_info() -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": sys.version.split()[0],
        "loadgen": _version("mlcommons-loadgen"),
        "numpy": np.__version__,
        "packed_bert": _version("packed-bert"),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
