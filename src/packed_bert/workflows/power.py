"""``packed-bert run --mode power``: the performance run under the official power client.

With ``--power-server HOST:PORT``: check that ``power_client`` is installed and the server
answers, hand the client the performance-run command and the LoadGen log folder, collect what it
leaves (``power/``, ``ranging/``, ``run_1/`` with ``spl.txt``) into a ``...-power`` run directory,
and report the average Watts between ``power_begin`` and ``power_end`` and samples per joule, with
a ``report.md`` and its plot (``power/report.py``; an analyzer that identifies itself as simulated
makes the run say SIMULATED).
Without a server: the unofficial software meter, labelled so, or a clear "no meter" error.
"""

import dataclasses
import json
import shlex
import shutil
import sys
from pathlib import Path

from packed_bert.errors import UserError
from packed_bert.harness.config import RunConfig
from packed_bert.harness.flags import to_argv
from packed_bert.harness.process import Launcher, run_here
from packed_bert.power import analysis, client, meter, server_check
from packed_bert.power.report import analyzer_identity, simulated, write_power_report
from packed_bert.results.loadgen_logs import SUMMARY, read_summary
from packed_bert.results.run_dirs import RunDir, run_name
from packed_bert.rounds import get_round
from packed_bert.systems import load_system
from packed_bert.terms import Mode, Scenario


def performance_command(cfg: RunConfig, results_dir: Path) -> list[str]:
    """The ``packed-bert run ... --mode performance`` the client runs, writing under ``results_dir``."""
    perf = dataclasses.replace(
        cfg,
        mode=Mode.PERFORMANCE,
        results_dir=results_dir,
        compliance_tests=(),
        power_server=None,
        ntp_server=None,
        sleep_before_s=0.0,
    )
    return to_argv(perf, (sys.executable, "-m", "packed_bert.cli", "run"))


def workload_command(perf_argv: list[str], logs: Path, results_dir: Path, sleep_s: float) -> str:
    wrapper = [
        sys.executable,
        "-m",
        "packed_bert.power.workload",
        "--logs",
        str(logs),
        "--results-dir",
        str(results_dir),
        "--sleep",
        str(sleep_s),
        "--",
    ]
    return shlex.join(wrapper + perf_argv)


def run_power(cfg: RunConfig, perf_command: list[str] | None = None, launch: Launcher | None = None) -> int:
    if not cfg.power_server:
        return run_unofficial(cfg, launch)
    host, port = server_check.parse_address(cfg.power_server)
    exe = client.find_client()
    server_check.check_server(host, port)
    sut = load_system(cfg.sut).name
    rd = RunDir(cfg.results_dir, run_name(sut, cfg.model, cfg.scenario, Mode.POWER))
    try:
        return _official(cfg, rd, sut, exe, host, port, perf_command)
    except BaseException as exc:
        rd.abandon(f"power run stopped: {exc or type(exc).__name__}")
        raise


def _official(
    cfg: RunConfig, rd: RunDir, sut: str, exe: Path, host: str, port: int, perf_command: list[str] | None
) -> int:
    out = rd.path
    runs = out / "runs"
    perf_argv = perf_command or performance_command(cfg, runs)
    label = f"{sut}-{cfg.model}-{cfg.scenario}".replace(".", "_")
    call = client.ClientCall(
        exe,
        host,
        port,
        workload_command(perf_argv, out / "loadgen", runs, cfg.sleep_before_s),
        out / "loadgen",
        out / "client",
        label,
        cfg.ntp_server or client.DEFAULT_NTP,
    )
    rd.write_text("command.txt", " ".join(cfg.command_line) + "\n" + shlex.join(call.argv()) + "\n")
    print(f"power: {exe.name} against {host}:{port}, ranging then testing run")
    session = client.run_client(call)
    for part in ("power", "ranging", "run_1"):
        if (session / part).is_dir():
            shutil.copytree(session / part, out / part)
    shutil.rmtree(out / "client", ignore_errors=True)
    result = analysis.analyze(out / "run_1")
    perf = read_summary(out / "run_1" / SUMMARY)
    identity = analyzer_identity(out / "power")
    summary = {
        "mode": "power",
        "official": True,
        "sut": sut,
        "model": cfg.model,
        "scenario": cfg.scenario,
        "round": get_round(cfg.round).name,
        "average_watts": round(result.average_watts, 3),
        "power_samples": result.samples_in_window,
        "power_begin": result.begin,
        "power_end": result.end,
        "samples_per_second": result.samples_per_second,
        "samples_per_joule": round(result.samples_per_joule, 4) if result.samples_per_joule else None,
        "millijoules_per_query": round(result.millijoules_per_query, 3) if result.millijoules_per_query else None,
        "valid": perf.valid,
        "analyzer": identity,
        "analyzer_simulated": simulated(identity),
    }
    write_power_report(rd.path, f"{sut} {cfg.model} {cfg.scenario}", result, identity, perf.valid)
    rd.finish_with_summary(summary)
    spj = "".join(f", {m}" for m in result.metrics())
    sim = " SIMULATED analyzer:" if simulated(identity) else ""
    print(
        f"power:{sim} {result.average_watts:.1f} W average over {result.duration_s:.1f} s "
        f"({result.samples_in_window} analyzer samples between power_begin and power_end){spj}"
    )
    print(json.dumps(summary))
    return 0 if perf.valid else 1


def run_unofficial(cfg: RunConfig, launch: Launcher | None = None) -> int:
    m = meter.detect()
    if m is None:
        raise UserError(
            f"--mode power needs --power-server HOST:PORT, and the built-in meter cannot stand in: {meter.NO_METER}"
        )
    # one run in this process: the meter should see the run, not a process starting
    run = launch or run_here
    perf_cfg = dataclasses.replace(cfg, mode=Mode.PERFORMANCE)
    with meter.metering(m) as reading:
        run_dir = run(perf_cfg)
    r = reading()
    sps = read_summary(run_dir / SUMMARY, missing_ok=True).score
    record = {
        "official": False,
        "source": r.source,
        "watts": round(r.watts, 3),
        "joules": round(r.joules, 3),
        "seconds": round(r.seconds, 3),
        "samples_per_joule": (sps / r.watts) if sps and r.watts > 0 else None,
    }
    (run_dir / "power_unofficial.json").write_text(json.dumps(record, indent=2) + "\n")
    print(r.describe(sps if cfg.scenario != Scenario.SINGLE_STREAM else None) + " — not an MLPerf power result")
    return 0
