"""How long a plan takes at least: the line a plan and its ``--dry-run`` print first.

A timed LoadGen run (a performance run, each compliance test's audit run, a power run's ranging
and testing runs) lasts at least its ``min_duration``: 600 s for a valid run (``rounds.py``), the
system file's or ``--setting min_duration=`` otherwise. Accuracy runs go through the dataset
once, at a rate no plan knows beforehand, so the floor leaves them out and says so.
"""

from __future__ import annotations

from collections.abc import Sequence

from packed_bert.harness.config import RunConfig
from packed_bert.harness.plan import plan_run
from packed_bert.harness.settings import conf_key
from packed_bert.rounds import MIN_DURATION_MS, get_round
from packed_bert.terms import Mode
from packed_bert.workflows.plan import PlannedRun

POWER_RUNS = 2  # a power run: ranging, then testing


def timed_runs(cfg: RunConfig) -> int:
    """How many timed LoadGen runs ``cfg`` makes (its accuracy and performance reference runs
    are the plan's own runs)."""
    if cfg.mode == Mode.PERFORMANCE:
        return 1
    if cfg.mode == Mode.COMPLIANCE:
        return len(cfg.compliance_tests or get_round(cfg.round).tests)
    return POWER_RUNS if cfg.mode == Mode.POWER else 0


def min_duration_s(cfg: RunConfig) -> float:
    """The ``min_duration`` LoadGen gets for ``cfg``: the run's user.conf, else MLPerf's 600 s."""
    plan = plan_run(cfg)
    value = plan.user_conf.get(conf_key(plan.scenario, "min_duration"))
    return (float(value) if value is not None else MIN_DURATION_MS) / 1000.0


def _span(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60:02d} min"


def plan_line(runs: Sequence[PlannedRun], to_run: Sequence[bool]) -> str:
    """``plan: N runs`` and, for the runs that will run (``to_run``), the least time their timed
    LoadGen runs take."""
    head = f"plan: {len(runs)} run{'s' if len(runs) != 1 else ''}"
    durations: list[float] = []
    for run, go in zip(runs, to_run, strict=True):
        if go and (count := timed_runs(run.cfg)):
            durations += [min_duration_s(run.cfg)] * count  # one plan_run a planned run, not one a timed run
    if not durations:
        return head
    each = f"{_span(min(durations))}" + (f" to {_span(max(durations))}" if max(durations) > min(durations) else "")
    return (
        f"{head}; {len(durations)} timed LoadGen run{'s' if len(durations) != 1 else ''} of at least {each} "
        f"(min_duration): {_span(sum(durations))} or more, besides the accuracy runs"
    )
