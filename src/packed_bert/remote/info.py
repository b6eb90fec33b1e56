"""What a worker serves (the fields of its ``hello``) and the check against the lead's run."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packed_bert.remote.protocol import ProtocolError


def weights_id(spec: str) -> str:
    """Weights as hosts can compare them: ``random``/``tiny`` (seeded, the same everywhere), or a
    checkpoint's name and the sha256 of its bytes (a directory: of its files' relative paths
    and bytes). Paths differ between hosts, and two fine-tunes of one architecture have the
    same size, so only the content tells them apart. A missing file: its name alone."""
    if spec in ("random", "tiny"):
        return spec
    path = Path(spec).expanduser()
    if path.is_file():
        return f"{path.name} (sha256 {_digest([(path.name, path)])})"
    if path.is_dir():
        files = sorted((str(f.relative_to(path)), f) for f in path.rglob("*") if f.is_file())
        return f"{path.name}/ (sha256 {_digest(files)})"
    return path.name


def _digest(files: list[tuple[str, Path]]) -> str:
    h = hashlib.sha256()
    for name, file in files:
        h.update(name.encode() + b"\0")
        with file.open("rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()[:16]


_HASHED = re.compile(r" \(sha256 [0-9a-f]+\)$")


def same_weights(a: str, b: str) -> bool:
    """Equal ids; where one side does not have the file, equal names."""
    if a == b:
        return True
    if _HASHED.search(a) and _HASHED.search(b):
        return False
    return _HASHED.sub("", a).rstrip("/") == _HASHED.sub("", b).rstrip("/")


@dataclass(frozen=True)
class Expected:
    """What the lead's run needs of every worker."""

    model: str
    precision: str
    weights: str  # weights_id
    simulated: bool


@dataclass(frozen=True)
class WorkerInfo:
    """A worker's answer to ``hello``."""

    version: int
    sut: str
    model: str
    precision: str
    weights: str  # weights_id
    backend: str
    simulated: bool
    devices: int
    runners: tuple[dict[str, Any], ...]  # backends.describe() of each device's runner
    host: str  # the worker's host name
    batching: str

    def fields(self) -> dict[str, Any]:
        out = asdict(self)
        out["runners"] = list(self.runners)
        return out

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> WorkerInfo:
        try:
            runners = tuple(dict(r) for r in fields["runners"])
            info = cls(
                int(fields["version"]), str(fields["sut"]), str(fields["model"]),
                str(fields["precision"]), str(fields["weights"]), str(fields["backend"]),
                bool(fields["simulated"]), int(fields["devices"]), runners,
                str(fields["host"]), str(fields["batching"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"incomplete hello ({type(exc).__name__}: {exc})") from None
        if info.devices != len(runners) or info.devices < 1:
            raise ProtocolError(f"hello says {info.devices} devices but describes {len(runners)}")
        return info

    def mismatch(self, want: Expected) -> str | None:
        """One phrase saying how this worker differs from what the run needs, or ``None``."""
        diffs = [
            f"{what} {got} (this run: {need})"
            for what, got, need in (
                ("model", self.model, want.model),
                ("precision", self.precision, want.precision),
            )
            if got != need
        ]
        if self.simulated != want.simulated:
            kind = {True: "simulated", False: "real"}
            diffs.append(f"{kind[self.simulated]} devices (this run: {kind[want.simulated]})")
        if not same_weights(self.weights, want.weights):
            diffs.append(f"weights {self.weights} (this run: {want.weights})")
        return "; ".join(diffs) or None
