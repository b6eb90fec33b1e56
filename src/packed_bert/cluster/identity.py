"""What a device actor runs, as it reports it, and the check against the driver's run.

Every actor reports its node, the runner it built (backend, precision, simulated or not) and
the content id of the weights it found on its node, before the run sends it any batch. A
difference is one line naming the node.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packed_bert.cluster.request import ClusterRequest

SEEDED = ("random", "tiny")  # built from a seed: the same on every node


def weights_id(spec: str) -> str:
    """Weights as nodes can compare them: ``random``/``tiny``, or a checkpoint's name and the
    sha256 of its bytes (a directory: of its files' relative paths and bytes), since paths
    differ between nodes and two fine-tunes of one architecture have the same size. ``""``
    when there is no such file here."""
    if spec in SEEDED:
        return spec
    path = Path(spec).expanduser()
    if path.is_file():
        return f"{path.name} (sha256 {_digest([(path.name, path)])})"
    if path.is_dir():
        files = sorted((str(f.relative_to(path)), f) for f in path.rglob("*") if f.is_file())
        return f"{path.name}/ (sha256 {_digest(files)})"
    return ""


def _digest(files: list[tuple[str, Path]]) -> str:
    h = hashlib.sha256()
    for name, file in files:
        h.update(name.encode() + b"\0")
        with file.open("rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()[:16]


def package_version() -> str:
    try:
        return importlib.metadata.version("packed-bert")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class DeviceIdentity:
    """One device actor's answer to ``prepare``."""

    index: int  # the actor's place in the run
    node_id: str  # Ray's node id (hex)
    ip: str
    host: str  # the node's host name
    pid: int  # the actor's process
    backend: str
    model: str
    precision: str
    simulated: bool
    weights_id: str  # on that node; "" when it has no such file
    version: str  # packed-bert installed there
    device: str = ""  # the runner's device there
    gpu_ids: tuple[str, ...] = ()  # the cards Ray gave the actor (CUDA)
    runner: dict[str, Any] = field(default_factory=dict)  # backends.describe of its runner
    error: str = ""  # building the runner failed: why
    threads: int = 0  # a CPU device's threads (actor.node_cores_per_device); 0: the runtime's choice

    @property
    def node(self) -> str:
        """A short name for the node that stays unique when nodes share an address."""
        return f"{self.ip}/{self.node_id[:8]}"

    @property
    def where(self) -> str:
        return f"node {self.host} ({self.node}) device {self.index}"


def mismatch(got: DeviceIdentity, want: ClusterRequest, weights: str, version: str) -> str | None:
    """One phrase saying how an actor differs from the run (``weights``, ``version``: the ids
    the run holds), or ``None``."""
    if got.error:
        return got.error
    diffs = [
        f"{what} {have} (this run: {need})"
        for what, have, need in (
            ("backend", got.backend, want.backend),
            ("model", got.model, want.model),
            ("precision", got.precision, want.precision),
            ("packed-bert", got.version, version),
        )
        if have != need
    ]
    if got.simulated != want.simulated:
        kind = {True: "simulated", False: "real"}
        diffs.append(f"{kind[got.simulated]} device (this run: {kind[want.simulated]})")
    if got.weights_id != weights:
        have = got.weights_id or f"no file {want.weights}"
        need = weights or "the first device's"
        diffs.append(f"weights {have} (this run: {need})")
    return "; ".join(diffs) or None


def check_devices(found: Sequence[DeviceIdentity], want: ClusterRequest, where: str) -> None:
    """Raise ``UserError`` naming the first device whose node runs something else. Where the
    driver has no copy of the weights, every device must hold the first device's."""
    from packed_bert.errors import UserError

    weights = want.weights_id or (found[0].weights_id if found else "")
    version = package_version()
    for got in found:
        diff = mismatch(got, want, weights, version)
        if diff:
            raise UserError(f"--cluster {where}: {got.where}: {diff}".replace("\n", " "))
