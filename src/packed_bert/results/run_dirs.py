"""Run directories: named, made, finished and found here, for every kind of run.

A run (and a workflow's directory: compliance, power, find-peak) writes into a hidden working
directory (``.<name>.partial-<pid>-<ns>``) beside its final place and is renamed to
``<YYYYmmdd-HHMMSS>-<sut>-<model>-<scenario>-<mode>[-N]`` only when it finishes. One that fails
or is interrupted is renamed to ``<name>.incomplete`` with an ``INCOMPLETE.txt`` saying why;
earlier results are never touched. Each finished run directory holds ``summary.json`` (with
``sut``, ``model``, ``scenario`` and ``mode``), by which ``find_run`` finds it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from packed_bert.cache import atomic_write_bytes
from packed_bert.errors import UserError


def run_name(sut: str, model: str, scenario: str, mode: str, when: float | None = None) -> str:
    """``<stamp>-<sut>-<model>-<scenario>-<mode>``; ``sut`` may be a system name or a .toml path."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    safe_sut = re.sub(r"[^A-Za-z0-9_.]+", "_", Path(sut).stem if sut.endswith(".toml") else sut)
    return f"{stamp}-{safe_sut}-{model}-{str(scenario).lower()}-{mode}"


class RunDir:
    """The working directory of one run and its final name."""

    def __init__(self, results_dir: Path, name: str) -> None:
        self.results_dir = Path(results_dir)
        self.name = name
        try:
            self.results_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--results-dir {self.results_dir}: cannot create it ({exc.strerror})") from exc
        self.path = self.results_dir / f".{name}.partial-{os.getpid()}-{time.monotonic_ns()}"
        self.path.mkdir()
        self.final: Path | None = None

    def write_text(self, rel: str, text: str) -> Path:
        target = self.path / rel
        atomic_write_bytes(target, text.encode("utf-8"))
        return target

    def write_json(self, rel: str, obj: Any) -> Path:
        return self.write_text(rel, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")

    def finish(self) -> Path:
        """Rename to the first free ``<name>[-N]``; returns the final path."""
        self.final = self._rename_free(self.name, "")
        self.path = self.final
        return self.final

    def abandon(self, reason: str) -> Path:
        """Keep what was written under ``<name>[-N].incomplete`` with the reason."""
        (self.path / "INCOMPLETE.txt").write_text(reason.rstrip() + "\n", encoding="utf-8")
        self.final = self._rename_free(self.name, ".incomplete")
        self.path = self.final
        return self.final

    def _rename_free(self, base: str, suffix: str) -> Path:
        n = 1
        while True:
            candidate = self.results_dir / (f"{base}{suffix}" if n == 1 else f"{base}-{n}{suffix}")
            if not candidate.exists():
                try:
                    # Linux rename over an existing *empty* dir succeeds, over a non-empty one fails:
                    # reserve with mkdir so two runs never share a name.
                    candidate.mkdir()
                    os.rename(self.path, candidate)
                    return candidate
                except FileExistsError:
                    pass
                except OSError as exc:
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
            n += 1


def read_summary_json(run_dir: Path) -> dict[str, Any]:
    """A run directory's ``summary.json``; empty when it has none (or not a JSON object)."""
    try:
        data = json.loads((run_dir / "summary.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def iter_runs(results_dir: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Finished run directories (those with a summary.json), oldest first."""
    if not results_dir.is_dir():
        return
    for run_dir in sorted(p for p in results_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        summary = read_summary_json(run_dir)
        if summary:
            yield run_dir, summary


def is_audit_run(run_dir: Path, summary: dict[str, Any]) -> bool:
    return (run_dir / "audit.config").exists() or bool(summary.get("compliance_test"))


def find_run(results_dir: Path, sut: str, model: str, scenario: str, mode: str) -> Path | None:
    """The newest run of that system, model, scenario and mode (audit runs never count as the
    accuracy or performance run of their system)."""
    found = None
    wanted = {"sut": sut, "model": model, "scenario": scenario, "mode": mode}
    for run_dir, s in iter_runs(results_dir):
        if mode in ("accuracy", "performance") and is_audit_run(run_dir, s):
            continue
        if all(str(s.get(k)).lower() == str(v).lower() for k, v in wanted.items()):
            found = run_dir  # sorted by name: the timestamp prefix orders them
    return found


def read_command(run_dir: Path) -> list[str] | None:
    """The command line a run directory recorded (``command.txt``'s first line, split as the
    shell would); None when it has none."""
    import shlex

    try:
        line = (run_dir / "command.txt").read_text(encoding="utf-8").splitlines()[0]
        return shlex.split(line)
    except (OSError, UnicodeDecodeError, IndexError, ValueError):
        return None
