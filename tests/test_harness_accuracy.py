import json
from pathlib import Path

import pytest

from packed_bert import cli


def test_accuracy_run_end_to_end_tiny_model(shared_data: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--sut=cpu", "--model=bert-99", "--mode=accuracy", "--scenario=offline",
            "--weights=tiny", "--count=12", f"--results-dir={tmp_path}",
            f"--dataset={shared_data / 'squad' / 'dev-v1.1.json'}",
            f"--vocab={shared_data / 'vocab' / 'bert-uncased-vocab.txt'}"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    run_dir = Path(summary["run_dir"])
    last = (run_dir / "accuracy.txt").read_text().strip().splitlines()[-1]
    scores = json.loads(last)
    assert set(scores) == {"exact_match", "f1"}
    assert summary["f1"] == pytest.approx(scores["f1"])
    # tiny random weights cannot answer SQuAD: the run must say FAIL against bert-99's target
    assert summary["accuracy"] == "FAIL" and summary["accuracy_target_f1"] == 89.965
    assert any("FAIL (target F1 89.965)" in line for line in out)
    entries = json.loads((run_dir / "mlperf_log_accuracy.json").read_text())
    assert sorted(e["qsl_idx"] for e in entries) == list(range(12))
    assert (run_dir / "report.md").is_file() and (run_dir / "system.json").is_file()
