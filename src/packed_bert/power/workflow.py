"""``packed-bert run --mode power``: the performance run under the official power client.

With ``--power-server HOST:PORT``: check that ``power_client`` is installed and the server
answers, hand the client the performance-run command and the LoadGen log folder, collect what it
leaves (``power/``, ``ranging/``, ``run_1/`` with ``spl.txt``) into a ``...-power`` run directory,
and report the average Watts between ``power_begin`` and ``power_end`` and samples per joule.
Without a server: the unofficial software meter, labelled so, or a clear "no meter" error.
"""

import dataclasses
import json
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from packed_bert.compliance.logs import SUMMARY, read_summary
from packed_bert.compliance.rundirs import new_run_dir
from packed_bert.errors import UserError
from packed_bert.harness.config import RunConfig
from packed_bert.power import analysis, client, meter, server_check

Runner = Callable[[RunConfig, Path | None], Path]


def performance_command(cfg: RunConfig, results_dir: Path) -> list[str]:
    """The ``packed-bert run ... --mode performance`` the client runs, writing under ``results_dir``."""
    from packed_bert.commands.run import command_for

    perf = dataclasses.replace(cfg, mode="performance", results_dir=results_dir, compliance_tests=(),
                               power_server=None, ntp_server=None, sleep_before_s=0.0)
    return [sys.executable, "-m", "packed_bert.cli", *command_for(perf)[1:]]


def workload_command(perf_argv: list[str], logs: Path, results_dir: Path, sleep_s: float) -> str:
    wrapper = [sys.executable, "-m", "packed_bert.power.workload", "--logs", str(logs),
               "--results-dir", str(results_dir), "--sleep", str(sleep_s), "--"]
    return shlex.join(wrapper + perf_argv)


def run_power(cfg: RunConfig, perf_command: list[str] | None = None, runner: Runner | None = None) -> int:
    if not cfg.power_server:
        return run_unofficial(cfg, runner)
    host, port = server_check.parse_address(cfg.power_server)
    exe = client.find_client()
    server_check.check_server(host, port)
    out = new_run_dir(cfg.results_dir, cfg.sut, cfg.model, cfg.scenario, "power")
    runs = out / "runs"
    perf_argv = perf_command or performance_command(cfg, runs)
    label = f"{cfg.sut}-{cfg.model}-{cfg.scenario}".replace(".", "_")
    call = client.ClientCall(exe, host, port, workload_command(perf_argv, out / "loadgen", runs, cfg.sleep_before_s),
                             out / "loadgen", out / "client", label, cfg.ntp_server)
    (out / "command.txt").write_text(" ".join(cfg.command_line) + "\n" + shlex.join(call.argv()) + "\n")
    print(f"power: {exe.name} against {host}:{port}, ranging then testing run")
    session = client.run_client(call)
    for part in ("power", "ranging", "run_1"):
        if (session / part).is_dir():
            shutil.copytree(session / part, out / part)
    shutil.rmtree(out / "client", ignore_errors=True)
    result = analysis.analyze(out / "run_1")
    perf = read_summary(out / "run_1" / SUMMARY)
    summary = {"mode": "power", "official": True, "sut": cfg.sut, "model": cfg.model, "scenario": cfg.scenario,
               "average_watts": round(result.average_watts, 3), "power_samples": result.samples_in_window,
               "power_begin": result.begin, "power_end": result.end,
               "samples_per_second": result.samples_per_second,
               "samples_per_joule": round(result.samples_per_joule, 4) if result.samples_per_joule else None,
               "valid": perf.valid, "run_dir": str(out)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    spj = f", {result.samples_per_joule:.3f} samples/J" if result.samples_per_joule else ""
    print(f"power: {result.average_watts:.1f} W average over {result.duration_s:.1f} s "
          f"({result.samples_in_window} analyzer samples between power_begin and power_end){spj}")
    print(json.dumps(summary))
    return 0 if perf.valid else 1


def run_unofficial(cfg: RunConfig, runner: Runner | None = None) -> int:
    m = meter.detect()
    if m is None:
        raise UserError(f"--mode power needs --power-server HOST:PORT, and the built-in meter cannot stand in: {meter.NO_METER}")
    if runner is None:
        from packed_bert.compliance.workflow import run_in_process

        runner = run_in_process  # one run: the meter should see it, not a process starting
    perf_cfg = dataclasses.replace(cfg, mode="performance")
    with meter.metering(m) as reading:
        run_dir = runner(perf_cfg, None)
    r = reading()
    sps = read_summary(run_dir / SUMMARY).score if (run_dir / SUMMARY).is_file() else None
    record = {"official": False, "source": r.source, "watts": round(r.watts, 3), "joules": round(r.joules, 3),
              "seconds": round(r.seconds, 3), "samples_per_joule": (sps / r.watts) if sps and r.watts > 0 else None}
    (run_dir / "power_unofficial.json").write_text(json.dumps(record, indent=2) + "\n")
    print(r.describe(sps if cfg.scenario != "SingleStream" else None) + " — not an MLPerf power result")
    return 0
