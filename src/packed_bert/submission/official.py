"""Run an official MLPerf submission checker (mlcommons/inference ``tools/submission``) on a tree.

``PATH`` is a checkout of mlcommons/inference, its ``tools/submission`` folder, or the checker
itself: ``submission_checker.py`` (one file, to v5.1) or ``submission_checker/main.py`` (the
package, from v6.0). It runs with ``--input <out> --version <round> --submitter <name>``, in a
scratch folder for its CSV, with the Python given (its own dependencies, e.g. PyYAML for the
package, are the user's to install there). Its findings are its ERROR and WARNING lines.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packed_bert.errors import UserError

TIMEOUT_S = 600
_CANDIDATES = (
    "tools/submission/submission_checker/main.py",
    "submission_checker/main.py",
    "main.py",
    "tools/submission/submission_checker.py",
    "submission_checker.py",
)


@dataclass(frozen=True)
class OfficialResult:
    checker: Path
    command: list[str]
    returncode: int
    errors: list[str]  # the checker's ERROR and WARNING lines ("accuracy not met" is a warning), unstamped
    summary: str  # its SUMMARY line, if any


def find_checker(path: Path) -> Path:
    if path.is_file():
        return path
    for rel in _CANDIDATES:
        if (path / rel).is_file():
            return path / rel
    raise UserError(
        f"--official {path}: no MLPerf submission checker there (submission_checker.py or "
        "submission_checker/main.py of mlcommons/inference tools/submission)"
    )


def _clean(line: str) -> str:
    line = re.sub(r"^\[[^\]]*\]\s*", "", line.strip())  # "[time file:line ERROR] msg"
    return re.sub(r"^ERROR:[\w.]+:", "", line).strip()


def run_official(path: Path, out: Path, version: str, submitter: str, python: str | None = None) -> OfficialResult:
    checker = find_checker(Path(path))
    with tempfile.TemporaryDirectory(prefix="mlperf-checker-") as scratch:
        cmd = [
            python or sys.executable,
            str(checker.resolve()),
            "--input",
            str(out.resolve()),
            "--version",
            version,
            "--submitter",
            submitter,
            "--csv",
            str(Path(scratch) / "summary.csv"),
        ]
        try:
            done = subprocess.run(cmd, cwd=scratch, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UserError(f"--official {path}: the checker did not run ({exc})") from None
    lines = (done.stdout + "\n" + done.stderr).splitlines()
    missing = next((ln for ln in lines if "ModuleNotFoundError" in ln), None)
    if missing:
        raise UserError(
            f"--official {path}: the checker needs a module this Python lacks ({missing.strip()}); "
            "install it, or pass --official-python PATH"
        )
    errors = [_clean(ln) for ln in lines if re.search(r"(^| )(ERROR|WARNING)[:\]]", ln) and "skipped for" not in ln]
    summary = next((_clean(ln).split("SUMMARY:", 1)[1].strip() for ln in reversed(lines) if "SUMMARY:" in ln), "")
    return OfficialResult(checker, cmd, done.returncode, [e for e in errors if "SUMMARY:" not in e], summary)
