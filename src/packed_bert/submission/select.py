"""Which runs go into a submission: one round's, the best of each kind, or the ones named.

Every run records its MLPerf round (``summary.json``). A results directory that mixes rounds is
refused unless ``--round`` says which to take; a run that records no round (made before
rounds were recorded, so with LoadGen's built-in seeds) is never taken. For each system, model
and scenario the submission takes, unless ``--use DIR`` names the run:

- accuracy: the newest run that reaches the F1 target, else the newest scored one;
- performance: the newest VALID run, else the newest (the check then says why);
- each audit test: the newest compliance run in which it passed, else the newest that has it;
- power: the newest VALID power run (its testing run is then the performance run).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packed_bert.errors import UserError
from packed_bert.results.run_dirs import is_audit_run, iter_runs, read_summary_json
from packed_bert.rounds import Round, get_round
from packed_bert.submission import layout
from packed_bert.terms import ACCURACY_TARGET_F1

MODES = ("accuracy", "performance", "compliance", "power")
NO_ROUND = "no round recorded"


@dataclass
class Run:
    path: Path
    summary: dict[str, Any]

    @property
    def mode(self) -> str:
        return str(self.summary.get("mode"))

    @property
    def key(self) -> tuple[str, str, str]:
        s = self.summary
        return str(s.get("sut")), str(s.get("model")), layout.scenario_name(str(s.get("scenario")))

    @property
    def round(self) -> str:
        return str(self.summary.get("round") or NO_ROUND)

    def test_passed(self, test: str) -> bool | None:
        tests = self.summary.get("tests")
        entry = tests.get(test) if isinstance(tests, dict) else None
        return None if not isinstance(entry, dict) else entry.get("passed") is True


@dataclass
class Entry:
    sut: str
    model: str
    scenario: str
    accuracy: Path | None = None
    performance: Path | None = None
    power: Path | None = None
    compliance: dict[str, Path] = field(default_factory=dict)  # test -> the compliance run holding it

    @property
    def name(self) -> str:
        return f"{self.sut}/{self.model}/{self.scenario}"

    def runs(self) -> list[Path]:
        return [p for p in (self.accuracy, self.performance, self.power, *self.compliance.values()) if p]


def _rank_accuracy(run: Run) -> int:
    f1 = run.summary.get("f1")
    if not isinstance(f1, int | float):
        return 0
    return 2 if f1 >= ACCURACY_TARGET_F1.get(str(run.summary.get("model")), 100.0) else 1


def _best(runs: list[Run], rank: Any) -> Run | None:
    """The newest of the best-ranked (runs are oldest first)."""
    return max(reversed(runs), key=rank, default=None) if runs else None


def choose_round(runs: Sequence[Run], asked: str | None, results: Path) -> Round:
    counts = Counter(r.round for r in runs)
    if asked is not None:
        return get_round(asked)
    if len(counts) > 1:
        mix = ", ".join(f"{name} ({n} runs)" for name, n in sorted(counts.items()))
        raise UserError(
            f"--results {results} mixes rounds: {mix}; a submission is one round: pass --round to "
            "take only that round's runs, or keep each round in its own --results-dir"
        )
    only = next(iter(counts), None)
    if only is None or only == NO_ROUND:
        raise UserError(
            f"--results {results}: its runs record no MLPerf round (made before rounds were recorded, "
            "with LoadGen's built-in seeds); run them again, e.g. with --round v6.0"
        )
    return get_round(only)


def collect(results: Path, asked_round: str | None, use: Sequence[Path] = ()) -> tuple[Round, list[Entry], list[str]]:
    """The round, the entries and notes on what was left out."""
    runs = [
        Run(p, s)
        for p, s in iter_runs(results)
        if s.get("mode") in MODES
        and s.get("sut")
        and not (s.get("mode") in ("accuracy", "performance") and is_audit_run(p, s))
    ]
    if not runs and not use:
        raise UserError(f"--results {results}: no run directories with summary.json there")
    rnd = choose_round(runs, asked_round, results)
    notes: list[str] = []
    other = [r for r in runs if r.round != rnd.name]
    if other:
        notes.append(f"not taken: {len(other)} runs of other rounds ({', '.join(sorted({r.round for r in other}))})")
    taken = [r for r in runs if r.round == rnd.name]
    chosen = [_named(Path(p), rnd) for p in use]
    keys = list(dict.fromkeys([r.key for r in taken] + [r.key for r in chosen]))
    entries = [
        _entry(key, [r for r in taken if r.key == key], [r for r in chosen if r.key == key], rnd) for key in keys
    ]
    return rnd, entries, notes


def _named(path: Path, rnd: Round) -> Run:
    summary = read_summary_json(path)
    if summary.get("mode") not in MODES:
        raise UserError(f"--use {path}: not a finished accuracy, performance, compliance or power run directory")
    run = Run(path, summary)
    if run.round != rnd.name:
        raise UserError(f"--use {path}: a run of {run.round}, not {rnd.name}")
    return run


def _entry(key: tuple[str, str, str], runs: list[Run], named: list[Run], rnd: Round) -> Entry:
    e = Entry(*key)
    by_mode = {m: [r for r in runs if r.mode == m] for m in MODES}
    pick = {m: [r for r in named if r.mode == m] for m in MODES}
    acc = pick["accuracy"][-1] if pick["accuracy"] else _best(by_mode["accuracy"], _rank_accuracy)
    perf = (
        pick["performance"][-1]
        if pick["performance"]
        else _best(by_mode["performance"], lambda r: r.summary.get("valid") is True)
    )
    power = (
        pick["power"][-1]
        if pick["power"]
        else _best(
            [r for r in by_mode["power"] if r.summary.get("valid") is True and r.summary.get("official")], lambda r: 0
        )
    )
    e.accuracy, e.performance, e.power = (r.path if r else None for r in (acc, perf, power))
    for test in rnd.tests:
        named_test = [r for r in pick["compliance"] if r.test_passed(test) is not None]
        having = [r for r in by_mode["compliance"] if r.test_passed(test) is not None]
        best = named_test[-1] if named_test else _best(having, lambda r, t=test: r.test_passed(t) is True)
        if best is not None:
            e.compliance[test] = best.path
    return e
