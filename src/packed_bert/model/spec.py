"""What ``--weights`` may name, checked before anything loads (this module imports no torch)."""

from pathlib import Path

from packed_bert.errors import UserError

KINDS = "random, tiny, an MLPerf model.pytorch or model.onnx, or a Hugging Face BERT directory"


def check_spec(spec: str, flag: str = "--weights") -> None:
    """A one-line ``UserError`` unless ``spec`` is ``random``, ``tiny`` or an existing path."""
    if spec in ("random", "tiny"):
        return
    if not Path(spec).expanduser().exists():
        raise UserError(f"{flag} {spec}: no such file or directory; give {KINDS}")
