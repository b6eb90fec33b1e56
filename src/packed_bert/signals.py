"""SIGINT, SIGTERM and SIGHUP end any command the same way: as an ``Interrupted`` exception.

``timeout``, batch schedulers, ``docker stop`` and CI cancellation send SIGTERM; a closed
terminal sends SIGHUP; Ctrl-C sends SIGINT. Inside ``stop_on_signals()`` each of them raises
``Interrupted`` (a ``KeyboardInterrupt``) in the main thread, so every ``except
KeyboardInterrupt`` / ``finally`` on the way out runs: devices are stopped, the run directory is
kept as ``.incomplete`` with the reason, and the command exits 128 + the signal number (130,
143, 129). Signals that arrive while that cleanup runs are reported and otherwise ignored, so a
second Ctrl-C never aborts it half-way.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """The command was stopped by a signal."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = int(signum)
        super().__init__(self.describe())

    def __reduce__(self) -> tuple[Any, tuple[int]]:  # pickles across a spawned run process
        return (Interrupted, (self.signum,))

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def describe(self) -> str:
        return "interrupted (Ctrl-C)" if self.signum == signal.SIGINT else f"stopped by {self.name}"


def exit_code(exc: BaseException) -> int:
    """128 + the signal number; a plain KeyboardInterrupt is Ctrl-C (130)."""
    return exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT


def describe(exc: BaseException) -> str:
    return exc.describe() if isinstance(exc, Interrupted) else "interrupted (Ctrl-C)"


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, the first of SIGINT/SIGTERM/SIGHUP raises ``Interrupted``; later ones
    are reported and ignored while the command cleans up. A signal the process was started
    ignoring (``nohup``: SIGHUP; a shell's background job: SIGINT) stays ignored. Outside the main
    thread (where Python delivers no signals) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stopping:
            print(
                f"packed-bert: {signal.Signals(signum).name} ignored: already stopping, cleaning up",
                file=sys.stderr,
                flush=True,
            )
            return
        stopping.append(signum)
        raise Interrupted(signum)

    previous = {s: signal.getsignal(s) for s in HANDLED}
    for s in HANDLED:
        if previous[s] is not signal.SIG_IGN:  # one the caller ignores (nohup: SIGHUP) stays ignored
            signal.signal(s, handler)
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
