import signal
import subprocess
import sys
import time
from pathlib import Path


def test_ctrl_c_stops_cleanly_and_keeps_earlier_results(shared_data: Path, tmp_path: Path) -> None:
    earlier = tmp_path / "20200101-000000-null-bert-99-server-performance"
    earlier.mkdir()
    (earlier / "summary.json").write_text("{}")
    cmd = [sys.executable, "-m", "packed_bert.cli", "run", "--sut", "null", "--scenario", "server",
           "--target-qps", "500", "--setting", "min_duration=60000", "--results-dir", str(tmp_path),
           "--dataset", str(shared_data / "squad" / "dev-v1.1.json"),
           "--vocab", str(shared_data / "vocab" / "bert-uncased-vocab.txt")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(p.name.startswith(".") for p in tmp_path.iterdir()):
        time.sleep(0.2)  # wait until the run has its working directory
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, out
    assert "Segmentation" not in out and "Traceback" not in out
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0] == earlier.name and (earlier / "summary.json").read_text() == "{}"
    assert len(names) == 2 and names[1].endswith("server-performance.incomplete")
