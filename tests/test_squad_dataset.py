"""Finding the dataset and vocab: flag, environment, cache, download with checksum."""

import hashlib
from pathlib import Path

import pytest

from packed_bert.cache import cache_dir
from packed_bert.errors import UserError
from packed_bert.squad import dataset
from packed_bert.squad.dataset import BERT_VOCAB, SQUAD_DEV, Remote


def fake_remote(tmp_path: Path, body: bytes, sha: str | None = None) -> Remote:
    src = tmp_path / "remote.bin"
    src.write_bytes(body)
    return Remote(
        what="test file",
        url=src.as_uri(),
        sha256=sha or hashlib.sha256(body).hexdigest(),
        env="PACKED_BERT_TEST_FILE",
        cache_name="test-file.bin",
        flag="--file",
    )


def test_flag_beats_env_beats_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = fake_remote(tmp_path, b"remote")
    flag, env = tmp_path / "flag.bin", tmp_path / "env.bin"
    flag.write_bytes(b"flag")
    env.write_bytes(b"env")
    cached = cache_dir() / "data" / remote.cache_name
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"cache")
    monkeypatch.setenv(remote.env, str(env))
    assert dataset.locate(remote, flag) == flag
    assert dataset.locate(remote) == env
    monkeypatch.delenv(remote.env)
    assert dataset.locate(remote) == cached
    cached.unlink()


def test_download_into_cache_from_file_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = fake_remote(tmp_path, b"the file")
    monkeypatch.delenv(remote.env, raising=False)
    got = dataset.locate(remote)
    assert got == cache_dir() / "data" / remote.cache_name
    assert got.read_bytes() == b"the file"
    got.unlink()


def test_checksum_mismatch_is_refused_and_nothing_cached(tmp_path: Path) -> None:
    remote = fake_remote(tmp_path, b"tampered", sha="0" * 64)
    with pytest.raises(UserError, match="sha256 .* is not the expected 0000"):
        dataset.locate(remote)
    assert not (cache_dir() / "data" / remote.cache_name).exists()


def test_failed_download_keeps_previous_file_and_says_how_to_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(url: str) -> bytes:
        raise OSError("network unreachable")

    monkeypatch.setattr(dataset, "fetch", offline)
    monkeypatch.delenv(SQUAD_DEV.env, raising=False)
    with pytest.raises(UserError, match="download of the SQuAD dev set failed.*--dataset PATH"):
        dataset.locate(SQUAD_DEV)
    previous = cache_dir() / "data" / BERT_VOCAB.cache_name
    previous.parent.mkdir(parents=True, exist_ok=True)
    previous.write_bytes(b"kept")
    monkeypatch.delenv(BERT_VOCAB.env, raising=False)
    assert dataset.locate(BERT_VOCAB).read_bytes() == b"kept"
    previous.unlink()


def test_missing_flag_or_env_path_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="not found; pass --dataset"):
        dataset.locate(SQUAD_DEV, tmp_path / "none.json")
    monkeypatch.setenv(BERT_VOCAB.env, str(tmp_path / "none.txt"))
    with pytest.raises(UserError, match="none.txt: BERT uncased vocab not found"):
        dataset.locate(BERT_VOCAB)


def test_official_checksums_match_shared_copies(shared_data: Path) -> None:
    assert dataset.file_sha256(shared_data / "squad" / "dev-v1.1.json") == SQUAD_DEV.sha256
    assert dataset.file_sha256(shared_data / "vocab" / "bert-uncased-vocab.txt") == BERT_VOCAB.sha256


def test_doc_words_split_like_the_reference() -> None:
    text = " a\u202fb\u00a0c\td\r\ne  f "
    assert dataset.split_doc_words(text) == ["a", "b\u00a0c", "d", "e", "f"]
