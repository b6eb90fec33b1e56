"""What MLPerf's submission checker checks that packed-bert can know.

Files present per layout; accuracy.txt's F1 at or above the model's target and its ``hash=``
line (matching the original log when the results directory is given); the accuracy log
truncated (under 10 KiB); performance VALID; no ERROR in LoadGen's detail logs (a second
user.conf loaded in one process logs one); each compliance test of the round passed (TEST01
accuracy by identical responses or by the F1 delta); systems JSON with the required fields.
"""

import json
import re
from pathlib import Path

from packed_bert.compliance.verify import F1_DELTA_PERCENT
from packed_bert.results.loadgen_logs import (
    ACCURACY_LOG,
    DETAIL,
    SUMMARY,
    detail_errors,
    read_summary,
)
from packed_bert.results.run_dirs import find_run
from packed_bert.rounds import Round
from packed_bert.submission import layout, systems
from packed_bert.submission.truncate import MAX_LOG_SIZE, recorded_hash, sha256
from packed_bert.terms import ACCURACY_TARGET_F1

F1_LINE = re.compile(r'^\{"exact_match":\s*([\d.]+),\s*"f1":\s*([\d.]+)\}')


def read_f1(path: Path) -> float | None:
    f1 = None
    for line in path.read_text(errors="replace").splitlines():
        m = F1_LINE.match(line.strip())
        if m:
            f1 = float(m.group(2))
    return f1


def _passes(path: Path) -> bool:
    return path.is_file() and "TEST PASS" in path.read_text(errors="replace")


def loadgen_errors(run_dir: Path) -> list[str]:
    return [f"{run_dir}/{DETAIL}: LoadGen logged an ERROR ({e})" for e in detail_errors(run_dir / DETAIL)]


def check_compliance(test_dir: Path, model: str) -> list[str]:
    problems = loadgen_errors(test_dir / "performance" / "run_1")
    name = f"{test_dir.parent.name}/{test_dir.name}"
    if not _passes(test_dir / "verify_performance.txt"):
        problems.append(f"{test_dir}: verify_performance.txt has no TEST PASS")
    for f in (SUMMARY, DETAIL):
        if not (test_dir / "performance" / "run_1" / f).is_file():
            problems.append(f"{test_dir}/performance/run_1: {f} missing")
    if test_dir.name == "TEST01":
        acc = test_dir / "accuracy"
        if not (acc / ACCURACY_LOG).is_file():
            problems.append(f"{acc}: {ACCURACY_LOG} missing")
        if not _passes(test_dir / "verify_accuracy.txt"):
            base, comp = acc / "baseline_accuracy.txt", acc / "compliance_accuracy.txt"
            b = read_f1(base) if base.is_file() else None
            c = read_f1(comp) if comp.is_file() else None
            if not b or not c:
                problems.append(f"{name}: responses differ and baseline/compliance accuracy is missing")
            elif abs(1 - b / c) * 100 > F1_DELTA_PERCENT.get(model, 1.0):
                problems.append(f"{name}: F1 differs by {abs(1 - b / c) * 100:.3f}% (> {F1_DELTA_PERCENT.get(model, 1.0)}%)")
    return problems


def check_tree(root: Path, rnd: Round, results: Path | None = None) -> list[str]:
    """Problems found in ``<out>/<division>/<submitter>``; empty when it looks right."""
    problems: list[str] = []
    division, submitter = root.parent.name, root.name
    res = root / "results"
    if not res.is_dir():
        return [f"{root}: no results/ directory"]
    for sut_dir in sorted(p for p in res.iterdir() if p.is_dir()):
        sys_file = root / "systems" / f"{sut_dir.name}.json"
        if not sys_file.is_file():
            problems.append(f"{sys_file} missing")
        else:
            desc = json.loads(sys_file.read_text())
            absent = [k for k in systems.REQUIRED_FIELDS if k not in desc or desc[k] in ("", None)]
            if absent:
                problems.append(f"{sys_file}: required fields missing: {', '.join(absent)}")
            if desc.get("submitter") != submitter or desc.get("division") != division:
                problems.append(f"{sys_file}: submitter/division do not match the tree ({submitter}, {division})")
        for model_dir in sorted(p for p in sut_dir.iterdir() if p.is_dir()):
            for scen_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
                problems += check_result(root, rnd, sut_dir.name, model_dir.name, scen_dir.name, results)
    return problems


def check_result(root: Path, rnd: Round, sut: str, model: str, scen: str, results: Path | None) -> list[str]:
    p = layout.places(root, rnd, sut, model, scen)
    out: list[str] = []
    acc = p.results / "accuracy"
    for f in (ACCURACY_LOG, "accuracy.txt", SUMMARY, DETAIL):
        if not (acc / f).is_file():
            out.append(f"{acc}: {f} missing")
    if (acc / "accuracy.txt").is_file():
        f1 = read_f1(acc / "accuracy.txt")
        target = ACCURACY_TARGET_F1.get(model)
        if f1 is None:
            out.append(f"{acc}/accuracy.txt: no {{\"exact_match\": X, \"f1\": Y}} line")
        elif target is not None and f1 < target:
            out.append(f"{acc}/accuracy.txt: F1 {f1:.3f} below the {model} target {target}")
        digest = recorded_hash(acc / "accuracy.txt")
        if digest is None:
            out.append(f"{acc}/accuracy.txt: no hash= line (accuracy log not truncated by the MLPerf rules)")
        elif results is not None:
            src = find_run(results, sut, model, scen, "accuracy")
            if src is not None and sha256(src / ACCURACY_LOG) != digest:
                out.append(f"{acc}/accuracy.txt: hash does not match {src / ACCURACY_LOG}")
    if (acc / ACCURACY_LOG).is_file() and (acc / ACCURACY_LOG).stat().st_size >= MAX_LOG_SIZE:
        out.append(f"{acc}/{ACCURACY_LOG}: not truncated ({(acc / ACCURACY_LOG).stat().st_size} bytes)")
    out += loadgen_errors(acc)
    run1 = p.results / "performance" / "run_1"
    out += loadgen_errors(run1)
    if not (run1 / SUMMARY).is_file() or not (run1 / DETAIL).is_file():
        out.append(f"{run1}: LoadGen logs missing")
    elif read_summary(run1 / SUMMARY).valid is not True:
        out.append(f"{run1}: performance result is not VALID")
    for f in ("user.conf", "README.md", p.measurements_json):
        if not (p.measurements / f).is_file():
            out.append(f"{p.measurements}: {f} missing")
    for test in rnd.tests:
        if not (p.compliance / test).is_dir():
            out.append(f"{p.compliance}: {test} missing")
        else:
            out += check_compliance(p.compliance / test, model)
    return out
