"""What MLPerf's submission checker asks of each BERT run's LoadGen detail log, per round.

Read from ``mlperf_log_detail.txt`` as the checker reads it (``effective_*`` keys):
performance VALID and no LoadGen ERROR; the round's three seeds (TEST05's in a TEST05 audit
run); ``performance_sample_count`` >= 10,833; ``min_duration`` >= 600 s; Offline samples per
query >= 10,833 (closed); Server and SingleStream early stopping met, and Server's early
stopping latency within 130 ms; an accuracy run over the whole dataset.

A finding is either a ``problem`` or a ``test-run`` finding: what any run shorter than MLPerf's
minimums has (duration, query counts, sample counts, early stopping). A test tree
(``submission --allow-test-runs``) lists the latter as its test-length runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from packed_bert.results.loadgen_logs import DETAIL, detail_errors, read_detail
from packed_bert.rounds import MIN_DURATION_MS, Round
from packed_bert.terms import DATASET_FEATURES, SERVER_LATENCY_BOUND_MS, Scenario

Kind = Literal["problem", "test-run"]


@dataclass(frozen=True)
class Finding:
    kind: Kind
    where: Path
    text: str

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


def _last(detail: dict[str, list[Any]], key: str) -> Any:
    values = detail.get(key)
    return values[-1] if values else None


def performance_findings(run_dir: Path, rnd: Round, division: str, test05: bool = False) -> list[Finding]:
    """The checker's performance checks on one ``performance/run_1`` (or an audit run's)."""
    path = run_dir / DETAIL
    if not path.is_file():
        return [Finding("problem", run_dir, f"{DETAIL} missing")]
    detail = read_detail(path)
    out = [Finding("problem", run_dir, f"LoadGen logged an ERROR ({e})") for e in detail_errors(path)]
    test = lambda text: out.append(Finding("test-run", run_dir, text))  # noqa: E731
    if _last(detail, "result_validity") != "VALID":
        out.append(
            Finding(
                "problem", run_dir, f"performance result is {_last(detail, 'result_validity') or 'missing'}, not VALID"
            )
        )
    seeds = rnd.test05_seeds if test05 and rnd.test05_seeds is not None else rnd.seeds
    for name, want in seeds.settings().items():
        got = _last(detail, f"effective_{name}")
        if got != want:
            out.append(
                Finding(
                    "problem", run_dir, f"{name} is {got}, {rnd.name} expects {want}{' (TEST05)' if test05 else ''}"
                )
            )
    count = _last(detail, "effective_performance_sample_count")
    if not isinstance(count, int) or count < DATASET_FEATURES:
        test(f"performance_sample_count {count} < {DATASET_FEATURES:,}")
    duration = _last(detail, "effective_min_duration_ms")
    if not isinstance(duration, int) or duration < MIN_DURATION_MS:
        test(f"min_duration {duration} ms < {MIN_DURATION_MS} ms (600 s)")
    scenario = _last(detail, "effective_scenario")
    if scenario == Scenario.OFFLINE and division == "closed":
        per_query = _last(detail, "effective_samples_per_query")
        if not isinstance(per_query, int) or per_query < DATASET_FEATURES:
            test(f"Offline samples per query {per_query} < {DATASET_FEATURES:,}")
    if scenario in (Scenario.SERVER, Scenario.SINGLE_STREAM):
        if _last(detail, "early_stopping_met") is not True:
            test("early stopping condition not met")
        if scenario == Scenario.SERVER:
            latency = _last(detail, "effective_target_latency_ns")
            if not isinstance(latency, int) or latency > SERVER_LATENCY_BOUND_MS * 1e6:
                out.append(
                    Finding("problem", run_dir, f"Server target latency {latency} ns > {SERVER_LATENCY_BOUND_MS:g} ms")
                )
    return out


def accuracy_findings(acc_dir: Path) -> list[Finding]:
    """The checker's checks on an accuracy run's detail log: no ERROR, and the whole dataset
    (the checker of v5.1 on checks it; a subset is a test-length run in any round)."""
    path = acc_dir / DETAIL
    if not path.is_file():
        return [Finding("problem", acc_dir, f"{DETAIL} missing")]
    out = [Finding("problem", acc_dir, f"LoadGen logged an ERROR ({e})") for e in detail_errors(path)]
    total = _last(read_detail(path), "qsl_reported_total_count")
    if total != DATASET_FEATURES:
        out.append(
            Finding(
                "test-run", acc_dir, f"accuracy run over {total} samples, not the {DATASET_FEATURES:,} of the dataset"
            )
        )
    return out


def test_run_reasons(findings: list[Finding]) -> list[str]:
    return [f.text for f in findings if f.kind == "test-run"]
