"""LoadGen's test, run in a thread of its own so that Ctrl-C reaches Python."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import mlperf_loadgen as lg

from packed_bert.harness.errors import RunError
from packed_bert.harness.qsl import SampleLibrary
from packed_bert.harness.sut import BenchmarkSUT
from packed_bert.signals import Interrupted

NO_AUDIT_CONFIG = "audit.config"  # inside the run directory; absent unless a compliance test


class LoadGenStillRunning(Interrupted):
    """A signal while LoadGen cannot be stopped (it has no abort): the process must end at once."""


def run_loadgen(sut: BenchmarkSUT, library: SampleLibrary, test_settings: Any, outdir: Path) -> None:
    """``StartTestWithLogSettings`` with logs into ``outdir``. LoadGen reads ``outdir/audit.config``
    only where a compliance test put one there, so a stray ``audit.config`` in the working
    directory never changes a run.

    On Ctrl-C every sample still to come is answered empty at once and LoadGen gets a few seconds
    to end (an Offline run does). If it is still running (Server issues until its duration is
    over), ``LoadGenStillRunning`` is raised: the SUT and QSL are left alone, since LoadGen
    still uses them."""
    log = lg.LogSettings()
    log.log_output.outdir = str(outdir)
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False
    sut_handle = sut.construct()
    qsl_handle = library.construct()
    errors: list[BaseException] = []
    done = threading.Event()  # not Thread.is_alive(): an interrupted join() can misreport it
    audit = str(outdir / NO_AUDIT_CONFIG)

    def target() -> None:
        try:
            lg.StartTestWithLogSettings(sut_handle, qsl_handle, test_settings, log, audit)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()
            if sut.pool.inline:
                sut.pool.close()  # the main thread's device loop ends

    thread = threading.Thread(target=target, name="loadgen", daemon=True)
    thread.start()
    try:
        sut.pool.serve()  # an inline pool: this thread is the device's (``workers``)
        if isinstance(sut.pool.error, KeyboardInterrupt):  # caught while this thread ran a batch
            raise sut.pool.error
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt as exc:
        sut.pool.fail(exc)
        sut.pool.answer_queued_empty()
        if not done.wait(5.0):
            raise LoadGenStillRunning(exc.signum if isinstance(exc, Interrupted) else signal.SIGINT) from None
        raise
    finally:
        if done.is_set():
            sut.close()
            lg.DestroySUT(sut_handle)
            lg.DestroyQSL(qsl_handle)
    if errors:
        raise RunError(f"LoadGen failed: {errors[0]}") from errors[0]
