"""Reading LoadGen's logs: mlperf_log_summary.txt, mlperf_log_detail.txt, mlperf_log_accuracy.json."""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packed_bert.errors import UserError

SUMMARY = "mlperf_log_summary.txt"
DETAIL = "mlperf_log_detail.txt"
ACCURACY_LOG = "mlperf_log_accuracy.json"

# The summary line that holds each scenario's score (what MLPerf's verify scripts read).
SCORE_LINE = {
    "Offline": "Samples per second",
    "Server": "Completed samples per second",
    "SingleStream": "Early stopping 90th percentile estimate",
    "MultiStream": "Early stopping 99th percentile estimate",
}


@dataclass
class Summary:
    path: Path
    scenario: str = ""
    mode: str = ""
    score: float | None = None  # samples/s (Offline, Server) or latency ns (streams)
    valid: bool | None = None
    target_latency_ns: str | None = None
    errors: int = 0
    fields: dict[str, str] = field(default_factory=dict)


def read_summary(path: Path) -> Summary:
    if not path.is_file():
        raise UserError(f"{path}: no LoadGen summary there; was the run finished?")
    out = Summary(path)
    for line in path.read_text(errors="replace").splitlines():
        if re.match(r"\d+ ERROR", line):
            out.errors += int(line.split(" ", 1)[0])
        if " : " not in line and ": " not in line:
            continue
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        out.fields.setdefault(key, value)
        if key == "Scenario":
            out.scenario = value
        elif key == "Mode":
            out.mode = value
        elif key == "Result is":
            out.valid = value == "VALID"
        elif key == "target_latency (ns)":
            out.target_latency_ns = value
    wanted = SCORE_LINE.get(out.scenario)
    for line in path.read_text(errors="replace").splitlines():
        if wanted and re.match(rf"\s*{re.escape(wanted)}\s*:", line):
            try:
                out.score = float(line.split(":", 1)[1].strip())
            except ValueError:
                out.score = None
            break
    return out


def read_detail(path: Path) -> dict[str, list[Any]]:
    """Every ``:::MLLOG`` key of the detail log with its values in order."""
    if not path.is_file():
        raise UserError(f"{path}: no LoadGen detail log there")
    out: dict[str, list[Any]] = {}
    for rec in _mllog_records(path):
        out.setdefault(str(rec.get("key")), []).append(rec.get("value"))
    return out


def _mllog_records(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON records of a LoadGen detail log's ``:::MLLOG`` lines (others skipped)."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(":::MLLOG "):
            try:
                yield json.loads(line[len(":::MLLOG ") :])
            except json.JSONDecodeError:
                continue


def detail_errors(path: Path) -> list[str]:
    """The ERROR entries LoadGen logged (``metadata.is_error``), as ``key: value``; MLPerf's
    submission checker rejects a run whose detail log has one."""
    out: list[str] = []
    if not path.is_file():
        return out
    for rec in _mllog_records(path):
        if isinstance(rec.get("metadata"), dict) and rec["metadata"].get("is_error"):
            out.append(f"{rec.get('key')}: {rec.get('value')}")
    return out


def read_accuracy_log(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise UserError(f"{path}: no LoadGen accuracy log there")
    try:
        data = json.loads(path.read_text() or "[]")
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not a LoadGen accuracy log ({exc.msg}); is it truncated?") from exc
    if not isinstance(data, list):
        raise UserError(f"{path}: not a LoadGen accuracy log (expected a JSON list)")
    return data


def write_accuracy_log(path: Path, entries: list[dict[str, Any]]) -> None:
    """Write entries in LoadGen's own one-entry-per-line layout."""
    lines = [
        f'{{ "seq_id" : {int(e.get("seq_id", i))}, "qsl_idx" : {int(e["qsl_idx"])}, "data" : "{e["data"]}" }}'
        for i, e in enumerate(entries)
    ]
    path.write_text("[\n" + ",\n".join(lines) + ("\n" if lines else "") + "]\n")
