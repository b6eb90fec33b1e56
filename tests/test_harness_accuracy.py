import json
from pathlib import Path

import pytest

from packed_bert import cli


def test_accuracy_run_end_to_end_tiny_model(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--sut=cpu",
        "--model=bert-99",
        "--mode=accuracy",
        "--scenario=offline",
        "--weights=tiny",
        "--count=12",
        f"--results-dir={tmp_path}",
        f"--dataset={shared_data / 'squad' / 'dev-v1.1.json'}",
        f"--vocab={shared_data / 'vocab' / 'bert-uncased-vocab.txt'}",
    ]
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


def test_accuracy_run_of_a_question_split(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--questions odd-articles runs and scores only those questions' features (renumbered);
    a whole-set run reports the F1 of each article split beside the official line."""
    data = [
        f"--dataset={shared_data / 'squad' / 'dev-v1.1.json'}",
        f"--vocab={shared_data / 'vocab' / 'bert-uncased-vocab.txt'}",
    ]
    common = ["run", "--sut=cpu", "--mode=accuracy", "--weights=tiny", "--count=10", f"--results-dir={tmp_path}", *data]
    assert cli.main([*common, "--questions", "odd-articles"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    run_dir = Path(summary["run_dir"])
    text = (run_dir / "accuracy.txt").read_text()
    assert "questions: the odd-numbered articles (1, 3, ..., 47) only" in text
    assert set(summary["f1_by_split"]) == {"odd-articles"}
    assert "--questions odd-articles" in (run_dir / "command.txt").read_text()
    assert json.loads((run_dir / "settings.json").read_text())["harness"]["questions"] == "odd-articles"
    from packed_bert.squad.features import load_features
    from packed_bert.squad.splits import split_features

    feats = load_features(shared_data / "squad" / "dev-v1.1.json", shared_data / "vocab" / "bert-uncased-vocab.txt")
    first_odd = split_features(feats, "odd-articles")[:10]
    assert int(feats.example_index[first_odd[0]]) > 0  # not the first questions of the file
    entries = json.loads((run_dir / "mlperf_log_accuracy.json").read_text())
    assert sorted(e["qsl_idx"] for e in entries) == list(range(10))  # the subset's own numbering

    assert cli.main(common) == 0
    whole = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    lines = (Path(whole["run_dir"]) / "accuracy.txt").read_text().splitlines()
    assert any(line.startswith("f1 on the odd-numbered articles") for line in lines)
    assert any(line.startswith("f1 on the even-numbered articles") for line in lines)
    assert set(whole["f1_by_split"]) == {"all", "odd-articles", "even-articles"}
    assert json.loads(lines[-1]).keys() == {"exact_match", "f1"}  # the official line stays last
