"""The benchmarks' matmul probe waits for a steady reading before a pass counts
(``benchmarks/throughput.steady``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from throughput import STEADY_READINGS, steady  # noqa: E402


class Readings:
    """A probe whose windows read the given rates in turn (then the last one again)."""

    def __init__(self, rates: list[float]) -> None:
        self.rates, self.taken = rates, 0

    def rate(self, window_s: float = 0.2) -> float:
        self.taken += 1
        return self.rates[min(self.taken, len(self.rates)) - 1]


@pytest.mark.parametrize(
    ("rates", "taken"),
    [
        ([161, 149, 419, 1435, 1383, 1400], 5),  # seen beside OpenVINO's first batches: low, then steady
        ([1374, 1413, 1407], 3),  # steady from the start: three windows
        ([149, 161, 1400, 1420], 4),  # two low windows that agree are not enough
        ([100, 2000] * 20, STEADY_READINGS),  # never steady: it gives up
    ],
)
def test_the_first_probe_waits_until_readings_are_steady(rates: list[float], taken: int) -> None:
    probe: Any = Readings(rates)
    steady(probe)
    assert probe.taken == taken
