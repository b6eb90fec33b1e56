"""Where packed-bert keeps what it can rebuild: features, exported models, downloads."""

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from packed_bert.errors import UserError


def cache_dir() -> Path:
    """The user cache: ``$PACKED_BERT_CACHE``, else ``$XDG_CACHE_HOME/packed-bert``, else ~/.cache."""
    explicit = os.environ.get("PACKED_BERT_CACHE")
    if explicit:
        root = Path(explicit)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "packed-bert"
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` for a writer; it becomes ``path`` only when the block
    ends without error, so a reader never sees a half-written file (a failed write leaves
    ``path`` as it was)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader never sees a half-written file."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def check_out_file(path: Path, flag: str) -> None:
    """A file about to be written: not a directory, and its folder exists and is writable."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path}: is a directory; give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UserError(f"{flag} {path}: folder {folder} does not exist; create it or choose another")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{flag} {path}: folder {folder} is not writable; choose another")
