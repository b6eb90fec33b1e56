"""An unofficial software power meter: NVML on NVIDIA GPUs, RAPL on CPUs that expose it.

Not an MLPerf measurement (no analyzer at the wall): every reading says ``unofficial`` and which
source it used. ``detect()`` returns ``None`` when this machine has no meter.
"""

import glob
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

RAPL_ROOT = "/sys/class/powercap"
NO_METER = "no meter on this machine (no NVIDIA GPU with NVML, no readable RAPL energy counters)"


class Meter(Protocol):
    source: str

    def energy_j(self) -> float:
        """A monotonic energy counter in joules (summed over the meter's domains)."""
        ...


class RaplMeter:
    """Package-level RAPL domains (``intel-rapl:N``; AMD CPUs expose the same powercap files)."""

    def __init__(self, root: str = RAPL_ROOT) -> None:
        self.domains = [
            Path(p)
            for p in sorted(glob.glob(f"{root}/intel-rapl:*"))
            if p.count(":") == 1 and (Path(p) / "energy_uj").is_file()
        ]
        if not self.domains:
            raise OSError("no RAPL package domains")
        self.source = "RAPL (" + ", ".join(self._name(d) for d in self.domains) + ")"
        self._last = [self._read(d) for d in self.domains]
        self._total_uj = 0.0

    @staticmethod
    def _name(d: Path) -> str:
        name = d / "name"
        return name.read_text().strip() if name.is_file() else d.name

    @staticmethod
    def _read(d: Path) -> int:
        return int((d / "energy_uj").read_text())

    def _range(self, d: Path) -> int:
        f = d / "max_energy_range_uj"
        return int(f.read_text()) if f.is_file() else 2**32

    def energy_j(self) -> float:
        for i, d in enumerate(self.domains):
            now = self._read(d)
            delta = now - self._last[i]
            if delta < 0:  # the counter wrapped
                delta += self._range(d)
            self._total_uj += delta
            self._last[i] = now
        return self._total_uj / 1e6


class NvmlMeter:
    """Total energy of all visible NVIDIA GPUs (``nvmlDeviceGetTotalEnergyConsumption``, mJ)."""

    def __init__(self) -> None:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
        self._nvml: Any = pynvml
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        if not self.handles:
            raise OSError("no NVIDIA GPU")
        self.source = f"NVML ({len(self.handles)} GPU{'s' if len(self.handles) > 1 else ''})"

    def energy_j(self) -> float:
        return sum(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self.handles) / 1000.0


def detect(rapl_root: str = RAPL_ROOT) -> Meter | None:
    for make in (NvmlMeter, lambda: RaplMeter(rapl_root)):
        try:
            return make()  # type: ignore[no-any-return]
        except Exception:  # noqa: BLE001 - any failure means "not this meter"
            continue
    return None


@dataclass
class Reading:
    source: str
    joules: float
    seconds: float
    official: bool = False

    @property
    def watts(self) -> float:
        return self.joules / self.seconds if self.seconds > 0 else 0.0

    def describe(self, samples_per_second: float | None = None) -> str:
        text = f"unofficial power ({self.source}): {self.watts:.1f} W average over {self.seconds:.1f} s"
        if samples_per_second:
            text += f", {samples_per_second / self.watts:.3f} samples/J" if self.watts > 0 else ""
        return text


@contextmanager
def metering(meter: Meter, poll_s: float = 1.0) -> Iterator[Callable[[], Reading]]:
    """Measure the energy of the ``with`` block; call the yielded function after it for the reading.

    A background thread reads the counter every ``poll_s`` so RAPL wraps are never missed.
    """
    start_j, start_t = meter.energy_j(), time.monotonic()
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(poll_s):
            meter.energy_j()

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    result: list[Reading] = []
    try:
        yield lambda: result[0]
    finally:
        stop.set()
        thread.join()
        result.append(Reading(meter.source, meter.energy_j() - start_j, time.monotonic() - start_t))
