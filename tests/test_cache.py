"""The cache's atomic writes: a reader sees the old file or the new one, never a half."""

from pathlib import Path

import pytest

from packed_bert.cache import atomic_path, atomic_write_bytes


def test_atomic_path_replaces_only_when_the_writer_succeeds(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "model.onnx"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.onnx"]  # no temporary left
    with atomic_path(target) as tmp:
        assert tmp != target and tmp.parent == target.parent
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
