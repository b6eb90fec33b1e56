"""What this host is, for a submission's system description: processor sockets, memory, the
processor's clock and caches (Linux's ``/proc`` and ``/sys``; ``None`` where unreadable), and
the versions of the runtimes a run used (Python's and LoadGen's are ``host_info``'s own)."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CACHES = Path("/sys/devices/system/cpu/cpu0/cache")
# backends that are a Python distribution of that name (the amx and vnni kernels are
# packed-bert's own, built at first use; PyTorch hosts them)
RUNTIMES = ("torch", "onnxruntime", "openvino")


def host_facts(backends: Iterable[str], cpuinfo: str | None = None, meminfo: str | None = None) -> dict[str, Any]:
    cpu_text = _read(Path("/proc/cpuinfo")) if cpuinfo is None else cpuinfo
    return {
        "sockets": sockets(cpu_text),
        "memory_bytes": memory_bytes(_read(Path("/proc/meminfo")) if meminfo is None else meminfo),
        "cpu_mhz": cpu_mhz(cpu_text),
        "caches": caches(CACHES),
        "runtimes": runtimes(backends),
    }


def sockets(cpuinfo: str) -> int | None:
    """Distinct ``physical id``s (x86); None where /proc/cpuinfo has none (most aarch64)."""
    ids = {line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("physical id")}
    return len(ids) or None


def memory_bytes(meminfo: str) -> int | None:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def cpu_mhz(cpuinfo: str) -> float | None:
    """The first core's clock as the kernel reports it (``cpu MHz``)."""
    for line in cpuinfo.splitlines():
        if line.startswith("cpu MHz"):
            try:
                return float(line.split(":", 1)[1])
            except ValueError:
                return None
    return None


def caches(root: Path) -> str | None:
    """The first core's caches, e.g. ``L1d 48 KiB, L1i 64 KiB, L2 2 MiB per core; L3 480 MiB
    shared by 2 CPUs`` (from ``index*/{level,type,size,shared_cpu_list}``)."""
    own, shared = [], []
    for index in sorted(root.glob("index*")):
        level, kind, size = (_read(index / name).strip() for name in ("level", "type", "size"))
        sharing = _cpu_count(_read(index / "shared_cpu_list").strip())
        if not level or not size:
            continue
        name = f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")
        text = f"{name} {_size(size)}"
        if sharing > 1:
            shared.append(f"{text} shared by {sharing} CPUs")
        else:
            own.append(text)
    parts = ([", ".join(own) + " per core"] if own else []) + shared
    return "; ".join(parts) or None


def runtimes(backends: Iterable[str]) -> dict[str, str]:
    """The installed versions of the runtimes among ``backends``."""
    names = dict.fromkeys(b for b in backends if b in RUNTIMES)
    return {name: v for name in names if (v := version(name))}


def _size(text: str) -> str:
    """``2048K`` -> ``2 MiB``, ``491520K`` -> ``480 MiB``, ``48K`` -> ``48 KiB``."""
    units = {"K": 1, "M": 1024, "G": 1024 * 1024}
    try:
        kib = int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text) // 1024
    except ValueError:
        return text
    for unit, scale in (("GiB", 1024 * 1024), ("MiB", 1024)):
        if kib >= scale and kib % scale == 0:
            return f"{kib // scale} {unit}"
    return f"{kib} KiB"


def _cpu_count(cpu_list: str) -> int:
    """CPUs in a list such as ``0-1,4``."""
    count = 0
    for part in filter(None, cpu_list.split(",")):
        low, _, high = part.partition("-")
        try:
            count += int(high or low) - int(low) + 1
        except ValueError:
            return 1
    return count or 1


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
