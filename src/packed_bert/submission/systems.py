"""``systems/<sut>.json``: the fields MLPerf's submission checker requires, from the run's
system.json (written by the harness) and the command line."""

import json
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from packed_bert.submission.system_notes import hardware_note, software_note

REQUIRED_FIELDS = (
    "division",
    "submitter",
    "status",
    "system_name",
    "number_of_nodes",
    "host_processor_model_name",
    "host_processors_per_node",
    "host_processor_core_count",
    "host_memory_capacity",
    "host_storage_capacity",
    "host_storage_type",
    "accelerators_per_node",
    "accelerator_model_name",
    "accelerator_memory_capacity",
    "framework",
    "operating_system",
    "system_type",
    "other_software_stack",
    "host_processor_frequency",
    "host_processor_caches",
    "host_memory_configuration",
    "host_processor_interconnect",
    "host_networking",
    "host_networking_topology",
    "accelerator_frequency",
    "accelerator_host_interconnect",
    "accelerator_interconnect",
    "accelerator_interconnect_topology",
    "accelerator_memory_configuration",
    "accelerator_on-chip_memories",
    "cooling",
    "hw_notes",
    "sw_notes",
    "host_network_card_count",
    "system_type_detail",
)
UNKNOWN = "N/A"


TEST_TREE_NOTE = "TEST TREE (packed-bert submission --allow-test-runs): test-length runs, not a valid MLPerf result"


def system_json(
    run_system: dict[str, Any],
    sut: str,
    submitter: str,
    division: str,
    system_type: str = "datacenter",
    test_tree: bool = False,
    status: str = "available",
    taken: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """From the harness's ``system.json``: the system file's fields (``host``, ``accelerator``,
    ``backend``, ``sdk``, ``simulated``), ``devices`` (the runners used) and ``host_info`` (the
    machine that ran it: ``cpu_model``, ``cpus``, ``platform``); the notes also from ``taken``,
    the ``system.json`` of every run the submission takes for this system."""
    info = run_system.get("host_info")
    host_info: dict[str, Any] = info if isinstance(info, dict) else {}
    simulated = bool(run_system.get("simulated"))
    accel = run_system.get("accelerator")
    devices = run_system.get("devices")
    count = len(devices) if isinstance(devices, list) else devices if isinstance(devices, int) else None
    nodes = run_system.get("number_of_nodes")
    node_count = nodes if isinstance(nodes, int) and nodes >= 1 else 1
    per_node = _devices_per_node(run_system)
    if count is not None and node_count > 1:
        count = per_node or -(-count // node_count)
    if not accel or str(accel).lower() in ("cpu", "none"):
        accel, count = None, 0  # a CPU-only system has no accelerator in MLPerf's terms
    if simulated:  # the system the timing model stands for, not the machine the run was on
        cpu, cores = run_system.get("host"), None
    else:
        cpu, cores = host_info.get("cpu_model"), host_info.get("cpus")
    sdk = run_system.get("sdk")
    out: dict[str, Any] = {key: UNKNOWN for key in REQUIRED_FIELDS}
    out.update(
        division=division,
        submitter=submitter,
        status=status,
        system_name=f"{sut} (simulated)" if simulated else sut,
        number_of_nodes=node_count,
        host_processor_model_name=str(cpu) if cpu else UNKNOWN,
        host_processor_core_count=cores or UNKNOWN,
        # "0" for a CPU-only system: the checker wants a non-empty value it can read as a number
        # (it tests ``not value``, so a JSON 0 reads as missing; its tables take int(value))
        accelerators_per_node=count if count else "0",
        accelerator_model_name=str(accel) if accel else UNKNOWN,
        framework=_framework(run_system),
        operating_system=(
            str(host_info["platform"])
            if not simulated and host_info.get("platform")
            else UNKNOWN
            if simulated
            else f"{platform.system()} {platform.release()}"
        ),
        system_type=system_type,
        other_software_stack=_software(host_info, sdk),
    )
    notes = ["simulated accelerator: timing model, not hardware"] if simulated else []
    if (software := software_note(taken)) is not None:
        notes.append(software)
    out["sw_notes"] = "; ".join(notes) or UNKNOWN
    if not simulated:  # the machine that ran it, as far as it could read itself (older runs: N/A)
        out.update(_host_hardware(host_info))
        out["hw_notes"] = hardware_note(run_system) or UNKNOWN
    if test_tree:
        out["sw_notes"] = TEST_TREE_NOTE + ("; " + out["sw_notes"] if out["sw_notes"] != UNKNOWN else "")
    if node_count > 1:
        out["hw_notes"] = _nodes_note(run_system)
    return out


def _software(host_info: dict[str, Any], sdk: Any) -> str:
    """Python, LoadGen and the run's runtimes with their versions (``host_info``), and the SDK."""
    named = {"Python": host_info.get("python"), "mlcommons-loadgen": host_info.get("loadgen")}
    found = host_info.get("runtimes")
    named.update(found if isinstance(found, dict) else {})
    parts = [f"{name} {v}" for name, v in named.items() if v] + ([f"SDK {sdk}"] if sdk else [])
    return ", ".join(parts) or UNKNOWN


def _host_hardware(host_info: dict[str, Any]) -> dict[str, Any]:
    """``host_processors_per_node``, ``host_memory_capacity``, ``host_processor_frequency`` and
    ``host_processor_caches`` from the run's ``host_info`` (``harness.host_facts``)."""
    out: dict[str, Any] = {}
    if isinstance(sockets := host_info.get("sockets"), int) and sockets > 0:
        out["host_processors_per_node"] = sockets
    if isinstance(memory := host_info.get("memory_bytes"), int) and memory > 0:
        out["host_memory_capacity"] = f"{memory / 2**30:.0f} GiB"
    if isinstance(mhz := host_info.get("cpu_mhz"), (int, float)) and mhz > 0:
        out["host_processor_frequency"] = f"{mhz:.0f} MHz"
    if host_info.get("caches"):
        out["host_processor_caches"] = str(host_info["caches"])
    return out


def _framework(run_system: dict[str, Any]) -> str:
    """The runtimes the system's models ran on (``backend_by_model`` of system.json: a precision
    entry may name its own, as the CPU-class tables do), else the system file's ``backend``."""
    per_model = run_system.get("backend_by_model")
    if not isinstance(per_model, dict) or not per_model:
        return f"packed-bert, {run_system.get('backend') or 'LoadGen harness'}"
    runtimes = {str(m): str(r) for m, r in sorted(per_model.items())}
    if len(set(runtimes.values())) == 1:
        return f"packed-bert, {next(iter(runtimes.values()))}"
    return "packed-bert, " + ", ".join(f"{runtime} ({model})" for model, runtime in runtimes.items())


def _devices_per_node(run_system: dict[str, Any]) -> int | None:
    """Devices per node of a multi-host run (``nodes`` in system.json): the largest node's;
    ``hw_notes`` lists each node."""
    nodes = run_system.get("nodes")
    counts = [n.get("devices") for n in nodes if isinstance(n, dict)] if isinstance(nodes, list) else []
    ints = [c for c in counts if isinstance(c, int)]
    return max(ints) if ints else None


def _nodes_note(run_system: dict[str, Any]) -> str:
    nodes = run_system.get("nodes")
    if not isinstance(nodes, list):
        return UNKNOWN
    parts = [f"{n.get('host')} ({n.get('node')}): {n.get('devices')} devices" for n in nodes if isinstance(n, dict)]
    return f"{len(parts)} nodes of a Ray cluster: " + "; ".join(parts)


def read_run_system(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / "system.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
