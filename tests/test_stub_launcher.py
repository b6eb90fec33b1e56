"""The harness stand-in (``helpers.stub_launcher``) writes genuine LoadGen logs."""

from pathlib import Path

from helpers.stub_launcher import N_SAMPLES, StubLauncher

from packed_bert.harness.config import RunConfig
from packed_bert.results.loadgen_logs import read_accuracy_log, read_summary
from packed_bert.terms import Mode


def test_stub_runs_genuine_loadgen_logs(tmp_path: Path) -> None:
    run = StubLauncher()
    cfg = RunConfig(sut="null", results_dir=tmp_path)
    perf = run(cfg)
    s = read_summary(perf / "mlperf_log_summary.txt")
    assert s.scenario == "Offline" and s.valid is True and s.score and s.score > 0
    acc = run(RunConfig(sut="null", mode=Mode.ACCURACY, results_dir=tmp_path))
    assert len(read_accuracy_log(acc / "mlperf_log_accuracy.json")) == N_SAMPLES
