"""Build ``<out>/<division>/<submitter>/`` from a results directory, for one round's layout.

Before any work: ``--out`` must be a new or empty directory in a writable place, the runs one
round's (``submission.select``), the category one the round allows for BERT and the system
claims (``--category``, else the first whose scenarios the runs hold), and each system and
model must have every scenario that category requires (closed), each with its accuracy run,
performance run and the round's audit tests. Runs shorter than
MLPerf's minimums (duration, sample and query counts) and simulated systems in the closed
division are refused, unless ``--allow-test-runs`` asks for a test tree (each system
description's notes then say so). The tree is built in a hidden directory beside ``--out``
and renamed into place at the end, so a failure leaves nothing half-built.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packed_bert.backends.quantize import SMOOTHQUANT_ALPHA
from packed_bert.errors import UserError
from packed_bert.results.loadgen_logs import ACCURACY_LOG, DETAIL, SUMMARY
from packed_bert.rounds import Round, mlperf_conf_text, pick_category, with_article
from packed_bert.submission import layout, systems
from packed_bert.submission.run_rules import (
    accuracy_findings,
    performance_findings,
    test_run_reasons,
)
from packed_bert.submission.select import Entry, collect
from packed_bert.submission.truncate import truncate_with_hash
from packed_bert.systems import load_system
from packed_bert.terms import CALIBRATED, Category, Division, data_types, parse

LOGS = (SUMMARY, DETAIL)


@dataclass
class Built:
    root: Path  # <out>/<division>/<submitter>
    round: Round
    categories: dict[str, Category]  # system -> the category it is submitted in
    entries: list[Entry]
    notes: list[str] = field(default_factory=list)
    test_runs: list[str] = field(default_factory=list)  # "<run dir>: reasons" (a test tree)


def check_out(out: Path) -> None:
    """``--out`` must be a new or empty directory whose parent can be written."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: a file is there; name a new directory")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out}: exists and is not empty; name a new (or empty) directory")
    ancestor = out.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: {ancestor} is not writable; choose a directory you can write")


def _copy_files(src: Path, dst: Path, names: tuple[str, ...]) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def readme(e: Entry) -> str:
    lines = [f"# {e.name}", "", "Reproduce each run with packed-bert:", ""]
    named = [
        ("accuracy", e.accuracy),
        ("performance", e.performance),
        ("power", e.power),
        *((f"compliance {t}", p) for t, p in e.compliance.items()),
    ]
    for label, run in named:
        cmd = (run / "command.txt").read_text().strip() if run and (run / "command.txt").is_file() else None
        if cmd:
            lines += [f"{label}:", "", "```", cmd.splitlines()[0], "```", ""]
    return "\n".join(lines)


def implementation_json(perf: Path | None) -> dict[str, str]:
    """From the run's ``settings.json``: the harness plan (``harness.precision``, ``harness.weights``)."""
    plan: dict[str, Any] = {}
    if perf and (perf / "settings.json").is_file():
        try:
            settings = json.loads((perf / "settings.json").read_text())
        except json.JSONDecodeError:
            settings = {}
        if isinstance(settings, dict):
            harness = settings.get("harness")
            plan = harness if isinstance(harness, dict) else settings
    precision = str(plan.get("precision") or "fp32")
    transformations = "none" if precision == "fp32" else f"quantized to {data_types(precision)}"
    if precision in CALIBRATED and "SmoothQuant" in runner_details(perf):
        transformations += SMOOTHQUANT_NOTE
    return {
        "input_data_types": "int32",
        "retraining": "No",
        "starting_weights_filename": str(plan.get("weights") or "model.pytorch"),
        "weight_data_types": data_types(precision),
        "weight_transformations": transformations,
    }


SMOOTHQUANT_NOTE = (
    f"; per input channel SmoothQuant factors (alpha {SMOOTHQUANT_ALPHA}) multiply the weights' rows and divide the"
    " activations, an exact equivalence before rounding; factors and activation scales calibrated"
    " on the MLPerf calibration set only"
)


def runner_details(perf: Path | None) -> str:
    """The runners' descriptions the run's ``system.json`` records ("" when it has none)."""
    if not perf or not (perf / "system.json").is_file():
        return ""
    try:
        system = json.loads((perf / "system.json").read_text())
    except json.JSONDecodeError:
        return ""
    return str(system.get("runners", "")) if isinstance(system, dict) else ""


def missing_parts(e: Entry, rnd: Round) -> list[str]:
    out = []
    if e.accuracy is None or not (e.accuracy / ACCURACY_LOG).is_file() or not (e.accuracy / "accuracy.txt").is_file():
        out.append("accuracy run (mlperf_log_accuracy.json + accuracy.txt)")
    if e.performance is None and e.power is None:
        out.append("performance run")
    for test in rnd.tests:
        if test not in e.compliance or not (e.compliance[test] / test / "verify_performance.txt").is_file():
            out.append(f"compliance {test}")
    return out


def _system_of(e: Entry) -> dict[str, Any]:
    return systems.read_run_system(e.performance or e.accuracy or (e.power / "run_1" if e.power else Path()))


def _claimed(sut: str, run_system: dict[str, Any]) -> tuple[Category, ...]:
    recorded = run_system.get("categories")
    if isinstance(recorded, list) and recorded:
        return tuple(parse(Category, c, f"{sut} system.json categories") for c in recorded)
    try:
        return load_system(sut).categories
    except UserError:
        return tuple(Category)


def _category_of(
    rnd: Round, claimed: tuple[Category, ...], asked: str | None, sut: str, mine: Sequence[Entry]
) -> Category:
    """The category asked for; else the first the system claims and the round allows whose
    scenarios the runs hold for every model (``--group.datacenter`` runs of a system that claims
    edge first are a datacenter submission); else the system's first the round allows."""
    if asked is None:
        for cat in (c for c in claimed if c in rnd.categories):
            if all(
                set(rnd.required_scenarios(model, cat)) <= {e.scenario for e in mine if e.model == model}
                for model in {e.model for e in mine}
            ):
                return cat
    return pick_category(rnd, claimed, asked, sut)


def _perf_dir(e: Entry) -> Path | None:
    return e.power / "run_1" if e.power is not None else e.performance


def test_length_runs(e: Entry, rnd: Round, division: str) -> list[str]:
    """``<run>: reasons`` for each run of ``e`` shorter than MLPerf's minimums."""
    found = []
    perf = _perf_dir(e)
    if perf is not None:
        found.append((perf, performance_findings(perf, rnd, division)))
    if e.accuracy is not None:
        found.append((e.accuracy, accuracy_findings(e.accuracy)))
    for test, comp in e.compliance.items():
        audit = comp / test / "performance" / "run_1"
        found.append((audit, performance_findings(audit, rnd, division, test05=test == "TEST05")))
    return [f"{where}: {'; '.join(reasons)}" for where, fs in found if (reasons := test_run_reasons(fs))]


def unofficial_data(e: Entry) -> str | None:
    """Which of the entry's runs used a dataset or vocab other than the official files."""
    for run in (e.accuracy, e.performance):
        data = systems.read_run_system(run).get("data") if run is not None else None
        if isinstance(data, dict) and not (data.get("dataset_official", True) and data.get("vocab_official", True)):
            what = "dataset" if not data.get("dataset_official", True) else "vocab"
            return f"the run {run} used a {what} that is not the official one ({data.get(what)})"
    return None


def plan_tree(
    results: Path,
    out: Path,
    submitter: str,
    division: str,
    asked_round: str | None = None,
    category: str | None = None,
    allow_test_runs: bool = False,
    use: Sequence[Path] = (),
) -> Built:
    """Everything the tree will hold, checked; raises a one-line ``UserError`` on any refusal."""
    division = parse(Division, division, "--division")
    if not submitter or "/" in submitter or submitter.startswith("."):
        raise UserError(f"--submitter {submitter!r}: give the organisation's name")
    check_out(out)
    rnd, entries, notes = collect(results, asked_round, use)
    built = Built(out / division / submitter, rnd, {}, [], notes)
    for sut in dict.fromkeys(e.sut for e in entries):
        mine = [e for e in entries if e.sut == sut]
        run_system = _system_of(mine[0])
        cat = _category_of(rnd, _claimed(sut, run_system), category, sut, mine)
        built.categories[sut] = cat
        if division == Division.CLOSED and run_system.get("simulated"):
            if not allow_test_runs:
                raise UserError(
                    f"{sut} is a simulated system: never a closed result; use --division open, or "
                    "--allow-test-runs to build a test tree"
                )
            built.test_runs.append(f"{sut}: a simulated system (never a closed result)")
        for model in dict.fromkeys(e.model for e in mine):
            required = rnd.required_scenarios(model, cat)
            have = {e.scenario: e for e in mine if e.model == model}
            for scenario in sorted(set(have) - set(required)):
                built.notes.append(
                    f"not taken: {sut}/{model}/{scenario} ({scenario} is not {with_article(cat)} scenario of BERT in {rnd.name})"
                )
            absent = [s for s in required if s not in have]
            if absent and division == Division.CLOSED:
                raise UserError(
                    f"{sut}/{model} ({cat}, {rnd.name}) needs {', '.join(required)}: missing {', '.join(absent)}; "
                    f"run it (packed-bert run --sut {sut} --model {model} --round {rnd.name} --group.{cat} "
                    "--group.closed)"
                )
            built.entries += [have[s] for s in required if s in have]
    for e in built.entries:
        missing = missing_parts(e, rnd)
        if missing:
            raise UserError(
                f"incomplete results for {e.name} ({rnd.name}): missing {', '.join(missing)}; run that mode first"
            )
        unofficial = unofficial_data(e)
        if unofficial and division == Division.CLOSED:
            raise UserError(
                f"{e.name}: {unofficial}; a closed result needs the official SQuAD v1.1 dev set "
                "and BERT vocab (run again without --dataset/--vocab, or use --division open)"
            )
        built.test_runs += test_length_runs(e, rnd, division)
    if built.test_runs and not allow_test_runs:
        raise UserError(
            f"{len(built.test_runs)} runs are shorter than MLPerf's minimums (e.g. {built.test_runs[0]}); "
            "run with --execution valid, or pass --allow-test-runs to build a test tree"
        )
    return built


def build_entry(root: Path, e: Entry, rnd: Round) -> None:
    assert e.accuracy is not None
    p = layout.places(root, rnd, e.sut, e.model, e.scenario)
    acc = p.results / "accuracy"
    _copy_files(e.accuracy, acc, (*LOGS, ACCURACY_LOG, "accuracy.txt"))
    truncate_with_hash(acc / ACCURACY_LOG, acc / "accuracy.txt")
    perf_root = p.results / "performance"
    if e.power is not None:
        _copy_files(e.power / "run_1", perf_root / "run_1", (*LOGS, "spl.txt"))
        for part in ("ranging", "power"):
            if (e.power / part).is_dir():
                shutil.copytree(
                    e.power / part,
                    perf_root / part,
                    ignore=shutil.ignore_patterns(ACCURACY_LOG, "mlperf_log_trace.json"),
                )
    else:
        assert e.performance is not None
        _copy_files(e.performance, perf_root / "run_1", LOGS)
    source = e.performance or e.accuracy
    p.measurements.mkdir(parents=True, exist_ok=True)
    if (source / "user.conf").is_file():
        shutil.copy2(source / "user.conf", p.measurements / "user.conf")
    (p.measurements / "mlperf.conf").write_text(mlperf_conf_text(rnd))
    (p.measurements / "README.md").write_text(readme(e))
    (p.measurements / p.measurements_json).write_text(json.dumps(implementation_json(e.performance), indent=2) + "\n")
    for test in rnd.tests:
        dst = p.compliance / test
        shutil.copytree(e.compliance[test] / test, dst)
        log = dst / "accuracy" / ACCURACY_LOG
        if log.is_file():
            truncate_with_hash(log, dst / "accuracy" / "accuracy.txt")


def write_tree(built: Built, root: Path, submitter: str, division: str, test_tree: bool) -> None:
    for e in built.entries:
        build_entry(root, e, built.round)
        code = layout.code_dir(root, built.round, e.model)
        code.mkdir(parents=True, exist_ok=True)
        (code / "README.md").write_text(
            f"# {e.model} with packed-bert\n\nThe harness is packed-bert "
            f"({layout.IMPLEMENTATION}); see its repository for the source.\n"
        )
    for sut, cat in built.categories.items():
        mine = [e for e in built.entries if e.sut == sut]
        if not mine:
            continue
        sys_path = root / "systems" / f"{sut}.json"
        sys_path.parent.mkdir(parents=True, exist_ok=True)
        taken = [_system_of(e) for e in mine]
        desc = systems.system_json(taken[0], sut, submitter, division, str(cat), test_tree=test_tree, taken=taken)
        sys_path.write_text(json.dumps(desc, indent=2) + "\n")


def build(
    results: Path,
    out: Path,
    submitter: str,
    division: str = "closed",
    asked_round: str | None = None,
    category: str | None = None,
    allow_test_runs: bool = False,
    use: Sequence[Path] = (),
) -> Built:
    """Plan the tree, then write it beside ``out`` and rename it into place."""
    built = plan_tree(results, out, submitter, division, asked_round, category, allow_test_runs, use)
    if not built.entries:
        raise UserError(f"--results {results}: no run of {built.round.name} fits a {division} submission")
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write_tree(built, staging / division / submitter, submitter, division, test_tree=bool(built.test_runs))
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return built
