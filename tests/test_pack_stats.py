"""``packed-bert pack-stats``: figures and a JSON last line."""

import json
from pathlib import Path

import numpy as np
import pytest

from packed_bert.cli import main


def test_pack_stats_json_summary(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    npz = shared_data / "squad" / "reference-features.npz"
    assert main(["pack-stats", "--lengths-npz", str(npz), "--chunk", "4096", "--shuffle", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(out[-1])
    assert summary["sequences"] == 10833
    assert summary["chunk"] == 4096
    assert summary["token_efficiency"] >= 0.965
    assert summary["speedup_over_padding"] == pytest.approx(10833 / summary["packs"])
    assert any("token efficiency" in line for line in out)


def test_pack_stats_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    npz = tmp_path / "l.npz"
    np.savez(npz, other=np.arange(3))
    assert main(["pack-stats", "--lengths-npz", str(npz)]) == 2
    assert "lengths" in capsys.readouterr().err
    assert main(["pack-stats", "--lengths-npz", str(npz), "--max-per-pack", "0"]) == 2
