"""LoadGen's logs, read (and the accuracy log written) in one place: ``mlperf_log_summary.txt``,
``mlperf_log_detail.txt`` (``:::MLLOG`` records) and ``mlperf_log_accuracy.json``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packed_bert.errors import UserError

SUMMARY = "mlperf_log_summary.txt"
DETAIL = "mlperf_log_detail.txt"
ACCURACY_LOG = "mlperf_log_accuracy.json"
TRACE = "mlperf_log_trace.json"
LOG_FILES = (SUMMARY, DETAIL, ACCURACY_LOG, TRACE)

# The summary line that holds each scenario's score (what MLPerf's verify scripts read).
SCORE_LINE = {
    "Offline": "Samples per second",
    "Server": "Completed samples per second",
    "SingleStream": "Early stopping 90th percentile estimate",
    "MultiStream": "Early stopping 99th percentile estimate",
}


@dataclass
class LoadGenSummary:
    """What ``mlperf_log_summary.txt`` says."""

    path: Path
    scenario: str = ""
    mode: str = ""
    valid: bool | None = None  # "Result is : VALID"
    score: float | None = None  # the scenario's score line: samples/s, or latency ns (streams)
    samples_per_second: float | None = None
    latency_p90_ms: float | None = None
    latency_p99_ms: float | None = None
    performance_constraints: bool | None = None  # Server: latency bound met, schedule kept
    invalid_reasons: list[str] = field(default_factory=list)  # the "... satisfied: NO" lines
    recommendations: list[str] = field(default_factory=list)  # LoadGen's advice on an INVALID run
    target_latency_ns: str | None = None
    errors: int = 0  # "N ERROR" lines
    fields: dict[str, str] = field(default_factory=dict)


_LINE = re.compile(r"^\s*([^:*][^:]*?)\s*:\s*(.+?)\s*$")
_EARLY = re.compile(r"^\s*\*\s*Early stopping ([\d.]+)th percentile estimate\s*:\s*(\d+)")


def read_summary(path: Path, missing_ok: bool = False) -> LoadGenSummary:
    """Parse a summary log; a missing file is a ``UserError`` (or an empty summary)."""
    out = LoadGenSummary(Path(path))
    if not out.path.is_file():
        if missing_ok:
            return out
        raise UserError(f"{path}: no LoadGen summary there; was the run finished?")
    lines = out.path.read_text(encoding="utf-8", errors="replace").splitlines()
    recommendations: list[str] = []
    in_reco = False
    for raw in lines:
        line = raw.rstrip()
        if re.match(r"\d+ ERROR", line):
            out.errors += int(line.split(" ", 1)[0])
        if line.startswith("Recommendations"):
            in_reco = True
            continue
        if in_reco:
            if line.startswith(" * "):
                recommendations.append(line[3:].strip())
                continue
            if line.startswith("="):
                in_reco = False
        early = _EARLY.match(line)  # LoadGen 5+: " * Early stopping 90.0th percentile estimate: N"
        if early:
            out.fields.setdefault(f"Early stopping {float(early.group(1)):g}th percentile estimate", early.group(2))
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
    out.scenario, out.mode = f.get("Scenario", ""), f.get("Mode", "")
    out.target_latency_ns = f.get("target_latency (ns)")
    wanted = SCORE_LINE.get(out.scenario)
    if wanted and wanted in f:
        out.score = _num(f[wanted])
    for key in ("Samples per second", "Completed samples per second"):
        if key in f:
            out.samples_per_second = _num(f[key])
            break
    for key in ("90th percentile latency (ns)", "90.00 percentile latency (ns)"):
        if key in f:
            out.latency_p90_ms = _ms(f[key])
            break
    if "99.00 percentile latency (ns)" in f:
        out.latency_p99_ms = _ms(f["99.00 percentile latency (ns)"])
    if "Performance constraints satisfied" in f:
        out.performance_constraints = f["Performance constraints satisfied"].upper() == "YES"
    if out.valid is False:
        out.recommendations = recommendations
    return out


def _num(text: str) -> float | None:
    try:
        return float(text.split()[0])
    except (ValueError, IndexError):
        return None


def _ms(ns_text: str) -> float | None:
    ns = _num(ns_text)
    return None if ns is None else ns / 1e6


def mllog_records(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON records of a LoadGen detail log's ``:::MLLOG`` lines (others skipped)."""
    for line in Path(path).read_text(errors="replace").splitlines():
        if line.startswith(":::MLLOG "):
            try:
                record = json.loads(line[len(":::MLLOG ") :])
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record


def read_detail(path: Path) -> dict[str, list[Any]]:
    """Every ``:::MLLOG`` key of the detail log with its values in order."""
    if not Path(path).is_file():
        raise UserError(f"{path}: no LoadGen detail log there")
    out: dict[str, list[Any]] = {}
    for rec in mllog_records(path):
        out.setdefault(str(rec.get("key")), []).append(rec.get("value"))
    return out


def detail_errors(path: Path) -> list[str]:
    """The ERROR entries LoadGen logged (``metadata.is_error``), as ``key: value``; MLPerf's
    submission checker rejects a run whose detail log has one."""
    if not Path(path).is_file():
        return []
    return [
        f"{rec.get('key')}: {rec.get('value')}"
        for rec in mllog_records(path)
        if isinstance(rec.get("metadata"), dict) and rec["metadata"].get("is_error")
    ]


@dataclass(frozen=True)
class AccuracyEntry:
    """One logged response: the QSL index and the payload as LoadGen's hex text."""

    qsl_idx: int
    data: str
    seq_id: int


def read_accuracy_log(path: Path) -> list[AccuracyEntry]:
    """The entries of ``mlperf_log_accuracy.json``, checked; bad content is a ``UserError``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no LoadGen accuracy log there") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the accuracy log ({exc})") from None
    try:
        raw = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not a LoadGen accuracy log ({exc.msg}); is it truncated?") from None
    if not isinstance(raw, list):
        raise UserError(f"{path}: not a LoadGen accuracy log (expected a JSON list of responses)")
    entries = []
    for n, e in enumerate(raw):
        idx = e.get("qsl_idx") if isinstance(e, dict) else None
        data = e.get("data") if isinstance(e, dict) else None
        if type(idx) is not int or idx < 0 or not isinstance(data, str):
            raise UserError(f"{path}: entry {n} has no valid qsl_idx/data; pass an MLPerf mlperf_log_accuracy.json")
        seq = e.get("seq_id", n)
        entries.append(AccuracyEntry(idx, data, seq if type(seq) is int else n))
    return entries


def write_accuracy_log(path: Path, entries: Sequence[AccuracyEntry]) -> None:
    """Write entries in LoadGen's own one-entry-per-line layout."""
    lines = [f'{{ "seq_id" : {e.seq_id}, "qsl_idx" : {e.qsl_idx}, "data" : "{e.data}" }}' for e in entries]
    Path(path).write_text("[\n" + ",\n".join(lines) + ("\n" if lines else "") + "]\n")
