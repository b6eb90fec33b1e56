"""Hugging Face BERT directories: config.json with model.safetensors or pytorch_model.bin."""

import json
from pathlib import Path

import torch

from packed_bert.errors import UserError
from packed_bert.model.bert import PackedBertForQA
from packed_bert.model.checkpoint import clean_state_dict, model_from_state_dict
from packed_bert.model.config import BertConfig


def is_hf_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def config_from_hf(path: Path) -> BertConfig:
    """BertConfig from a Hugging Face ``config.json``."""
    source = path / "config.json"
    try:
        raw = json.loads(source.read_text())
        if not isinstance(raw, dict):
            raise TypeError("config.json is not a JSON object")
        if raw.get("model_type", "bert") != "bert":
            raise UserError(f"{source}: model_type is {raw['model_type']!r}, not 'bert'; give a BERT model")
        if raw.get("hidden_act", "gelu") != "gelu":
            raise UserError(f"{source}: hidden_act {raw['hidden_act']!r} is not supported; BERT uses 'gelu'")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise UserError(f"{source}: only absolute position embeddings are supported")
        return BertConfig(
            vocab_size=int(raw["vocab_size"]),
            hidden=int(raw["hidden_size"]),
            layers=int(raw["num_hidden_layers"]),
            heads=int(raw["num_attention_heads"]),
            intermediate=int(raw["intermediate_size"]),
            max_position=int(raw.get("max_position_embeddings", 512)),
            type_vocab=int(raw.get("type_vocab_size", 2)),
            layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
        )
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{source}: not a usable BERT config ({exc}); give a Hugging Face BERT config.json") from None


def read_hf_weights(path: Path) -> dict[str, torch.Tensor]:
    safetensors_file = path / "model.safetensors"
    bin_file = path / "pytorch_model.bin"
    if safetensors_file.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(safetensors_file))
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(
                f"{safetensors_file}: not a readable safetensors file ({_short(exc)}); "
                "replace it with the model's weights"
            ) from None
    if bin_file.is_file():
        try:
            state = torch.load(bin_file, map_location="cpu", weights_only=True)
        except Exception as exc:  # zip, pickle and torch each raise their own kinds
            raise UserError(
                f"{bin_file}: not a readable PyTorch weights file ({type(exc).__name__}); packed-bert "
                "loads tensors only, never pickled code: use model.safetensors or a plain state dict"
            ) from None
        if not isinstance(state, dict):
            raise UserError(f"{bin_file}: holds no state dict; use model.safetensors or a plain state dict")
        return dict(state)
    raise UserError(f"{path}: has config.json but neither model.safetensors nor pytorch_model.bin; add the weights")


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 120 else text[:117] + "..."


def load_hf_dir(path: Path, seed: int = 0, config: BertConfig | None = None) -> PackedBertForQA:
    """A Hugging Face BERT directory (BertForQuestionAnswering, or BertModel + random QA head)."""
    cfg = config or config_from_hf(path)
    state = clean_state_dict(read_hf_weights(path))
    return model_from_state_dict(state, cfg, str(path), seed)
