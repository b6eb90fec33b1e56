"""Run directories: named, made, finished and found here, for every kind of run.

A run (and a workflow's directory: compliance, power, find-peak) writes into a hidden working
directory (``.<name>.partial-<pid>-<ns>``) beside its final place and is renamed to
``<YYYYmmdd-HHMMSS>-<sut>-<model>-<scenario>-<mode>[-N]`` only when it finishes. One that fails
or is interrupted is renamed to ``<name>.incomplete`` with an ``INCOMPLETE.txt`` saying why;
earlier results are never touched. Each finished run directory holds ``summary.json`` (with
``sut``, ``model``, ``scenario`` and ``mode``), by which ``find_run`` finds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from packed_bert.cache import atomic_write_bytes
from packed_bert.errors import UserError


def run_name(sut: str, model: str, scenario: str, mode: str, when: float | None = None) -> str:
    """``<stamp>-<sut>-<model>-<scenario>-<mode>``; ``sut`` may be a system name or a .toml path."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    safe_sut = re.sub(r"[^A-Za-z0-9_.]+", "_", Path(sut).stem if sut.endswith(".toml") else sut)
    return f"{stamp}-{safe_sut}-{model}-{str(scenario).lower()}-{mode}"


def check_results_dir(results_dir: Path) -> None:
    """The results directory exists (made if need be) and takes new directories; a one-line
    ``UserError`` naming it otherwise, before any work starts."""
    path = Path(results_dir)
    if path.exists() and not path.is_dir():
        raise UserError(f"--results-dir {path}: is a file; choose a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}-{time.monotonic_ns()}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise UserError(
            f"--results-dir {path}: cannot write there ({exc.strerror}); choose a writable directory"
        ) from None


class RunDir:
    """The working directory of one run and its final name."""

    def __init__(self, results_dir: Path, name: str) -> None:
        self.results_dir = Path(results_dir)
        self.name = name
        check_results_dir(self.results_dir)
        self.path = self.results_dir / f".{name}.partial-{os.getpid()}-{time.monotonic_ns()}"
        try:
            self.path.mkdir()
        except OSError as exc:
            raise UserError(
                f"--results-dir {self.results_dir}: cannot write there ({exc.strerror}); choose a writable directory"
            ) from None
        self.final: Path | None = None

    def write_text(self, rel: str, text: str) -> Path:
        target = self.path / rel
        atomic_write_bytes(target, text.encode("utf-8"))
        return target

    def write_json(self, rel: str, obj: Any) -> Path:
        return self.write_text(rel, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")

    def finish(self, last: Callable[[Path], None] | None = None) -> Path:
        """Rename to the first free ``<name>[-N]`` and return it. ``last(final_path)`` writes
        the files that name the final place (summary.json) just before the rename, so the
        directory appears whole or not at all."""
        self.final = self._rename_free(self.name, "", last)
        self.path = self.final
        return self.final

    def finish_with_summary(self, summary: dict[str, Any]) -> Path:
        """``finish``, writing ``summary.json`` (with ``run_dir`` = the final path) last."""

        def write(final: Path) -> None:
            summary["run_dir"] = str(final)
            self.write_json("summary.json", summary)

        return self.finish(write)

    def abandon(self, reason: str) -> Path:
        """Keep what was written under ``<name>[-N].incomplete`` with the reason."""
        with contextlib.suppress(OSError):  # a full disk: the name alone says it is incomplete
            (self.path / "INCOMPLETE.txt").write_text(reason.rstrip() + "\n", encoding="utf-8")
        self.final = self._rename_free(self.name, ".incomplete")
        self.path = self.final
        return self.final

    def _rename_free(self, base: str, suffix: str, last: Callable[[Path], None] | None = None) -> Path:
        n = 1
        while True:
            candidate = self.results_dir / (f"{base}{suffix}" if n == 1 else f"{base}-{n}{suffix}")
            n += 1
            try:
                # reserve the name with mkdir, so two runs never share one; Linux renames over
                # an *empty* directory
                candidate.mkdir()
            except FileExistsError:
                continue
            try:
                if last is not None:
                    last(candidate)
                os.rename(self.path, candidate)
                return candidate
            except BaseException:
                candidate.rmdir()
                raise


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
