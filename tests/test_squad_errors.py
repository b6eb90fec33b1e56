"""Bad input: one line on stderr naming the file and the problem, exit status 2."""

import json
from pathlib import Path

import numpy as np
import pytest

from packed_bert import cli


@pytest.fixture(scope="module")
def paths(shared_data: Path) -> tuple[Path, Path]:
    return shared_data / "squad" / "dev-v1.1.json", shared_data / "vocab" / "bert-uncased-vocab.txt"


def one_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    return err


def log_with(tmp_path: Path, entries: list[dict[str, object]]) -> Path:
    path = tmp_path / "mlperf_log_accuracy.json"
    path.write_text(json.dumps(entries))
    return path


def entry(qsl_idx: int, data: str) -> dict[str, object]:
    return {"seq_id": 0, "qsl_idx": qsl_idx, "data": data, "token_count": 0}


GOOD = np.zeros((384, 2), dtype=np.float32).tobytes().hex().upper()


def test_missing_dataset(paths: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.json"
    err = one_error(
        ["preprocess", "--dataset", str(missing), "--vocab", str(paths[1]), "--out", str(tmp_path / "o.npz")], capsys
    )
    assert str(missing) in err and "not found" in err


def test_non_json_dataset(paths: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "dev.json"
    bad.write_text("<html>not json</html>")
    err = one_error(
        ["preprocess", "--dataset", str(bad), "--vocab", str(paths[1]), "--out", str(tmp_path / "o.npz")], capsys
    )
    assert str(bad) in err and "not JSON" in err


@pytest.mark.parametrize(
    "content", [{"version": "1.1"}, {"data": [{"title": "x"}]}, {"data": [{"paragraphs": [{"context": "c"}]}]}, [1, 2]]
)
def test_dataset_of_wrong_shape(
    content: object, paths: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "dev.json"
    bad.write_text(json.dumps(content))
    err = one_error(
        ["preprocess", "--dataset", str(bad), "--vocab", str(paths[1]), "--out", str(tmp_path / "o.npz")], capsys
    )
    assert str(bad) in err and "not a SQuAD v1.1 file" in err


@pytest.mark.parametrize("kind", ["no-cls", "small"])
def test_not_a_bert_vocab(
    kind: str, paths: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = paths[1].read_text().splitlines()
    lines = [t for t in lines if t != "[CLS]"] + ["extra"] if kind == "no-cls" else lines[:1000]
    bad = tmp_path / "vocab.txt"
    bad.write_text("\n".join(lines) + "\n")
    err = one_error(
        ["preprocess", "--dataset", str(paths[0]), "--vocab", str(bad), "--out", str(tmp_path / "o.npz")], capsys
    )
    assert str(bad) in err and "not a BERT uncased vocab" in err
    assert ("[CLS]" in err) if kind == "no-cls" else ("1000 tokens" in err)


@pytest.mark.parametrize(
    ("entries", "needle"),
    [
        ([entry(0, "XYZ")], "bad hex"),
        ([entry(0, "00" * 6)], "not whole float32 values"),
        ([entry(0, "00" * 12)], "holds 3 values"),
        ([entry(0, "00" * 4 * 2 * 385)], "holds 770 values"),
        ([entry(10833, GOOD)], "qsl_idx 10833 is not a feature"),
        ([{"seq_id": 0}], "no valid qsl_idx/data"),
        ([{"seq_id": 0, "qsl_idx": True, "data": GOOD}], "no valid qsl_idx/data"),
    ],
)
def test_bad_accuracy_logs(
    entries: list[dict[str, object]],
    needle: str,
    paths: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = log_with(tmp_path, entries)
    err = one_error(["accuracy", "--log", str(log), "--dataset", str(paths[0]), "--vocab", str(paths[1])], capsys)
    assert str(log) in err and needle in err


def test_accuracy_log_not_json_or_missing(
    paths: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "log.json"
    log.write_text("[{")
    err = one_error(["accuracy", "--log", str(log), "--dataset", str(paths[0]), "--vocab", str(paths[1])], capsys)
    assert str(log) in err and "not a LoadGen accuracy log" in err
    gone = tmp_path / "gone.json"
    err = one_error(["accuracy", "--log", str(gone), "--dataset", str(paths[0]), "--vocab", str(paths[1])], capsys)
    assert str(gone) in err and "no LoadGen accuracy log there" in err
