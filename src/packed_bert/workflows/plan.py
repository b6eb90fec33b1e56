"""A plan: one command line expanded into the runs it stands for, in the order they run.

The harness this replaces was driven by a command generator, and so is this: on ``run`` (or
the old harness's bare flags),

- any run flag may take a list: ``--model,=bert-99,bert-99.9``, ``--scenario,=offline,server``
  (every combination is a run);
- groups stand for what a round asks: ``--group.edge`` / ``--group.datacenter`` the scenarios
  that category requires for BERT in the run's ``--round``; ``--group.closed`` the modes a
  closed result needs (accuracy, performance and each audit test of the round); ``--group.open``
  accuracy and performance; ``--group.submission`` everything the round requires for the
  system's category (closed unless ``--group.open``; the category of ``--group.edge`` /
  ``--group.datacenter``, else the system file's first that the round allows).

Each run is a ``RunConfig`` written back with ``flags.to_argv`` (what ``--dry-run`` prints),
ordered accuracy, performance, then compliance (an audit test needs the other two); a
compliance run depends on the accuracy and performance runs of its system, model and scenario
in the plan. ``workflows.plan_runner`` runs them.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from packed_bert.errors import UserError
from packed_bert.harness.config import RunConfig
from packed_bert.harness.flags import FLAGS, config_from_namespace, to_argv
from packed_bert.rounds import Round, get_round, pick_category
from packed_bert.systems import load_system
from packed_bert.terms import Category, Execution, Mode, Scenario

GROUPS = ("edge", "datacenter", "open", "closed", "submission")
GROUP_HELP = {
    "edge": "the scenarios an edge result of BERT needs in --round (SingleStream, Offline)",
    "datacenter": "the scenarios a datacenter result needs (Server, Offline; BERT is datacenter only to v4.1)",
    "open": "accuracy and performance runs (an open-division result)",
    "closed": "accuracy, performance and the round's audit tests (a closed-division result)",
    "submission": "everything the round requires for the system's category (closed unless --group.open)",
}
# Flags that take the list syntax (``--model,=a,b``): every flag with one value per run.
LIST_FLAGS = tuple(f for f in FLAGS if f.read is not None and not f.pairs and f.field != "compliance_tests")
STAGE = {Mode.ACCURACY: 0, Mode.PERFORMANCE: 1, Mode.POWER: 1, Mode.COMPLIANCE: 2}


@dataclass(frozen=True)
class PlannedRun:
    cfg: RunConfig
    needs: tuple[int, ...] = ()  # positions in the plan of the runs this one uses

    @property
    def label(self) -> str:
        c = self.cfg
        what = ",".join(c.compliance_tests) if c.mode == Mode.COMPLIANCE and c.compliance_tests else str(c.mode)
        return f"{load_system(c.sut).name} {c.model} {c.scenario} {what}"

    @property
    def argv(self) -> list[str]:
        return to_argv(self.cfg)


@dataclass(frozen=True)
class PlanRequest:
    """What the command line asked for besides one run's flags."""

    lists: Mapping[str, tuple[str, ...]]  # RunConfig field -> the values of its list flag
    groups: frozenset[str]
    dry_run: bool = False
    rerun: bool = False

    @property
    def is_plan(self) -> bool:
        return bool(self.lists or self.groups or self.dry_run or self.rerun)


def add_plan_flags(parser: argparse.ArgumentParser) -> None:
    """``--dry-run``, ``--rerun``, the groups and the list spelling of every run flag."""
    parser.add_argument(
        "--dry-run",
        "--dry_run",
        dest="plan_dry_run",
        action="store_true",
        help="print the runs the command stands for, as commands, and run nothing",
    )
    parser.add_argument(
        "--rerun",
        dest="plan_rerun",
        action="store_true",
        help="run again what already has a valid result in --results-dir",
    )
    for group in GROUPS:
        parser.add_argument(f"--group.{group}", dest=f"plan_group_{group}", action="store_true", help=GROUP_HELP[group])
    for flag in LIST_FLAGS:
        parser.add_argument(
            *(f"{name}," for name in flag.names if name.startswith("--")),
            dest=f"plan_each_{flag.field}",
            default=None,
            help=argparse.SUPPRESS,
        )


def request_from_namespace(ns: argparse.Namespace) -> PlanRequest:
    lists: dict[str, tuple[str, ...]] = {}
    for flag in LIST_FLAGS:
        raw = getattr(ns, f"plan_each_{flag.field}", None)
        if raw is None:
            continue
        items = tuple(dict.fromkeys(p.strip() for p in str(raw).lstrip(",=").split(",") if p.strip()))
        if not items:
            raise UserError(f"{flag.names[0]},={raw}: give one or more values separated by commas")
        if getattr(ns, flag.field, None) is not None:
            raise UserError(f"give {flag.names[0]} or {flag.names[0]},=A,B..., not both")
        lists[flag.field] = items
    groups = frozenset(g for g in GROUPS if getattr(ns, f"plan_group_{g}", False))
    return PlanRequest(lists, groups, bool(getattr(ns, "plan_dry_run", False)), bool(getattr(ns, "plan_rerun", False)))


def expand(ns: argparse.Namespace, request: PlanRequest) -> list[PlannedRun]:
    """Every run the command line stands for, in the order to run them."""
    fields = list(request.lists)
    configs: list[RunConfig] = []
    for values in itertools.product(*(request.lists[f] for f in fields)):
        one = argparse.Namespace(**vars(ns))
        for field, value in zip(fields, values, strict=True):
            setattr(one, field, value)
        configs += _apply_groups(config_from_namespace(one), ns, request.groups)
    unique = list({tuple(to_argv(c)): c for c in configs}.values())
    ordered = sorted(unique, key=lambda c: STAGE.get(c.mode, 1))  # stable: the typed order within a stage
    return [PlannedRun(c, _needs(c, ordered)) for c in ordered]


def _apply_groups(cfg: RunConfig, ns: argparse.Namespace, groups: frozenset[str]) -> list[RunConfig]:
    cfg = dataclasses.replace(cfg, command_line=())
    if cfg.execution == Execution.DEMO or cfg.find_peak:
        raise UserError(
            "a plan runs accuracy, performance, compliance and power runs; --execution demo and "
            "--find-peak are commands of their own"
        )
    if not groups:
        return [_own_line(cfg)]
    rnd = get_round(cfg.round)
    cfg = dataclasses.replace(cfg, round=rnd.name)
    scenarios = _scenarios(cfg, rnd, groups, ns)
    modes = _modes(cfg, rnd, groups, ns)
    out = []
    for scenario in scenarios:
        for mode, tests in modes:
            out.append(_own_line(dataclasses.replace(cfg, scenario=scenario, mode=mode, compliance_tests=tests)))
    return out


def _scenarios(cfg: RunConfig, rnd: Round, groups: frozenset[str], ns: argparse.Namespace) -> list[Scenario]:
    asked = [Category(g) for g in ("datacenter", "edge") if g in groups]
    if not asked and "submission" not in groups:
        return [cfg.scenario]
    if getattr(ns, "scenario", None) is not None or getattr(ns, "plan_each_scenario", None) is not None:
        raise UserError("--group.edge, --group.datacenter and --group.submission choose the scenarios; drop --scenario")
    system = load_system(cfg.sut)
    categories = [pick_category(rnd, system.categories, c, system.name) for c in asked] or [
        pick_category(rnd, system.categories, None, system.name)
    ]
    wanted = {s for c in categories for s in rnd.required_scenarios(cfg.model, c)}
    return [s for s in Scenario if s in wanted]  # Offline, Server, SingleStream


def _modes(
    cfg: RunConfig, rnd: Round, groups: frozenset[str], ns: argparse.Namespace
) -> list[tuple[Mode, tuple[str, ...]]]:
    if not groups & {"open", "closed", "submission"}:
        return [(cfg.mode, cfg.compliance_tests)]
    if "open" in groups and "closed" in groups:
        raise UserError("--group.open and --group.closed: choose one division")
    if getattr(ns, "mode", None) is not None or getattr(ns, "plan_each_mode", None) is not None:
        raise UserError("--group.open, --group.closed and --group.submission choose the modes; drop --mode")
    modes: list[tuple[Mode, tuple[str, ...]]] = [(Mode.ACCURACY, ()), (Mode.PERFORMANCE, ())]
    if "open" not in groups:
        modes += [(Mode.COMPLIANCE, (test,)) for test in rnd.tests]
    return modes


def _own_line(cfg: RunConfig) -> RunConfig:
    return dataclasses.replace(cfg, command_line=tuple(to_argv(cfg)))


def _same_target(a: RunConfig, b: RunConfig) -> bool:
    """Runs of the same system, model and scenario, made the same way (a compliance run's
    reference runs)."""
    keep = ("sut", "model", "scenario", "round", "weights", "sample_count", "execution", "results_dir")
    return all(getattr(a, k) == getattr(b, k) for k in keep)


def _needs(cfg: RunConfig, plan: Sequence[RunConfig]) -> tuple[int, ...]:
    if cfg.mode != Mode.COMPLIANCE:
        return ()
    tests = cfg.compliance_tests or get_round(cfg.round).tests
    wanted = {Mode.PERFORMANCE} | ({Mode.ACCURACY} if "TEST01" in tests else set())
    return tuple(i for i, other in enumerate(plan) if other.mode in wanted and _same_target(cfg, other))
