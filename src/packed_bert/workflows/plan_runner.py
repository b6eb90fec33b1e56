"""Running a plan (``workflows.plan``): in order, each run in a fresh process, what is already
done kept, a failed run passed over, and a closing table.

- A run whose valid result is already in ``--results-dir`` (the same run asked for, by its
  recorded command line, for the same round; performance VALID, accuracy scored, the audit test
  passed) is kept and not run again, and the plan says so; ``--rerun`` runs it anyway. So a plan
  that was interrupted goes on where it stopped when it is given again.
- An Offline or SingleStream performance run INVALID only because it ended short of min_duration
  (its target QPS below what the system does) runs again at the target it advises
  (``harness.summary.advised_target``), up to ``RETARGETS`` times; the directories before stay.
  There the target sets only how long a run lasts, so a valid run at another target counts as
  done.
- A run that fails (an error, a crashed process) is reported and the plan goes on with the runs
  that do not need it; a compliance run whose accuracy or performance run failed is not run.
- The table at the end: run, status, key figure, directory. Exit status 0 when every run has a
  valid result (accuracy below the target still counts: the run worked), else 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packed_bert.errors import UserError
from packed_bert.harness.config import RunConfig
from packed_bert.harness.errors import RunError
from packed_bert.harness.flags import add_flags, config_from_namespace
from packed_bert.harness.process import Launcher, run_in_fresh_process
from packed_bert.results.run_dirs import find_run, iter_runs, read_command
from packed_bert.rounds import get_round
from packed_bert.systems import load_system
from packed_bert.terms import Mode, Model, Scenario
from packed_bert.workflows.plan import PlannedRun
from packed_bert.workflows.plan_time import plan_line

Say = Callable[[str], None]
# times a run too short for its target runs again at the target it advises: a short run's rate
# is an underestimate (a 220-sample tiny-model run read 623 samples/s, the run after it 1,913)
RETARGETS = 3
# fields that do not change what a run measures (where it reads and writes, how it prints)
_IGNORED = {
    "command_line",
    "verbose",
    "results_dir",
    "dataset",
    "vocab",
    "accuracy_dir",
    "performance_dir",
    "audit_config",
    "compliance_tests",
    "sdk",
}


@dataclass
class Outcome:
    label: str
    status: str  # VALID / INVALID, PASS / BELOW TARGET, TEST PASS / TEST FAIL, FAILED, NOT RUN
    figure: str = ""
    directory: str = ""
    ok: bool = False  # a valid result: counts for the runs that need it and for the exit status
    kept: bool = False  # found in the results directory, not run again


def recorded_config(run_dir: Path) -> RunConfig | None:
    """The run a directory's ``command.txt`` asked for; None when it cannot be read back."""
    argv = read_command(run_dir)
    if not argv:
        return None
    while argv and not argv[0].startswith("-"):
        argv = argv[1:]  # "packed-bert run", "python -m packed_bert.cli run"
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    add_flags(parser)
    try:
        ns, _ = parser.parse_known_args(argv)
        return config_from_namespace(ns)
    except (UserError, argparse.ArgumentError, SystemExit, ValueError):
        return None


def _key(cfg: RunConfig) -> dict[str, Any]:
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in _IGNORED}
    values["sut"] = load_system(cfg.sut).name
    values["round"] = get_round(cfg.round).name
    if cfg.mode == Mode.COMPLIANCE or _target_sets_only_duration(cfg):
        values["target_qps"] = None  # audit runs take the performance run's; elsewhere it sizes the run
    return values


def _target_sets_only_duration(cfg: RunConfig) -> bool:
    """A performance run whose target QPS only sizes the run: Offline (samples issued) and
    SingleStream (queries scheduled); a Server run's target is its result."""
    return cfg.mode == Mode.PERFORMANCE and cfg.scenario in (Scenario.OFFLINE, Scenario.SINGLE_STREAM)


def same_run(recorded: RunConfig, wanted: RunConfig) -> bool:
    try:
        return _key(recorded) == _key(wanted)
    except UserError:
        return False  # a run of a system file that is gone


def find_done(cfg: RunConfig) -> tuple[Path, Outcome] | None:
    """The newest run in ``cfg.results_dir`` that is ``cfg`` with a valid result, and its outcome."""
    found = None
    for run_dir, summary in iter_runs(cfg.results_dir):
        if str(summary.get("mode")) != cfg.mode:
            continue
        recorded = recorded_config(run_dir)
        if recorded is None or not same_run(recorded, cfg):
            continue
        outcome = describe(run_dir, summary, cfg)
        if outcome.ok:
            found = (run_dir, outcome)
    return found


def describe(run_dir: Path, summary: dict[str, Any], cfg: RunConfig) -> Outcome:
    """A finished run's status and key figure, from its ``summary.json``."""
    label = PlannedRun(cfg).label
    if cfg.mode == Mode.ACCURACY:
        f1 = summary.get("f1")
        if not isinstance(f1, int | float):
            return Outcome(label, "NOT SCORED", "", str(run_dir))
        target = Model(cfg.model).target_f1
        return Outcome(
            label, "PASS" if f1 >= target else "BELOW TARGET", f"F1 {f1:.3f} (target {target})", str(run_dir), ok=True
        )
    if cfg.mode == Mode.COMPLIANCE:
        raw = summary.get("tests")
        tests: dict[str, Any] = raw if isinstance(raw, dict) else {}
        wanted = cfg.compliance_tests or tuple(tests)
        results = [tests.get(t) for t in wanted]
        passed = bool(results) and all(isinstance(r, dict) and r.get("passed") is True for r in results)
        figure = ", ".join(
            f"{t} {'pass' if isinstance(r, dict) and r.get('passed') else 'FAIL'}"
            for t, r in zip(wanted, results, strict=True)
        )
        return Outcome(label, "TEST PASS" if passed else "TEST FAIL", figure, str(run_dir), ok=passed)
    valid = summary.get("valid") is True
    sps, p90 = summary.get("samples_per_second"), summary.get("latency_p90_ms")
    if cfg.scenario == Scenario.SINGLE_STREAM and isinstance(p90, int | float):
        figure = f"p90 {p90:.2f} ms"
    elif isinstance(sps, int | float):
        figure = f"{sps:,.1f} samples/s"
    else:
        figure = ""
    return Outcome(label, "VALID" if valid else "INVALID", figure, str(run_dir), ok=valid)


def _execute(cfg: RunConfig, launch: Launcher, scorer: Any) -> Path:
    """One run of the plan; its run directory."""
    if cfg.mode == Mode.COMPLIANCE:
        from packed_bert.workflows.compliance import run_compliance

        run_compliance(cfg, launch=launch, scorer=scorer)
        where = find_run(cfg.results_dir, load_system(cfg.sut).name, cfg.model, cfg.scenario, Mode.COMPLIANCE)
        if where is None:
            raise UserError("the compliance run left no directory")
        return where
    if cfg.mode == Mode.POWER:
        from packed_bert.workflows.power import run_power

        run_power(cfg, launch=launch)
        where = find_run(cfg.results_dir, load_system(cfg.sut).name, cfg.model, cfg.scenario, Mode.POWER)
        if where is None:
            raise UserError("the power run left no directory (the unofficial meter writes into the performance run)")
        return where
    return launch(cfg)


def run_plan(
    runs: Sequence[PlannedRun],
    *,
    rerun: bool = False,
    launch: Launcher | None = None,
    scorer: Any = None,
    say: Say = print,
) -> int:
    """Run ``runs`` in order; the exit status (0: every run has a valid result). Every run's
    input is checked first: a bad one is a one-line ``UserError`` before anything runs."""
    check_runs(runs)
    say(plan_line(runs, [rerun or find_done(run.cfg) is None for run in runs]))
    launch = launch or run_in_fresh_process
    outcomes: list[Outcome] = []
    try:
        for n, run in enumerate(runs, 1):
            outcomes.append(_one(n, run, runs, outcomes, rerun, launch, scorer, say))
    except KeyboardInterrupt:
        outcomes.append(Outcome(runs[len(outcomes)].label, "NOT RUN", "interrupted"))
        outcomes += [Outcome(r.label, "NOT RUN", "interrupted") for r in runs[len(outcomes) :]]
        say(closing_table(outcomes))
        say("plan: interrupted; give the same command again to go on (runs with a valid result are kept)")
        raise
    say(closing_table(outcomes))
    good = sum(o.ok for o in outcomes)
    say(
        f"plan: {good} of {len(outcomes)} runs have a valid result"
        + ("" if good == len(outcomes) else "; the others are listed above")
    )
    failed = [o for o in outcomes if o.status == "FAILED"]
    if failed:  # the closing line names what went wrong, as any failed command's does
        raise RunError(f"plan: {len(failed)} of {len(outcomes)} runs failed; {failed[0].label}: {failed[0].figure}")
    return 0 if good == len(outcomes) else 1


def _one(
    n: int,
    run: PlannedRun,
    runs: Sequence[PlannedRun],
    before: list[Outcome],
    rerun: bool,
    launch: Launcher,
    scorer: Any,
    say: Say,
) -> Outcome:
    head = f"plan [{n}/{len(runs)}] {run.label}"
    failed = [before[i].label for i in run.needs if not before[i].ok and before[i].status in ("FAILED", "NOT RUN")]
    if failed:
        say(f"{head}: not run, it needs {', '.join(failed)}, which did not run")
        return Outcome(run.label, "NOT RUN", f"needs {', '.join(failed)}")
    if not rerun:
        done = find_done(run.cfg)
        if done is not None:
            say(f"{head}: kept, a valid result is in {done[0]} (--rerun runs it again)")
            return dataclasses.replace(done[1], label=run.label, kept=True)
    say(f"{head}: {shlex.join(run.argv)}")
    outcome, summary = _attempt(run.cfg, head, launch, scorer, say)
    cfg = run.cfg
    for _ in range(RETARGETS):
        advised = summary.get("advised_target_qps")
        if outcome.ok or not _target_sets_only_duration(cfg) or not isinstance(advised, int | float):
            break
        if cfg.target_qps is not None and advised <= cfg.target_qps:
            break  # no longer a run too short for its target
        cfg = dataclasses.replace(cfg, target_qps=float(advised))
        say(
            f"{head}: INVALID, it ended short of min_duration; once more at the --target-qps it advises, "
            f"{advised:g} (the run before stays in {outcome.directory})"
        )
        say(f"{head}: {shlex.join(PlannedRun(cfg).argv)}")
        outcome, summary = _attempt(cfg, head, launch, scorer, say)
        if outcome.status in ("VALID", "INVALID"):
            outcome.figure += f" at --target-qps {advised:g}"
    return outcome


def _attempt(cfg: RunConfig, head: str, launch: Launcher, scorer: Any, say: Say) -> tuple[Outcome, dict[str, Any]]:
    """One run of the plan: its outcome and ``summary.json`` (empty where it failed)."""
    try:
        run_dir = _execute(cfg, launch, scorer)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a failed run: report it, go on with the independent runs
        message = " ".join(str(exc).split()) or type(exc).__name__
        say(f"{head}: FAILED: {message}")
        return Outcome(PlannedRun(cfg).label, "FAILED", message[:200]), {}
    from packed_bert.results.run_dirs import read_summary_json

    summary = read_summary_json(run_dir)
    return describe(run_dir, summary, cfg), summary


def closing_table(outcomes: Sequence[Outcome]) -> str:
    rows = [("run", "status", "key figure", "directory")]
    rows += [(o.label, o.status + (" (kept)" if o.kept else ""), o.figure, o.directory) for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:3], widths, strict=True)) + "  " + r[3] for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 9)
    return "\n".join(line.rstrip() for line in lines)


def check_runs(runs: Sequence[PlannedRun]) -> None:
    """Each run's flags resolved against its system file, as the run itself will (``plan_run``)."""
    from packed_bert.harness.plan import plan_run

    for run in runs:
        plan_run(run.cfg)


def dry_run(runs: Sequence[PlannedRun], rerun: bool, say: Say = print) -> int:
    """Print each run as a command to paste; a run already done is marked (it would be kept)."""
    check_runs(runs)
    found = [None if rerun else find_done(run.cfg) for run in runs]
    say("# " + plan_line(runs, [done is None for done in found]))
    for run, done in zip(runs, found, strict=True):
        if done is not None:
            say(f"# kept (a valid result is in {done[0]}):")
        say(shlex.join(run.argv))
    return 0
