"""The checks MLPerf's submission checker of a round runs on a BERT tree.

Systems JSON: the required fields, status, ``system_type`` (a category the round allows for
BERT), submitter and division. Per system and model: every scenario the category requires, no
other. Per scenario: accuracy files, F1 at or above the target, ``hash=`` (equal to the
original log's when the results directory is given), the log truncated, the whole dataset;
performance (``submission.run_rules``: VALID, seeds, durations, query and sample counts, early
stopping, no LoadGen ERROR); the measurements files (user.conf, mlperf.conf, README.md, the
implementation JSON) and the code folder; each audit test of the round passed, with its audit
run checked like a performance run (TEST05 with TEST05's seeds). A simulated system is never a
closed result.

Findings are problems, or test-run findings (what a test-length run has). In a test tree
(``--allow-test-runs``, said in the systems' notes) the test-run findings are listed per run.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from packed_bert.compliance.verify import F1_DELTA_PERCENT
from packed_bert.errors import UserError
from packed_bert.results.loadgen_logs import ACCURACY_LOG, DETAIL, SUMMARY
from packed_bert.results.run_dirs import find_run
from packed_bert.rounds import Round
from packed_bert.submission import layout, systems
from packed_bert.submission.run_rules import Finding, accuracy_findings, performance_findings
from packed_bert.submission.truncate import MAX_LOG_SIZE, recorded_hash, sha256
from packed_bert.terms import ACCURACY_TARGET_F1, Category

F1_LINE = re.compile(r'^\{"exact_match":\s*([\d.]+),\s*"f1":\s*([\d.]+)\}')
STATUSES = ("available", "preview", "rdi")
SYSTEM_TYPES = ("datacenter", "edge", "datacenter,edge", "edge,datacenter")


def read_f1(path: Path) -> float | None:
    f1 = None
    for line in path.read_text(errors="replace").splitlines():
        m = F1_LINE.match(line.strip())
        if m:
            f1 = float(m.group(2))
    return f1


def _passes(path: Path) -> bool:
    return path.is_file() and "TEST PASS" in path.read_text(errors="replace")


def check_compliance(test_dir: Path, model: str, rnd: Round, division: str) -> list[Finding]:
    run1 = test_dir / "performance" / "run_1"
    out = performance_findings(run1, rnd, division, test05=test_dir.name == "TEST05")
    problem = lambda where, text: out.append(Finding("problem", where, text))  # noqa: E731
    if not _passes(test_dir / "verify_performance.txt"):
        problem(test_dir, "verify_performance.txt has no TEST PASS")
    if not (run1 / SUMMARY).is_file():
        problem(run1, f"{SUMMARY} missing")
    if test_dir.name == "TEST01":
        acc = test_dir / "accuracy"
        for f in (ACCURACY_LOG, "accuracy.txt"):
            if not (acc / f).is_file():
                problem(acc, f"{f} missing")
        if not _passes(test_dir / "verify_accuracy.txt"):
            base, comp = acc / "baseline_accuracy.txt", acc / "compliance_accuracy.txt"
            b = read_f1(base) if base.is_file() else None
            c = read_f1(comp) if comp.is_file() else None
            allowed = F1_DELTA_PERCENT.get(model, 1.0)
            if not b or not c:
                problem(test_dir, "responses differ and baseline/compliance accuracy is missing")
            elif abs(1 - b / c) * 100 > allowed:
                problem(test_dir, f"F1 differs by {abs(1 - b / c) * 100:.3f}% (> {allowed}%)")
    return out


def _system(root: Path, sut: str, rnd: Round, division: str, submitter: str) -> tuple[list[Finding], dict[str, Any]]:
    sys_file = root / "systems" / f"{sut}.json"
    if not sys_file.is_file():
        return [Finding("problem", sys_file, "missing")], {}
    try:
        desc = json.loads(sys_file.read_text())
    except json.JSONDecodeError as exc:
        return [Finding("problem", sys_file, f"not JSON ({exc.msg})")], {}
    out = []
    absent = [k for k in systems.REQUIRED_FIELDS if k not in desc or desc[k] in ("", None)]
    if absent:
        out.append(Finding("problem", sys_file, f"required fields missing: {', '.join(absent)}"))
    if str(desc.get("status", "")).lower() not in STATUSES:
        out.append(Finding("problem", sys_file, f"status {desc.get('status')!r} is not one of {', '.join(STATUSES)}"))
    system_type = str(desc.get("system_type", ""))
    if system_type not in SYSTEM_TYPES:
        out.append(Finding("problem", sys_file, f"system_type {system_type!r} is not one of {', '.join(SYSTEM_TYPES)}"))
    elif not all(c in rnd.categories for c in system_type.split(",")):
        out.append(
            Finding(
                "problem",
                sys_file,
                f"system_type {system_type}: BERT is {' or '.join(rnd.categories)} only in {rnd.name}",
            )
        )
    if str(desc.get("submitter", "")).lower() != submitter.lower() or desc.get("division") != division:
        out.append(Finding("problem", sys_file, f"submitter/division do not match the tree ({submitter}, {division})"))
    if division == "closed" and "simulated" in f"{desc.get('system_name')} {desc.get('sw_notes')}".lower():
        out.append(Finding("test-run", sys_file, "a simulated system (never a closed result)"))
    return out, desc


def _scenarios(
    path: Path, rnd: Round, model: str, system_type: str, present: list[str], division: str
) -> list[Finding]:
    required: set[str] = set()
    try:
        for cat in system_type.split(","):
            required |= {str(s) for s in rnd.required_scenarios(model, Category(cat))}
    except (UserError, ValueError) as exc:
        return [Finding("problem", path, str(exc))]
    out = []
    if division == "closed" and required - set(present):
        out.append(
            Finding(
                "problem",
                path,
                f"missing required scenarios {', '.join(sorted(required - set(present)))} ({system_type}, {rnd.name})",
            )
        )
    if set(present) - required:
        out.append(
            Finding(
                "problem",
                path,
                f"scenarios {', '.join(sorted(set(present) - required))} are not "
                f"{system_type} scenarios of {model} in {rnd.name}",
            )
        )
    return out


def check_findings(root: Path, rnd: Round, results: Path | None = None) -> list[Finding]:
    """Everything the checker would say about ``<out>/<division>/<submitter>``."""
    division, submitter = root.parent.name, root.name
    res = root / "results"
    if not res.is_dir():
        return [Finding("problem", root, "no results/ directory")]
    out: list[Finding] = []
    for sut_dir in sorted(p for p in res.iterdir() if p.is_dir()):
        found, desc = _system(root, sut_dir.name, rnd, division, submitter)
        out += found
        for model_dir in sorted(p for p in sut_dir.iterdir() if p.is_dir()):
            scens = sorted(p.name for p in model_dir.iterdir() if p.is_dir())
            if desc.get("system_type") in SYSTEM_TYPES:
                out += _scenarios(model_dir, rnd, model_dir.name, str(desc["system_type"]), scens, division)
            for scen in scens:
                out += check_result(root, rnd, sut_dir.name, model_dir.name, scen, results, division)
    return out


def check_result(
    root: Path, rnd: Round, sut: str, model: str, scen: str, results: Path | None, division: str = "closed"
) -> list[Finding]:
    p = layout.places(root, rnd, sut, model, scen)
    out: list[Finding] = []
    problem = lambda where, text: out.append(Finding("problem", where, text))  # noqa: E731
    acc = p.results / "accuracy"
    for f in (ACCURACY_LOG, "accuracy.txt", SUMMARY, DETAIL):
        if not (acc / f).is_file():
            problem(acc, f"{f} missing")
    if (acc / "accuracy.txt").is_file():
        f1 = read_f1(acc / "accuracy.txt")
        target = ACCURACY_TARGET_F1.get(model)
        if f1 is None:
            problem(acc / "accuracy.txt", 'no {"exact_match": X, "f1": Y} line')
        elif target is not None and f1 < target and division == "closed":  # open: any accuracy (the checker's too)
            problem(acc / "accuracy.txt", f"F1 {f1:.3f} below the {model} target {target}")
        digest = recorded_hash(acc / "accuracy.txt")
        if digest is None:
            problem(acc / "accuracy.txt", "no hash= line (accuracy log not truncated by the MLPerf rules)")
        elif results is not None:
            src = find_run(results, sut, model, scen, "accuracy")
            if src is not None and (src / ACCURACY_LOG).is_file() and sha256(src / ACCURACY_LOG) != digest:
                problem(acc / "accuracy.txt", f"hash does not match {src / ACCURACY_LOG}")
    if (acc / ACCURACY_LOG).is_file() and (acc / ACCURACY_LOG).stat().st_size >= MAX_LOG_SIZE:
        problem(acc / ACCURACY_LOG, f"not truncated ({(acc / ACCURACY_LOG).stat().st_size} bytes)")
    if (acc / DETAIL).is_file():
        out += accuracy_findings(acc)
    run1 = p.results / "performance" / "run_1"
    if not (run1 / SUMMARY).is_file():
        problem(run1, f"{SUMMARY} missing")
    out += performance_findings(run1, rnd, division)
    for f in ("user.conf", "mlperf.conf", "README.md", p.measurements_json):
        if not (p.measurements / f).is_file() or (p.measurements / f).stat().st_size == 0:
            problem(p.measurements, f"{f} missing or empty")
    if (p.measurements / p.measurements_json).is_file():
        try:
            impl = json.loads((p.measurements / p.measurements_json).read_text())
        except json.JSONDecodeError:
            impl = {}
        absent = [
            k
            for k in (
                "input_data_types",
                "retraining",
                "starting_weights_filename",
                "weight_data_types",
                "weight_transformations",
            )
            if not impl.get(k)
        ]
        if absent:
            problem(p.measurements / p.measurements_json, f"fields missing: {', '.join(absent)}")
    if not layout.code_dir(root, rnd, model).is_dir():
        problem(layout.code_dir(root, rnd, model), "the implementation folder is missing")
    if division == "closed":
        for test in rnd.tests:
            if not (p.compliance / test).is_dir():
                problem(p.compliance, f"{test} missing")
            else:
                out += check_compliance(p.compliance / test, model, rnd, division)
    return out


def is_test_tree(root: Path) -> bool:
    notes = [json.loads(f.read_text()).get("sw_notes", "") for f in (root / "systems").glob("*.json")]
    return any(str(n).startswith("TEST TREE") for n in notes)


def summarize(findings: list[Finding]) -> tuple[list[str], list[str]]:
    """(problems, test-length runs): one line per problem, one per run with test-run findings."""
    problems = [str(f) for f in findings if f.kind == "problem"]
    by_run: dict[Path, list[str]] = defaultdict(list)
    for f in findings:
        if f.kind == "test-run":
            by_run[f.where].append(f.text)
    return problems, [f"{where}: {'; '.join(reasons)}" for where, reasons in by_run.items()]


def check_tree(root: Path, rnd: Round, results: Path | None = None) -> list[str]:
    """Every finding as one line (test-run findings grouped per run); empty when the tree is right."""
    problems, test_runs = summarize(check_findings(root, rnd, results))
    return problems + [f"test-length run: {line}" for line in test_runs]
