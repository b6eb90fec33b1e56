"""Where packed-bert keeps what it can rebuild: features, exported models, downloads."""

import os
from pathlib import Path


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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
