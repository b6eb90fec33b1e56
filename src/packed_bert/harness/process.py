"""Where a benchmark runs: in this process, or in a fresh one.

LoadGen takes one user.conf per process: a second one logs the ERROR "Multiple conf files are
used" into the run's detail log, and MLPerf's submission checker rejects a log with an ERROR.
So a workflow that makes several runs (compliance, power's reference) starts each in a fresh
process; a run alone (or a benchmark's trials that share one LoadGen setting) may stay here.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from packed_bert.harness.config import RunConfig

# Runs one benchmark and returns its run directory (the harness here; workflows' tests pass
# their own).
Launcher = Callable[[RunConfig], Path]


def run_here(cfg: RunConfig) -> Path:
    """One harness run in this process; its run directory."""
    from packed_bert.harness.benchmark import run_benchmark

    return Path(run_benchmark(cfg).run_dir)


def run_in_fresh_process(cfg: RunConfig) -> Path:
    """One harness run in a new (spawned) process; its run directory."""
    sys.stdout.flush()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_here, cfg).result()
