from pathlib import Path

from packed_bert.results.run_dirs import RunDir, run_name


def test_every_run_gets_a_new_directory(tmp_path: Path) -> None:
    name = run_name("r282_z93_q1", "bert-99", "Offline", "accuracy", when=0)
    assert name.endswith("-r282_z93_q1-bert-99-offline-accuracy")
    first = RunDir(tmp_path, name)
    first.write_text("summary.json", "{}")
    a = first.finish()
    second = RunDir(tmp_path, name)
    second.write_text("summary.json", '{"second": 1}')
    b = second.finish()
    assert a != b and b.name == f"{name}-2"
    assert (a / "summary.json").read_text() == "{}"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_failed_run_is_marked_and_leaves_earlier_results(tmp_path: Path) -> None:
    name = "20240101-000000-x-bert-99-offline-performance"
    done = RunDir(tmp_path, name)
    done.write_text("mlperf_log_summary.txt", "earlier")
    done_path = done.finish()
    broken = RunDir(tmp_path, name)
    assert broken.path.name.startswith(".")  # not yet under a result name
    broken.write_text("mlperf_log_summary.txt", "partial")
    where = broken.abandon("failed: device 0 raised")
    assert where.name == f"{name}.incomplete"
    assert "device 0 raised" in (where / "INCOMPLETE.txt").read_text()
    assert (done_path / "mlperf_log_summary.txt").read_text() == "earlier"
