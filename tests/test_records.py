"""Records are true: what a run's files say is what LoadGen was told and what the run used."""

import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from helpers.fakes import synthetic_features

from packed_bert.errors import UserError
from packed_bert.harness.benchmark import run_benchmark
from packed_bert.harness.config import RunConfig
from packed_bert.model.weights import load_model
from packed_bert.progress import Progress
from packed_bert.squad.features import load_features


def test_a_target_set_through_setting_is_the_one_recorded(tmp_path: Path) -> None:
    cfg = RunConfig(
        sut="null", results_dir=tmp_path, settings={"target_qps": "300", "min_duration": "200"}, sample_count=50
    )
    res = run_benchmark(cfg, features=synthetic_features(50), quiet=True)
    settings = json.loads((res.run_dir / "settings.json").read_text())
    assert settings["offline_expected_qps"] == 300.0
    assert settings["harness"]["target_qps"] == 300.0 and res.summary["target_qps"] == 300.0
    assert "target QPS 300" in (res.run_dir / "report.md").read_text()


def test_progress_never_passes_100_percent_of_an_estimate() -> None:
    p = Progress(100, "Server performance", stream=io.StringIO(), enabled=False)
    p.update(150)
    assert "99.9%" in p.line() and "150/~100" in p.line()
    assert "100.0%" in p.line(final=True) and "150/150" in p.line(final=True)


def test_time_left_goes_by_work_where_items_weigh_differently() -> None:
    """An Offline run's longest samples go first: 10 of 100 samples done in 10 s, but half the
    tokens, leaves 10 s, not 90 s."""
    p = Progress(100, "Offline performance", stream=io.StringIO(), enabled=False)
    p.update(10)
    assert "left 01:30" in p.line(now=p._start + 10)  # by count
    p.add_work(1000.0)
    p.update(0, work=500.0)
    assert "10/100" in p.line(now=p._start + 10) and "left 00:10" in p.line(now=p._start + 10)
    assert "( 50.0% of the work)" in p.line(now=p._start + 10)  # as the time left counts, not 10%
    p.update(90, work=500.0)
    assert "100/100 samples (100.0% of the work)" in p.line(now=p._start + 20, final=True)


def test_a_run_that_ends_by_time_counts_down_the_time() -> None:
    """LoadGen's SingleStream ends once min_duration and min_query_count are both met: 100 of a
    1,024-query minimum in 10 s of a 600 s run leaves 590 s and about 6,000 samples."""
    p = Progress(1024, "SingleStream performance", stream=io.StringIO(), enabled=False, min_seconds=600.0)
    p.update(100)
    line = p.line(now=p._start + 10)
    assert "100/~6000" in line and "left 09:50" in line and "(  1.7%)" in line
    p.update(900)  # past min_duration, short of the query count: 24 more at 1,000 in 700 s
    assert "left 00:17" in p.line(now=p._start + 700)
    p.update(5000)
    assert "6000/6000" in p.line(now=p._start + 720, final=True) and "100.0%" in p.line(now=p._start + 720, final=True)


def test_a_dataset_that_is_not_the_official_one_is_warned_about_and_recorded(
    squad_paths: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = json.loads(squad_paths[0].read_text())
    data["data"] = data["data"][:1]  # one article: a different file
    small = tmp_path / "one-article.json"
    small.write_text(json.dumps(data))
    features = load_features(small, squad_paths[1])
    assert features.provenance is not None and not features.provenance.dataset_official
    assert features.provenance.vocab_official
    res = run_benchmark(
        RunConfig(sut="null", results_dir=tmp_path / "res", settings={"min_duration": "100"}),
        features=features,
        quiet=True,
    )
    err = capsys.readouterr().err
    assert "WARNING" in err and str(small) in err and "not MLPerf results" in err
    system = json.loads((res.run_dir / "system.json").read_text())
    assert system["data"]["dataset_official"] is False and len(system["data"]["dataset_sha256"]) == 64
    assert res.summary["official_data"] is False


def _hf_dir(tmp_path: Path) -> Path:
    src = Path(__file__).resolve().parents[2] / "shared" / "data" / "models" / "minilm-l6-squad"
    if not src.is_dir():
        pytest.skip(f"needs the trained checkpoint at {src}")
    out = tmp_path / "hf"
    shutil.copytree(src, out)
    return out


@pytest.mark.parametrize(
    "damage", ["truncated-safetensors", "junk-safetensors", "config-not-object", "truncated-bin", "pickled-code-bin"]
)
def test_damaged_hugging_face_directories_are_one_line_errors(tmp_path: Path, damage: str) -> None:
    hf = _hf_dir(tmp_path)
    weights = hf / "model.safetensors"
    if damage == "truncated-safetensors":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "junk-safetensors":
        weights.write_bytes(b"\x00" * 64)
    elif damage == "config-not-object":
        (hf / "config.json").write_text("[1, 2, 3]")
    else:
        weights.unlink()
        buf = io.BytesIO()
        torch.save({"w": torch.zeros(2)}, buf)
        data = buf.getvalue()
        if damage == "truncated-bin":
            data = data[: len(data) // 2]
        else:  # a pickle that would run code if loaded without weights_only
            import pickle

            data = pickle.dumps(_Evil())
        (hf / "pytorch_model.bin").write_bytes(data)
    with pytest.raises(UserError) as err:
        load_model(str(hf))
    text = str(err.value)
    assert "\n" not in text and str(hf) in text
    assert "weights_only=False" not in text


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))
