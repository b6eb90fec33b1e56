"""``load_model(spec)``: a PackedBertForQA from ``random``, ``tiny`` or a checkpoint path.

Paths may be the MLPerf PyTorch checkpoint (``model.pytorch``: a torch-saved state dict with
Hugging Face ``BertForQuestionAnswering`` names), the MLPerf ONNX fp32 model (``model.onnx``),
a Hugging Face directory (``config.json`` + ``model.safetensors`` / ``pytorch_model.bin``) or a
bare ``.safetensors`` file.
"""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from packed_bert.errors import UserError
from packed_bert.model.bert import PackedBertForQA
from packed_bert.model.checkpoint import clean_state_dict, infer_config, model_from_state_dict
from packed_bert.model.config import BERT_LARGE, BERT_TINY, BertConfig
from packed_bert.model.import_hf import is_hf_dir, load_hf_dir
from packed_bert.model.import_onnx import read_onnx_state_dict
from packed_bert.model.init import random_model
from packed_bert.model.spec import KINDS


def _unwrap(obj: Any) -> Mapping[str, Any] | None:
    """The state dict inside a torch-saved object (plain, or under 'state_dict'/'model')."""
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "module"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                return inner
        return obj
    return None


def read_torch_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch each raise their own kinds
        raise UserError(
            f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}; packed-bert loads "
            f"tensors only, never pickled code); give {KINDS}"
        ) from None
    state = _unwrap(obj)
    if state is None:
        raise UserError(f"{path}: a PyTorch file without a state dict; give {KINDS}")
    return clean_state_dict(state)


def _sniff(path: Path) -> str:
    if path.is_dir():
        if is_hf_dir(path):
            return "hf"
        raise UserError(f"{path}: a directory without config.json; give {KINDS}")
    if not path.is_file():
        raise UserError(f"{path}: no such file or directory; give {KINDS}")
    with path.open("rb") as handle:
        head = handle.read(16)
    if path.suffix == ".onnx":
        return "onnx"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "torch"
    if path.suffix == ".safetensors" or head[8:9] == b"{":
        return "safetensors"
    if head[:1] in (b"\x08", b"\x0a", b"\x12", b"\x1a", b"\x3a", b"\x42"):  # protobuf field tags
        return "onnx"
    raise UserError(f"{path}: not a model file (unknown format); give {KINDS}")


def load_checkpoint(path: Path, seed: int = 0, config: BertConfig | None = None) -> PackedBertForQA:
    kind = _sniff(path)
    if kind == "hf":
        return load_hf_dir(path, seed, config)
    if kind == "onnx":
        state = read_onnx_state_dict(path)
    elif kind == "torch":
        state = read_torch_state_dict(path)
    else:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = clean_state_dict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"{path}: not a readable safetensors file ({exc}); give {KINDS}") from None
    cfg = config or infer_config(state, str(path))
    return model_from_state_dict(state, cfg, str(path), seed)


def load_model(spec: str | Path, seed: int = 0, config: BertConfig | None = None) -> PackedBertForQA:
    """The model named by ``spec``, in eval mode, float32 on the CPU.

    ``random``: BERT-Large shape (or ``config``) with BERT's seeded init; ``tiny``: a small
    random BERT for tests and demos; anything else is a checkpoint path (``config``, when
    given, is the shape it must have).
    """
    if spec == "random":
        return random_model(config or BERT_LARGE, seed)
    if spec == "tiny":
        return random_model(config or BERT_TINY, seed)
    return load_checkpoint(Path(spec).expanduser(), seed, config)
