"""Feature parity with the MLPerf reference fixture, caching, tokenizer agreement."""

import random
from pathlib import Path

import numpy as np
import pytest

from packed_bert import cli
from packed_bert.squad import dataset, reference
from packed_bert.squad.features import SquadFeatures, load_features
from packed_bert.squad.tokenization import (
    SlowTokenizer,
    basic_tokenize,
    basic_tokenize_exact,
    encode_texts,
    fast_tokenizer,
)


def test_all_features_equal_reference_fixture(squad_features: SquadFeatures, shared_data: Path) -> None:
    ref = np.load(shared_data / "squad" / "reference-features.npz")
    assert squad_features.num_features == 10833 and squad_features.num_examples == 10570
    for key, dtype in (("input_ids", np.uint16), ("segment_ids", np.uint8), ("lengths", np.uint16)):
        assert getattr(squad_features, key).dtype == dtype
        np.testing.assert_array_equal(getattr(squad_features, key), ref[key])
    np.testing.assert_array_equal(squad_features.example_index, ref["example_index"])
    assert squad_features.squad.qas_ids == ref["qas_id"].tolist()


def test_postprocessing_data_equals_slow_replica(squad_features: SquadFeatures, squad_paths: tuple[Path, Path]) -> None:
    vocab = dataset.read_vocab(squad_paths[1])
    examples = reference.read_examples(squad_paths[0])
    # The first 400 questions plus every question that has several windows.
    multi = np.unique(squad_features.example_index[np.diff(squad_features.example_index, prepend=-1) == 0])
    chosen = sorted(set(range(400)) | set(multi.tolist()))
    ref = reference.convert_examples([examples[e] for e in chosen], vocab)
    rows = np.flatnonzero(np.isin(squad_features.example_index, chosen))
    assert len(ref) == rows.size and len(multi) > 100
    for f, i in zip(ref, rows.tolist(), strict=True):
        assert f.tokens == squad_features.tokens(i)
        assert f.input_ids == squad_features.input_ids[i].tolist()
        t2o = {p: int(squad_features.token_to_orig[i, p]) for p in np.flatnonzero(squad_features.token_to_orig[i] >= 0)}
        assert f.token_to_orig_map == t2o
        mc = {p: bool(squad_features.max_context[i, p]) for p in t2o}
        assert f.token_is_max_context == mc
        assert examples[chosen[0]].doc_tokens is not None
        assert squad_features.doc_words(i) == examples[int(squad_features.example_index[i])].doc_tokens
    assert not squad_features.max_context[rows].all()  # some tokens lose max context to another window


def test_cache_is_reused_and_keyed_by_content(squad_paths: tuple[Path, Path], tmp_path: Path) -> None:
    from packed_bert.cache import cache_dir

    load_features(*squad_paths)
    files = sorted((cache_dir() / "features").glob("*.npz"))
    assert files
    stamp = {f: f.stat().st_mtime_ns for f in files}
    again = load_features(*squad_paths)
    assert {f: f.stat().st_mtime_ns for f in files} == stamp
    assert again.num_features == 10833
    # A changed dataset (one question fewer) is a new cache entry.
    import json

    raw = json.loads(squad_paths[0].read_text())
    raw["data"][0]["paragraphs"][0]["qas"].pop()
    small = tmp_path / "dev.json"
    small.write_text(json.dumps(raw))
    other = load_features(small, squad_paths[1])
    assert other.num_examples == 10569
    assert len(list((cache_dir() / "features").glob("*.npz"))) == len(files) + 1


def test_preprocess_command_writes_fixture_arrays(
    squad_paths: tuple[Path, Path], shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "f.npz"
    rc = cli.main(["preprocess", "--dataset", str(squad_paths[0]), "--vocab", str(squad_paths[1]), "--out", str(out)])
    assert rc == 0
    assert "10833 features" in capsys.readouterr().out
    got = np.load(out)
    ref = np.load(shared_data / "squad" / "reference-features.npz")
    for key in ("input_ids", "segment_ids", "lengths", "example_index"):
        assert got[key].dtype == ref[key].dtype and got[key].shape == ref[key].shape
        np.testing.assert_array_equal(got[key], ref[key])


def test_ascii_shortcut_equals_exact_basic_tokenizer() -> None:
    rng = random.Random(5)
    alphabet = [chr(c) for c in range(128)]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert basic_tokenize(text) == basic_tokenize_exact(text), repr(text)


def test_fast_and_slow_tokenizers_agree_on_tricky_text(squad_paths: tuple[Path, Path]) -> None:
    vocab = dataset.read_vocab(squad_paths[1])
    fast = fast_tokenizer(vocab)
    slow = SlowTokenizer(vocab)
    texts = [
        "Café naïve Ångström",
        "北京大学 is in 北京",
        "tab\there\x00nul\u200bzw\ufffd",
        "co-operate, U.S.A.! (yes)",
        "x" * 101,
        "ﬁne İstanbul ΣΊΣΥΦΟΣ",
        "«quoted» — dash…",
    ]
    routed = encode_texts(texts, vocab)
    for t, ids in zip(texts, routed, strict=True):
        assert tuple(ids) == slow.encode(t), t
    assert slow.encode("x" * 101) == (vocab["[UNK]"],)
    # Why non-ASCII text goes to the replica: Rust lower-cases a final sigma differently.
    sigma = "ΣΊΣΥΦΟΣ"
    assert tuple(fast.encode(sigma, add_special_tokens=False).ids) != slow.encode(sigma)
