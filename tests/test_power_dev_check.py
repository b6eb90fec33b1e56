"""The tools of ``benchmarks/power_dev_check.py``: the SIMULATED PTDaemon stand-in answers power-dev's
server as PTDaemon does (the replies power-dev's check compares), and check.py's verdicts are read
back from its log."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from power_dev_check import verdicts  # noqa: E402
from sim_ptd import GO_REPLY, IDENTITY, Analyzer  # noqa: E402


def test_the_stand_in_measures_between_go_and_stop_and_says_it_is_simulated(tmp_path: Path) -> None:
    a = Analyzer(str(tmp_path / "ptd.log"))
    assert a.reply("Hello") == ["Hello, PTDaemon here!"] and "SIMULATED" in a.reply("Identify")[0] == IDENTITY
    assert a.reply("Stop") == ["Error: no measurement to stop"]
    assert a.reply("SR,A,Auto") == ["Range A changed"] and a.reply("SR,V,300") == ["Range V changed"]
    assert a.reply("Go,1000,0,session_ranging") == [GO_REPLY] and a.measuring and a.mark == "session_ranging"
    a.unread = ["Time,12-06-2026 02:00:00.000,Watts,100.0,Volts,230.0,Amps,0.45,PF,0.95"]
    rows = a.reply("RL,*,*")
    assert rows[0] == "Last 1 samples" and rows[1].startswith("Time,") and a.reply("RL,*,*") == ["Last 0 samples"]
    assert a.reply("Stop") == ["Stopping untimed measurement"] and not a.measuring
    assert a.reply("Bogus") == ["Unknown command"]


def test_check_verdicts_are_read_with_the_reason_of_each_failure() -> None:
    log = (
        "INFO:main:[x] Check client sources checksum\n"
        "ERROR:main:[ ] Check PTD commands and replies\n"
        "ERROR:main:\tPTD version '0.0' is not supported. Supported versions are ['1.11.1']\n"
        "\n"
        "INFO:main:[x] Check UUID\n"
    )
    assert verdicts(log) == [
        ("Check client sources checksum", True, ""),
        (
            "Check PTD commands and replies",
            False,
            "PTD version '0.0' is not supported. Supported versions are ['1.11.1']",
        ),
        ("Check UUID", True, ""),
    ]
