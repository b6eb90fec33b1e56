"""Running the harness in tests: with a timeout (a hang fails the test), and reading back what
a run answered."""

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from packed_bert.harness.benchmark import run_benchmark
from packed_bert.harness.config import RunConfig, RunResult


def run_with_timeout(cfg: RunConfig, timeout: float = 60.0, **kw: Any) -> RunResult:
    """run_benchmark in a thread with a timeout: a hang fails the test instead of blocking it."""
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(run_benchmark(cfg, quiet=True, **kw))
        except BaseException as exc:  # noqa: BLE001
            out.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "the run hung"
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def decode_log(log: Path) -> dict[int, list[np.ndarray]]:
    got: dict[int, list[np.ndarray]] = {}
    for entry in json.loads(log.read_text()):
        data = np.frombuffer(bytes.fromhex(entry["data"]), dtype=np.float32).reshape(-1, 2)
        got.setdefault(entry["qsl_idx"], []).append(data)
    return got


def last_json(text: str) -> dict[str, Any]:
    """The JSON line a command prints last (its summary)."""
    out: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    return out
