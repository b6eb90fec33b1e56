"""Accuracy-log scoring: the public oracle fixtures, a held-out seed against the slow replica,
short payloads, partial (TEST01-style) logs, other dtypes."""

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from packed_bert import cli
from packed_bert.squad import dataset, reference
from packed_bert.squad.accuracy_log import decode_payloads
from packed_bert.squad.features import SquadFeatures
from packed_bert.squad.postprocess import predict, top_indexes
from packed_bert.squad.scoring import score_accuracy_log, score_logits

N_FEATURES = 10833


def oracle_logits(shared_data: Path, s: float, k: int) -> np.ndarray:
    """The README's oracle logits [10833, 384, 2] float32 for noise ``s`` and seed ``k``."""
    lengths = np.load(shared_data / "squad" / "reference-features.npz")["lengths"]
    start_end = np.load(shared_data / "squad" / "oracle-positions.npz")["start_end"]
    rng = np.random.default_rng(k)
    out = np.empty((N_FEATURES, 384, 2), dtype=np.float32)
    for i in range(N_FEATURES):
        logits = rng.normal(0, s, size=(384, 2)).astype(np.float32)
        start, end = start_end[i]
        logits[start, 0] += 5.0
        logits[end, 1] += 5.0
        logits[lengths[i] :, :] = -10000.0
        out[i] = logits
    return out


def write_log(path: Path, entries: Iterable[tuple[int, np.ndarray]]) -> Path:
    """An MLPerf accuracy log: upper-case hex of each array's bytes."""
    log = [
        {"seq_id": n, "qsl_idx": int(q), "data": a.tobytes().hex().upper(), "token_count": 0}
        for n, (q, a) in enumerate(entries)
    ]
    path.write_text(json.dumps(log))
    return path


def run_accuracy(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[list[str], dict[str, float]]:
    assert cli.main(["accuracy", *args]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    return lines, json.loads(lines[-1])


@pytest.mark.parametrize(
    ("s", "k", "em", "f1"),
    [(2.0, 1, 39.26206244087039, 51.91852776007088), (0.5, 2, 99.68779564806054, 99.80812834908778)],
)
def test_public_oracle_fixtures(
    s: float,
    k: int,
    em: float,
    f1: float,
    squad_paths: tuple[Path, Path],
    shared_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    logits = oracle_logits(shared_data, s, k)
    log = write_log(tmp_path / "mlperf_log_accuracy.json", enumerate(logits))
    lines, got = run_accuracy(
        ["--log", str(log), "--dataset", str(squad_paths[0]), "--vocab", str(squad_paths[1])], capsys
    )
    assert list(got) == ["exact_match", "f1"]
    assert abs(got["exact_match"] - em) < 1e-9 and abs(got["f1"] - f1) < 1e-9
    assert "scored 10570 of 10570 questions" in lines[-2]


def test_short_payloads_score_like_padded(
    squad_features: SquadFeatures,
    squad_paths: tuple[Path, Path],
    shared_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    logits = oracle_logits(shared_data, 2.0, 1)
    short = ((i, logits[i, : int(n)]) for i, n in enumerate(squad_features.lengths))
    log = write_log(tmp_path / "short.json", short)
    _, got = run_accuracy(["--log", str(log), "--dataset", str(squad_paths[0]), "--vocab", str(squad_paths[1])], capsys)
    assert abs(got["exact_match"] - 39.26206244087039) < 1e-9
    assert abs(got["f1"] - 51.91852776007088) < 1e-9
    # In memory, as the harness calls it: arrays of real_length x 2.
    mem = score_logits({i: logits[i, : int(n)] for i, n in enumerate(squad_features.lengths)}, squad_features)
    assert (mem.exact_match, mem.f1) == (got["exact_match"], got["f1"])


@pytest.mark.parametrize("fraction", [1.0, 0.4])
def test_held_out_seed_matches_slow_replica(
    fraction: float, squad_features: SquadFeatures, squad_paths: tuple[Path, Path], shared_data: Path, tmp_path: Path
) -> None:
    """Seed 31, noise 1.5: first 1,200 questions' features (all, or a random 40%)."""
    vocab = dataset.read_vocab(squad_paths[1])
    examples = reference.read_examples(squad_paths[0])[:1200]
    ref_feats = reference.convert_examples(examples, vocab)
    logits = oracle_logits(shared_data, 1.5, 31)
    rng = np.random.default_rng(3)
    chosen = [i for i in range(len(ref_feats)) if rng.random() < fraction]
    log = write_log(tmp_path / "held_out.json", ((i, logits[i]) for i in chosen))
    fast = score_accuracy_log(log, squad_features)
    preds = reference.predictions(examples, ref_feats, reference.load_log(log))
    slow = reference.evaluate(examples, preds)
    assert fast.questions_scored == len(preds) == len(np.unique(squad_features.example_index[chosen]))
    assert fast.features_scored == len(chosen)
    assert abs(fast.exact_match - slow["exact_match"]) < 1e-9
    assert abs(fast.f1 - slow["f1"]) < 1e-9
    assert 20 < fast.f1 < 99  # a score that depends on the spans picked


def test_partial_log_says_how_many_it_scored(
    squad_features: SquadFeatures,
    squad_paths: tuple[Path, Path],
    shared_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    logits = oracle_logits(shared_data, 0.5, 2)
    chosen = np.random.default_rng(9).choice(N_FEATURES, 4096, replace=False)
    log = write_log(tmp_path / "test01.json", ((int(i), logits[i]) for i in chosen))
    lines, got = run_accuracy(
        ["--log", str(log), "--dataset", str(squad_paths[0]), "--vocab", str(squad_paths[1])], capsys
    )
    n = len(np.unique(squad_features.example_index[chosen]))
    assert n < 10570
    assert f"scored {n} of 10570 questions (4096 of 10833 features)" in lines[-2]
    assert got["f1"] > 95.0  # unanswered questions are not counted as wrong (that gives ~38)


def test_last_entry_for_a_qsl_idx_wins(squad_features: SquadFeatures, shared_data: Path, tmp_path: Path) -> None:
    logits = oracle_logits(shared_data, 0.5, 2)[:50]
    wrong = np.where(logits > -1000, -logits, logits)  # same shape, other answers
    good = score_accuracy_log(write_log(tmp_path / "a.json", enumerate(logits)), squad_features)
    both = [*enumerate(wrong), *enumerate(logits)]
    assert score_accuracy_log(write_log(tmp_path / "b.json", both), squad_features) == good
    flipped = [*enumerate(logits), *enumerate(wrong)]
    assert score_accuracy_log(write_log(tmp_path / "c.json", flipped), squad_features) != good


def test_float16_payloads(
    squad_features: SquadFeatures,
    squad_paths: tuple[Path, Path],
    shared_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    half = oracle_logits(shared_data, 2.0, 4)[:3000].astype(np.float16)
    log16 = write_log(tmp_path / "h.json", enumerate(half))
    log32 = write_log(tmp_path / "f.json", enumerate(half.astype(np.float32)))
    args = ["--dataset", str(squad_paths[0]), "--vocab", str(squad_paths[1])]
    _, got16 = run_accuracy(["--log", str(log16), "--dtype", "float16", *args], capsys)
    _, got32 = run_accuracy(["--log", str(log32), *args], capsys)
    assert got16 == got32
    assert score_accuracy_log(log16, squad_features, dtype="float16").as_dict() == got16


def test_no_valid_span_predicts_empty(squad_features: SquadFeatures) -> None:
    # Top starts all after the top ends: no candidate, so the reference answers "empty".
    ctx = np.flatnonzero(squad_features.token_to_orig[0] >= 0)
    assert ctx.size > 40
    logits = np.full((384, 2), -10000.0, dtype=np.float32)
    logits[ctx[-20:], 0] = 10.0
    logits[ctx[:20], 1] = 10.0
    rows = decode_payloads({0: logits}, squad_features.num_features)
    assert predict(squad_features, rows) == {0: "empty"}
    r = score_logits({0: logits}, squad_features)
    assert (r.exact_match, r.f1, r.questions_scored, r.questions_total) == (0.0, 0.0, 1, 10570)
    logits[ctx[-1], 1] = 30.0  # an end after the starts: a valid span again
    assert predict(squad_features, decode_payloads({0: logits}, squad_features.num_features))[0] != "empty"


def test_top_indexes_keep_the_reference_order_under_ties() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, size=(500, 60)).astype(np.float64)  # many ties
    x[::7] = rng.normal(size=(len(x[::7]), 60))  # and rows without
    got = top_indexes(x, 20)
    for row, idx in zip(x, got, strict=True):
        ranked = sorted(enumerate(row.tolist()), key=lambda t: t[1], reverse=True)
        assert idx.tolist() == [i for i, _ in ranked[:20]]
