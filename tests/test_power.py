import json
import os
from pathlib import Path

import pytest
from helpers.power import FAKE_CLIENT, STUB_PERF, closed_port
from helpers.stub_launcher import StubLauncher

from packed_bert.cli import build_parser
from packed_bert.commands.run import config_from_args
from packed_bert.errors import UserError
from packed_bert.harness.config import RunConfig
from packed_bert.power import analysis, client, meter, server_check
from packed_bert.workflows.power import performance_command, run_power


def test_address_parsing() -> None:
    assert server_check.parse_address("10.0.0.2:4951") == ("10.0.0.2", 4951)
    assert server_check.parse_address("director") == ("director", 4950)
    with pytest.raises(UserError, match="expected HOST:PORT"):
        server_check.parse_address("host:port")


@pytest.mark.parametrize("ntp", ["ntp.example", None])  # None: the old harness's words name no NTP server
def test_power_run_with_stand_in_client(
    tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ntp: str | None
) -> None:
    monkeypatch.setenv(client.ENV_CLIENT, str(FAKE_CLIENT))
    cfg = RunConfig(
        sut="null",
        mode="power",
        results_dir=tmp_path,
        power_server=server,
        ntp_server=ntp,
        sleep_before_s=0.1,
    )
    code = run_power(cfg, perf_command=STUB_PERF)
    assert code == 0
    out = next(tmp_path.glob("*-power"))
    for part in (
        "power/client.json",
        "power/server.log",
        "power/ptd_logs.txt",
        "ranging/spl.txt",
        "ranging/mlperf_log_detail.txt",
        "run_1/spl.txt",
        "run_1/mlperf_log_summary.txt",
        "run_1/mlperf_log_detail.txt",
    ):
        assert (out / part).is_file(), part
    summary = json.loads((out / "summary.json").read_text())
    assert summary["official"] is True
    assert summary["average_watts"] == pytest.approx(200.0)  # idle 50 W samples outside the window are excluded
    assert summary["samples_per_joule"] == pytest.approx(summary["samples_per_second"] / 200.0, rel=1e-3)
    command = (out / "command.txt").read_text()
    for arg in (
        "--addr 127.0.0.1",
        "--run-workload",
        "--loadgen-logs",
        "--output",
        f"--ntp {ntp or client.DEFAULT_NTP}",  # the real client requires one (so does the stand-in)
        "--label null-bert-99-Offline",
        "--sleep 0.1",
    ):
        assert arg in command
    assert "SIMULATED analyzer: 200.0 W average" in capsys.readouterr().out
    assert summary["analyzer_simulated"] is True and summary["analyzer"].startswith("SIMULATED")
    report = (out / "report.md").read_text()
    assert "SIMULATED analyzer" in report.splitlines()[0] and "**200.0 W** average (SIMULATED analyzer)" in report
    assert "![Power through the runs](power.png)" in report and (out / "power.png").stat().st_size > 1000


def test_analysis_window_and_date_formats(tmp_path: Path) -> None:
    (tmp_path / "mlperf_log_detail.txt").write_text(
        ':::MLLOG {"key": "power_begin", "value": "12-28-2020 15:21:14.000"}\n'
        ':::MLLOG {"key": "power_end", "value": "12-28-2020 15:21:16.000"}\n'
    )
    (tmp_path / "mlperf_log_summary.txt").write_text("Scenario : Offline\nSamples per second: 600\nResult is : VALID\n")
    (tmp_path / "spl.txt").write_text(
        "Time,12-28-2020 15:21:13.500,Watts,10.0,Volts,230,Amps,0.1,PF,1,Mark,x\n"
        "Time,28-12-2020 15:21:14.500,Watts,300.0,Volts,230,Amps,1.3,PF,1,Mark,x\n"  # day-month-year
        "Time,12-28-2020 15:21:15.500,Watts,100.0,Volts,230,Amps,0.4,PF,1,Mark,x\n"
        "Time,12-28-2020 15:21:14.000,Watts,900.0,Volts,230,Amps,4.0,PF,1,Mark,x\n"  # at power_begin: outside, as the checker has it
        "Time,12-28-2020 15:21:15.000,Watts,0.0,Volts,230,Amps,0.0,PF,1,Mark,x\n"  # no reading: left out, as the checker does
        "Time,12-28-2020 15:21:16.500,Watts,10.0,Volts,230,Amps,0.1,PF,1,Mark,x\n"
    )
    r = analysis.analyze(tmp_path)
    assert r.average_watts == pytest.approx(200.0) and r.samples_in_window == 2
    assert r.samples_per_joule == pytest.approx(3.0)


def test_missing_client_is_one_line_error(tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(client.ENV_CLIENT, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="power_client not found") as err:
        run_power(RunConfig(sut="null", results_dir=tmp_path, power_server=server))
    assert "\n" not in str(err.value)


def test_unreachable_server_is_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(client.ENV_CLIENT, str(FAKE_CLIENT))
    with pytest.raises(UserError, match=r"power server 127\.0\.0\.1:\d+ does not answer") as err:
        run_power(RunConfig(sut="null", results_dir=tmp_path, power_server=f"127.0.0.1:{closed_port()}"))
    assert "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())  # nothing ran


def test_performance_command_is_the_run_command(tmp_path: Path) -> None:
    cfg = RunConfig(
        sut="r282_z93_q1",
        model="bert-99",
        scenario="Offline",
        batch_size=4096,
        target_qps=300.0,
        sdk="1.5.9",
        weights="tiny",
        batching="padded",
        sample_count=40,
        dataset=tmp_path / "dev.json",
        settings={"min_duration": "1000"},
    )
    argv = performance_command(cfg, tmp_path)
    text = " ".join(argv)
    assert "packed_bert.cli run --sut r282_z93_q1 --model bert-99 --scenario offline --mode performance" in text
    assert f"--results-dir {tmp_path}" in text and "--batch-size 4096" in text and "--target-qps 300.0" in text
    # every flag is one `packed-bert run` takes, and it gives back the same run
    parser = build_parser()
    again = config_from_args(parser.parse_args(argv[3:]))
    for name in (
        "sut",
        "model",
        "scenario",
        "mode",
        "batch_size",
        "target_qps",
        "sdk",
        "weights",
        "batching",
        "sample_count",
        "dataset",
        "execution",
        "settings",
    ):
        want = "performance" if name == "mode" else getattr(cfg, name)
        assert getattr(again, name) == want, name
    assert again.results_dir == tmp_path


def test_rapl_meter_reads_counters_and_wraps(tmp_path: Path) -> None:
    dom = tmp_path / "intel-rapl:0"
    dom.mkdir()
    (dom / "name").write_text("package-0\n")
    (dom / "max_energy_range_uj").write_text("1000000\n")
    (dom / "energy_uj").write_text("900000\n")
    (tmp_path / "intel-rapl:0:0").mkdir()  # a sub-domain: not counted twice
    (tmp_path / "intel-rapl:0:0" / "energy_uj").write_text("5\n")
    m = meter.RaplMeter(str(tmp_path))
    assert m.source == "RAPL (package-0)"
    (dom / "energy_uj").write_text("100000\n")  # wrapped: +200,000 uJ
    assert m.energy_j() == pytest.approx(0.2)


def test_no_meter_is_said_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(meter, "detect", lambda *a: None)
    with pytest.raises(UserError, match="no meter on this machine"):
        run_power(RunConfig(sut="null", results_dir=tmp_path), launch=StubLauncher())


def test_unofficial_meter_labels_its_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dom = tmp_path / "rapl" / "intel-rapl:0"
    dom.mkdir(parents=True)
    (dom / "energy_uj").write_text("0\n")
    m = meter.RaplMeter(str(tmp_path / "rapl"))

    class Runner(StubLauncher):
        def __call__(self, cfg: RunConfig) -> Path:
            run_dir = super().__call__(cfg)
            (dom / "energy_uj").write_text("30000000\n")  # 30 J during the run
            return run_dir

    monkeypatch.setattr(meter, "detect", lambda *a: m)
    assert run_power(RunConfig(sut="null", results_dir=tmp_path / "res"), launch=Runner()) == 0
    rec = json.loads(next((tmp_path / "res").glob("*/power_unofficial.json")).read_text())
    assert rec["official"] is False and rec["joules"] == pytest.approx(30.0) and rec["source"].startswith("RAPL")
    assert "unofficial power (RAPL" in capsys.readouterr().out
    assert os.environ.get("PATH")


def test_a_report_names_the_analyzer_and_says_simulated_only_when_it_is(tmp_path: Path) -> None:
    from packed_bert.power.analysis import PowerResult
    from packed_bert.power.report import analyzer_identity, write_power_report

    power = tmp_path / "power"
    power.mkdir()
    reply = "YokogawaWT310E,version=1.11.1-abc,serial C2PH1"
    (power / "server.json").write_text(json.dumps({"ptd_messages": [{"cmd": "Identify", "reply": reply}]}))
    identity = analyzer_identity(power)
    assert identity == reply and analyzer_identity(tmp_path) is None  # no server.json there
    result = PowerResult(312.5, 600, 600.2, 50.0, 0.16, "12-06-2026 01:00:00.000", "12-06-2026 01:10:00.200")
    report = write_power_report(tmp_path, "cpu bert-99 Offline", result, identity, True).read_text()
    assert "SIMULATED" not in report and f"analyzer: {reply}" in report and "**312.5 W** average over 600.2 s" in report
    assert "power.png" not in report  # no spl.txt: no plot


def test_singlestreams_power_metric_is_millijoules_a_query_as_the_checker_computes_it(tmp_path: Path) -> None:
    (tmp_path / "mlperf_log_detail.txt").write_text(
        ':::MLLOG {"key": "power_begin", "value": "12-28-2020 15:21:14.000"}\n'
        ':::MLLOG {"key": "power_end", "value": "12-28-2020 15:21:24.000"}\n'
        ':::MLLOG {"key": "result_query_count", "value": 400}\n'
    )
    (tmp_path / "mlperf_log_summary.txt").write_text(
        "Scenario : SingleStream\n90th percentile latency (ns) : 30000000\nResult is : VALID\n"
    )
    (tmp_path / "spl.txt").write_text(
        "".join(f"Time,12-28-2020 15:21:{s}.500,Watts,150.0,Volts,230,Amps,0.7,PF,1,Mark,x\n" for s in range(14, 24))
    )
    r = analysis.analyze(tmp_path)
    assert r.average_watts == pytest.approx(150.0) and r.samples_in_window == 10
    assert r.millijoules_per_query == pytest.approx(150.0 * 10 * 1000 / 400)  # 3,750 mJ a query
    assert r.samples_per_joule == pytest.approx(1000 / 3750) and r.samples_per_second is None
