"""TEST01 on the cpu system with the trained checkpoint: the audit run's logged responses are
bit-for-bit the accuracy run's, so the accuracy check passes without the F1 fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.runs import last_json

from packed_bert import cli


def test_test01_responses_are_identical_on_the_cpu_default(
    shared_data: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    weights = shared_data / "models" / "minilm-l6-squad"
    if not (weights / "model.safetensors").is_file():
        pytest.skip(f"needs the trained checkpoint at {weights}")
    res = tmp_path / "results"
    common = [
        "--sut",
        "cpu",
        "--model",
        "bert-99",
        "--weights",
        str(weights),
        "--count",
        "40",
        "--results-dir",
        str(res),
        "--dataset",
        str(shared_data / "squad" / "dev-v1.1.json"),
        "--vocab",
        str(shared_data / "vocab" / "bert-uncased-vocab.txt"),
    ]
    assert cli.main(["run", "--mode", "accuracy", *common]) == 0
    acc = last_json(capfd.readouterr().out)
    # the audit run issues its own batches (other neighbours and lengths) in the default
    # (sorted) batching of the default int8 recipe
    code = cli.main(
        [
            "run",
            "--compliance",
            "TEST01",
            "--accuracy-dir",
            acc["run_dir"],
            "--target-qps",
            "60",
            "--setting",
            "min_duration=500",
            *common,
        ]
    )
    out = capfd.readouterr().out
    assert code in (0, 1), out  # the performance verdict depends on how busy the CPU is
    summary = json.loads((Path(last_json(out)["run_dir"]) / "summary.json").read_text())
    t01 = summary["tests"]["TEST01"]["accuracy"]
    assert t01["compared"] > 0 and t01["mismatched"] == 0 and t01["identical"] is True, t01
    assert t01["passed"] is True and "baseline_f1" not in t01  # no fallback, no tolerance
    assert "bit-identical" in out and "F1 delta 0.000%" in out
    verify = (Path(summary["run_dir"]) / "TEST01" / "verify_accuracy.txt").read_text()
    assert "num_perf_log_data_mismatch = 0" in verify and verify.rstrip().endswith("TEST PASS")
