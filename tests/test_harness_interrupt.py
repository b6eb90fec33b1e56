"""SIGINT, SIGTERM and SIGHUP end a run, and a compliance chain, the same clean way."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _as_from_a_terminal() -> None:
    """The child starts with the default disposition of the signals a run handles, as one started
    from a terminal does, even when these tests run under ``nohup`` or as a background job (which
    start it ignoring SIGHUP or SIGINT, and a run keeps ignoring what it was started ignoring)."""
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


def _start(cmd: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_as_from_a_terminal
    )
    deadline = time.monotonic() + 90
    while (
        time.monotonic() < deadline
        and proc.poll() is None
        and not any(p.name.startswith(".") and "partial" in p.name for p in tmp_path.rglob("*"))
    ):
        time.sleep(0.2)  # wait until a run has its working directory
    time.sleep(1.5)
    assert proc.poll() is None, proc.communicate()
    return proc


def _run_cmd(shared_data: Path, results: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "packed_bert.cli",
        "run",
        "--sut",
        "null",
        "--scenario",
        "server",
        "--target-qps",
        "500",
        "--setting",
        "min_duration=60000",
        "--results-dir",
        str(results),
        "--dataset",
        str(shared_data / "squad" / "dev-v1.1.json"),
        "--vocab",
        str(shared_data / "vocab" / "bert-uncased-vocab.txt"),
        *extra,
    ]


@pytest.mark.parametrize(
    ("sig", "code", "reason"),
    [
        (signal.SIGINT, 130, "interrupted (Ctrl-C)"),
        (signal.SIGTERM, 143, "stopped by SIGTERM"),
        (signal.SIGHUP, 129, "stopped by SIGHUP"),
    ],
)
def test_a_signal_stops_a_run_cleanly_and_keeps_earlier_results(
    shared_data: Path,
    tmp_path: Path,
    sig: signal.Signals,
    code: int,
    reason: str,
) -> None:
    earlier = tmp_path / "20200101-000000-null-bert-99-server-performance"
    earlier.mkdir()
    (earlier / "summary.json").write_text("{}")
    proc = _start(_run_cmd(shared_data, tmp_path), tmp_path)
    proc.send_signal(sig)
    if sig == signal.SIGINT:
        time.sleep(0.3)
        proc.send_signal(sig)  # a second Ctrl-C while the first is being handled
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "terminate called" not in err and "Segmentation" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("packed-bert: ") and reason in last
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0] == earlier.name and (earlier / "summary.json").read_text() == "{}"
    assert len(names) == 2 and names[1].endswith("server-performance.incomplete")
    assert reason in (tmp_path / names[1] / "INCOMPLETE.txt").read_text()


def test_sigterm_stops_a_compliance_chain_and_its_run_process(shared_data: Path, tmp_path: Path) -> None:
    proc = _start(_run_cmd(shared_data, tmp_path, "--mode", "compliance", "--compliance", "TEST01"), tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    runs = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    # the accuracy reference run (run first, in its own process) finished or was stopped; no
    # directory is left looking finished unless it is, and no hidden working directory remains
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    for run in runs:
        assert (run / "summary.json").is_file() or (run / "INCOMPLETE.txt").is_file(), run.name
    assert any(p.name.endswith(".incomplete") for p in runs)


def test_a_signal_the_caller_ignores_stays_ignored() -> None:
    """``nohup packed-bert run ... &`` sets SIGHUP to be ignored: a hang-up must not stop the run,
    while SIGTERM still does."""
    from packed_bert.signals import Interrupted, stop_on_signals

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_on_signals():
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.05)  # delivered by now: nothing raised
            with pytest.raises(Interrupted):
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1.0)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)
