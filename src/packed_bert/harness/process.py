"""Where a benchmark runs: in this process, or in a fresh one.

LoadGen takes one user.conf per process: a second one logs the ERROR "Multiple conf files are
used" into the run's detail log, and MLPerf's submission checker rejects a log with an ERROR.
So a workflow that makes several runs (compliance, a plan) starts each in a fresh process; a
run alone (or a benchmark's trials that share one LoadGen setting) may stay here.

The fresh process handles SIGINT/SIGTERM/SIGHUP as the command does. When the command is
stopped while a run is in its own process, the signal is passed on to that process, which
ends its run (``.incomplete`` with the reason), and the same ``Interrupted`` is raised here.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from packed_bert.harness.config import RunConfig
from packed_bert.harness.errors import RunError
from packed_bert.signals import Interrupted, stop_on_signals

# Runs one benchmark and returns its run directory (the harness here; workflows' tests pass
# their own).
Launcher = Callable[[RunConfig], Path]

STOP_WAIT_S = 60.0  # how long a stopped run process may take to leave its run directory


def run_here(cfg: RunConfig) -> Path:
    """One harness run in this process; its run directory."""
    from packed_bert.harness.benchmark import run_benchmark

    return Path(run_benchmark(cfg).run_dir)


def _child(cfg: RunConfig, results: Any) -> None:
    with stop_on_signals():
        try:
            results.put(("ok", str(run_here(cfg))))
        except BaseException as exc:  # noqa: BLE001 - every ending goes back to the parent
            try:
                results.put(("error", exc))
            except Exception:  # noqa: BLE001 - an exception that does not pickle
                results.put(("error", RunError(f"{type(exc).__name__}: {exc}")))
    sys.stdout.flush()


def run_in_fresh_process(cfg: RunConfig) -> Path:
    """One harness run in a new (spawned) process; its run directory. The run's exception
    (a ``UserError``, a ``RunError``, ``Interrupted``) is raised here again."""
    sys.stdout.flush()
    ctx = multiprocessing.get_context("spawn")
    results: Any = ctx.Queue()
    proc = ctx.Process(target=_child, args=(cfg, results), name="packed-bert-run")
    proc.start()
    try:
        outcome = _wait(proc, results)
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signum)  # the run process ends its run the same way
        proc.join(STOP_WAIT_S)
        if proc.is_alive():
            proc.kill()
        raise
    finally:
        proc.join(STOP_WAIT_S)
    kind, value = outcome
    if kind == "ok":
        return Path(value)
    raise value


def _wait(proc: Any, results: Any) -> tuple[str, Any]:
    while True:
        try:
            return tuple(results.get(timeout=0.2))  # type: ignore[return-value]
        except queue.Empty:
            if not proc.is_alive():
                try:  # the result may have arrived just as the process ended
                    return tuple(results.get(timeout=1.0))  # type: ignore[return-value]
                except queue.Empty:
                    code = proc.exitcode
                    if code is not None and code > 128:
                        raise Interrupted(code - 128) from None
                    raise RunError(f"the run's process ended without a result (exit status {code})") from None
