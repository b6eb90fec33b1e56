"""``benchmarks/isa_replay.py``: a replay on the capturing CPU gives the captured bits, so any
difference it shows under another CPU is that CPU's arithmetic, not the replay's session."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import isa_replay  # noqa: E402


def test_a_replay_here_gives_the_captured_bits(
    shared_data: Path,
    squad_paths: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if not (shared_data / "models" / "minilm-l6-squad").is_dir():
        pytest.skip("needs the trained checkpoint minilm-l6-squad")
    monkeypatch.setenv("PACKED_BERT_SQUAD", str(squad_paths[0]))
    monkeypatch.setenv("PACKED_BERT_VOCAB", str(squad_paths[1]))
    out = tmp_path / "replay"
    assert isa_replay.main(["capture", "--features", "8", "--out", str(out)]) == 0
    assert isa_replay.main(["replay", str(out), "--name", "here"]) == 0
    native, here = np.load(out / "out_native.npz"), np.load(out / "out_here.npz")
    assert sorted(native.files) == sorted(here.files) and len(native.files) == 2  # 8 features, batches of 4
    for batch in native.files:
        assert np.array_equal(native[batch], here[batch])
    capsys.readouterr()
    assert isa_replay.main(["compare", str(out), "here"]) == 0
    assert "| here | 8 / 8 | 0 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no capture here"):
        isa_replay.main(["replay", str(tmp_path / "nothing"), "--name", "x"])
