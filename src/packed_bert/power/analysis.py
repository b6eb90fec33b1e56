"""Average power between LoadGen's ``power_begin`` and ``power_end``, and the scenario's power
metric, as MLPerf's submission checker computes them (``power_check.get_power_metric_check``):
the analyzer's samples strictly inside the window with watts above 0 averaged; Offline and Server
report watts and samples per joule (samples/s over watts), SingleStream millijoules per query
(watts x the window's seconds x 1000 / LoadGen's ``result_query_count``) and samples per joule
(1000 over that).

``power_begin``/``power_end`` come from mlperf_log_detail.txt (``MM-DD-YYYY HH:MM:SS.fff``);
the analyzer's samples from PTDaemon's ``spl.txt`` lines
``Time,<date> <time>,Watts,X,Volts,V,Amps,A,PF,P,Mark,<name>``.
"""

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from packed_bert.errors import UserError
from packed_bert.results.loadgen_logs import DETAIL, SUMMARY, read_detail, read_summary
from packed_bert.terms import Scenario

LOADGEN_TIME = "%m-%d-%Y %H:%M:%S.%f"


def parse_time(text: str) -> datetime:
    """PTDaemon and LoadGen write month-day-year; read day-month-year too when that is all it can be."""
    text = text.strip()
    try:
        return datetime.strptime(text, LOADGEN_TIME)
    except ValueError:
        return datetime.strptime(text, "%d-%m-%Y %H:%M:%S.%f")


def read_spl(path: Path) -> list[tuple[datetime, float]]:
    samples = []
    for line in path.read_text(errors="replace").splitlines():
        fields = re.split(r"[,;]", line.strip())
        if len(fields) < 4 or fields[0] != "Time":
            continue
        try:
            watts = float(fields[fields.index("Watts") + 1])
            samples.append((parse_time(fields[1]), watts))
        except (ValueError, IndexError):
            continue
    return samples


def power_window(detail: Path, marks: dict[str, list[object]] | None = None) -> tuple[datetime, datetime]:
    """``power_begin`` and ``power_end`` of the detail log at ``detail`` (``marks``: its records,
    where the caller has read them)."""
    marks = read_detail(detail) if marks is None else marks
    if not marks.get("power_begin") or not marks.get("power_end"):
        raise UserError(f"{detail}: no power_begin/power_end marks; not a LoadGen performance run")
    return parse_time(str(marks["power_begin"][-1])), parse_time(str(marks["power_end"][-1]))


@dataclass
class PowerResult:
    average_watts: float
    samples_in_window: int
    duration_s: float
    samples_per_second: float | None
    samples_per_joule: float | None
    begin: str
    end: str
    millijoules_per_query: float | None = None  # SingleStream's power metric

    def metrics(self) -> list[str]:
        """The efficiency figures a run reports: mJ a query (SingleStream), samples per joule."""
        out = [f"{self.millijoules_per_query:.1f} mJ a query"] if self.millijoules_per_query else []
        return out + ([f"{self.samples_per_joule:.3f} samples/J"] if self.samples_per_joule else [])


def analyze(run_dir: Path, spl: Path | None = None) -> PowerResult:
    """``run_dir`` holds the LoadGen logs of the testing run and (by default) its ``spl.txt``."""
    marks = read_detail(run_dir / DETAIL)
    begin, end = power_window(run_dir / DETAIL, marks)
    samples = read_spl(spl or run_dir / "spl.txt")
    window = [w for t, w in samples if begin < t < end and w > 0]
    if not window:
        raise UserError(
            f"{spl or run_dir / 'spl.txt'}: no power samples between power_begin {begin} and power_end {end}"
        )
    watts = sum(window) / len(window)
    duration = (end - begin).total_seconds()
    summary = read_summary(run_dir / SUMMARY)
    sps = summary.score if summary.scenario in (Scenario.OFFLINE, Scenario.SERVER) else None
    mj = None
    if summary.scenario == Scenario.SINGLE_STREAM:
        queries = marks.get("result_query_count") or [0]
        mj = watts * duration * 1000 / int(queries[-1]) if int(queries[-1]) > 0 else None
    return PowerResult(
        average_watts=watts,
        samples_in_window=len(window),
        duration_s=duration,
        samples_per_second=sps,
        samples_per_joule=(sps / watts) if sps and watts > 0 else (1000 / mj if mj else None),
        begin=begin.strftime(LOADGEN_TIME)[:-3],
        end=end.strftime(LOADGEN_TIME)[:-3],
        millijoules_per_query=mj,
    )
