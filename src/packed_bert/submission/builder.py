"""Build ``<out>/<division>/<submitter>/`` from a results directory, for one round's layout.

For every system/model/scenario with runs: the newest accuracy run, performance run (the power
run's testing run when there is one), compliance run, and power run. A missing required part
stops the build with its name; nothing is written then.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from packed_bert.errors import UserError
from packed_bert.results.loadgen_logs import ACCURACY_LOG, DETAIL, SUMMARY
from packed_bert.results.run_dirs import find_run, iter_runs
from packed_bert.rounds import Round
from packed_bert.submission import layout, systems
from packed_bert.submission.truncate import truncate_with_hash

LOGS = (SUMMARY, DETAIL)


@dataclass
class Entry:
    sut: str
    model: str
    scenario: str
    accuracy: Path | None = None
    performance: Path | None = None
    compliance: Path | None = None
    power: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.sut}/{self.model}/{layout.scenario_name(self.scenario)}"


def collect(results: Path) -> list[Entry]:
    keys: dict[tuple[str, str, str], None] = {}
    for _, s in iter_runs(results):
        if s.get("mode") in ("accuracy", "performance", "compliance", "power") and s.get("sut"):
            keys[(str(s["sut"]), str(s.get("model")), layout.scenario_name(str(s.get("scenario"))))] = None
    if not keys:
        raise UserError(f"--results {results}: no run directories with summary.json there")
    return [
        Entry(sut, model, scen, *(find_run(results, sut, model, scen, m) for m in ("accuracy", "performance", "compliance", "power")))
        for sut, model, scen in keys
    ]


def missing_parts(e: Entry, rnd: Round) -> list[str]:
    out = []
    if e.accuracy is None or not (e.accuracy / ACCURACY_LOG).is_file() or not (e.accuracy / "accuracy.txt").is_file():
        out.append("accuracy run (mlperf_log_accuracy.json + accuracy.txt)")
    if e.performance is None and e.power is None:
        out.append("performance run")
    for test in rnd.tests:
        if e.compliance is None or not (e.compliance / test / "verify_performance.txt").is_file():
            out.append(f"compliance {test}")
    return out


def _copy_files(src: Path, dst: Path, names: tuple[str, ...]) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)


def readme(e: Entry) -> str:
    lines = [f"# {e.name}", "", "Reproduce each run with packed-bert:", ""]
    for label, run in (("accuracy", e.accuracy), ("performance", e.performance), ("compliance", e.compliance), ("power", e.power)):
        cmd = (run / "command.txt").read_text().strip() if run and (run / "command.txt").is_file() else None
        if cmd:
            lines += [f"{label}:", "", "```", cmd.splitlines()[0], "```", ""]
    return "\n".join(lines)


def implementation_json(perf: Path | None) -> dict[str, str]:
    """From the run's ``settings.json``: the harness plan (``harness.precision``, ``harness.weights``)."""
    plan: dict = {}
    if perf and (perf / "settings.json").is_file():
        try:
            settings = json.loads((perf / "settings.json").read_text())
        except json.JSONDecodeError:
            settings = {}
        if isinstance(settings, dict):
            harness = settings.get("harness")
            plan = harness if isinstance(harness, dict) else settings
    precision = str(plan.get("precision") or "fp32")
    return {
        "input_data_types": "int32",
        "retraining": "No",
        "starting_weights_filename": str(plan.get("weights") or "model.pytorch"),
        "weight_data_types": precision,
        "weight_transformations": "none" if precision == "fp32" else f"quantized to {precision}",
    }


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
                shutil.copytree(e.power / part, perf_root / part, ignore=shutil.ignore_patterns(ACCURACY_LOG, "mlperf_log_trace.json"))
    else:
        assert e.performance is not None
        _copy_files(e.performance, perf_root / "run_1", LOGS)
    source = e.performance or e.accuracy
    p.measurements.mkdir(parents=True, exist_ok=True)
    if (source / "user.conf").is_file():
        shutil.copy2(source / "user.conf", p.measurements / "user.conf")
    (p.measurements / "README.md").write_text(readme(e))
    (p.measurements / p.measurements_json).write_text(json.dumps(implementation_json(e.performance), indent=2) + "\n")
    assert e.compliance is not None
    for test in rnd.tests:
        src = e.compliance / test
        dst = p.compliance / test
        shutil.copytree(src, dst)
        log = dst / "accuracy" / ACCURACY_LOG
        if log.is_file():
            truncate_with_hash(log, dst / "accuracy" / "accuracy.txt")


def build(results: Path, out: Path, submitter: str, division: str, rnd: Round) -> Path:
    if division not in ("closed", "open"):
        raise UserError(f"--division {division!r}: must be closed or open")
    if not submitter or "/" in submitter:
        raise UserError(f"--submitter {submitter!r}: give the organisation's name")
    entries = collect(results)
    for e in entries:
        missing = missing_parts(e, rnd)
        if missing:
            raise UserError(f"incomplete results for {e.name} ({rnd.name}): missing {', '.join(missing)}; run that mode first")
    root = out / division / submitter
    if root.exists() and any(root.iterdir()):
        raise UserError(f"{root} already exists and is not empty; choose another --out")
    for e in entries:
        build_entry(root, e, rnd)
        sys_path = root / "systems" / f"{e.sut}.json"
        sys_path.parent.mkdir(parents=True, exist_ok=True)
        run_system = systems.read_run_system(e.performance or e.accuracy or Path())
        sys_path.write_text(json.dumps(systems.system_json(run_system, e.sut, submitter, division), indent=2) + "\n")
        code = root / "code" / e.model / layout.IMPLEMENTATION
        code.mkdir(parents=True, exist_ok=True)
        (code / "README.md").write_text(f"# {e.model} with packed-bert\n\nThe harness is packed-bert ({layout.IMPLEMENTATION}); see its repository for the source.\n")
    return root
