"""Reading LoadGen's summary log: the result, VALID/INVALID and the reasons."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LoadGenSummary:
    valid: bool | None = None
    samples_per_second: float | None = None
    latency_p90_ms: float | None = None
    latency_p99_ms: float | None = None
    performance_constraints: bool | None = None  # Server: latency bound met, schedule kept
    invalid_reasons: list[str] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


_LINE = re.compile(r"^\s*([^:*][^:]*?)\s*:\s*(.+?)\s*$")


def parse_summary(path: Path) -> LoadGenSummary:
    """Parse ``mlperf_log_summary.txt``; a missing file gives an empty summary."""
    out = LoadGenSummary()
    if not path.is_file():
        return out
    recommendations: list[str] = []
    in_reco = False
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.rstrip()
        if line.startswith("Recommendations"):
            in_reco = True
            continue
        if in_reco:
            if line.startswith(" * "):
                recommendations.append(line[3:].strip())
                continue
            if line.startswith("="):
                in_reco = False
        m = _LINE.match(line)
        if not m:
            continue
        key, value = m.group(1).strip(), m.group(2).strip()
        out.fields.setdefault(key, value)
        if key == "Result is":
            out.valid = value.upper() == "VALID"
        elif value.upper() == "NO" and "satisfied" in key.lower():
            out.invalid_reasons.append(f"{key}: NO")
    f = out.fields
    for key in ("Samples per second", "Completed samples per second"):
        if key in f:
            out.samples_per_second = _num(f[key])
            break
    if "90th percentile latency (ns)" in f:
        out.latency_p90_ms = _num(f["90th percentile latency (ns)"]) / 1e6
    elif "90.00 percentile latency (ns)" in f:
        out.latency_p90_ms = _num(f["90.00 percentile latency (ns)"]) / 1e6
    if "99.00 percentile latency (ns)" in f:
        out.latency_p99_ms = _num(f["99.00 percentile latency (ns)"]) / 1e6
    if "Performance constraints satisfied" in f:
        out.performance_constraints = f["Performance constraints satisfied"].upper() == "YES"
    if out.valid is False:
        out.invalid_reasons.extend(recommendations)
    return out


def _num(text: str) -> float:
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return float("nan")
