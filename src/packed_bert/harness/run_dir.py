"""One new directory per run, never over an earlier one.

A run writes into a hidden working directory (``.<name>.partial-<pid>``) beside its final
place and is renamed to ``<YYYYmmdd-HHMMSS>-<sut>-<model>-<scenario>-<mode>[-N]`` only when it
finishes. A run that fails or is interrupted is renamed to ``<name>.incomplete`` with an
``INCOMPLETE.txt`` saying why; earlier results are never touched.
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from packed_bert.cache import atomic_write_bytes
from packed_bert.errors import UserError


def run_name(sut: str, model: str, scenario: str, mode: str, when: float | None = None) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    safe_sut = re.sub(r"[^A-Za-z0-9_.]+", "_", Path(sut).stem if sut.endswith(".toml") else sut)
    return f"{stamp}-{safe_sut}-{model}-{scenario.lower()}-{mode}"


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
