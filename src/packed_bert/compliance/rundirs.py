"""Finding and naming run directories: ``<results>/<YYYYmmdd-HHMMSS>-<sut>-<model>-<scenario>-<mode>[-N]/``.

Each run directory holds ``summary.json`` (the run's JSON summary, with ``sut``, ``model``,
``scenario`` and ``mode``). Audit runs (those holding an ``audit.config``) never count as the
accuracy or performance run of their system.
"""

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_summary_json(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _same(a: object, b: object) -> bool:
    return str(a).lower() == str(b).lower()


def iter_runs(results_dir: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    if not results_dir.is_dir():
        return
    for run_dir in sorted(p for p in results_dir.iterdir() if p.is_dir()):
        summary = read_summary_json(run_dir)
        if summary:
            yield run_dir, summary


def is_audit_run(run_dir: Path, summary: dict[str, Any]) -> bool:
    return (run_dir / "audit.config").exists() or bool(summary.get("compliance_test"))


def find_run(results_dir: Path, sut: str, model: str, scenario: str, mode: str) -> Path | None:
    """The newest run of that system, model, scenario and mode (audit runs excluded)."""
    found = None
    for run_dir, s in iter_runs(results_dir):
        if is_audit_run(run_dir, s) and mode in ("accuracy", "performance"):
            continue
        if all(_same(s.get(k), v) for k, v in (("sut", sut), ("model", model), ("scenario", scenario), ("mode", mode))):
            found = run_dir  # sorted by name: the timestamp prefix orders them
    return found


def new_run_dir(results_dir: Path, sut: str, model: str, scenario: str, mode: str) -> Path:
    """A fresh directory named as the harness names its runs; never an existing one."""
    results_dir.mkdir(parents=True, exist_ok=True)
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{sut}-{model}-{scenario.lower()}-{mode}"
    for n in range(1, 1000):
        path = results_dir / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"could not make a new run directory under {results_dir}")
