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
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{source}: not a usable BERT config ({exc}); give a Hugging Face BERT config.json") from None


def read_hf_weights(path: Path) -> dict[str, torch.Tensor]:
    safetensors_file = path / "model.safetensors"
    bin_file = path / "pytorch_model.bin"
    if safetensors_file.is_file():
        from safetensors.torch import load_file

        return load_file(str(safetensors_file))
    if bin_file.is_file():
        state = torch.load(bin_file, map_location="cpu", weights_only=True)
        return dict(state)
    raise UserError(f"{path}: has config.json but neither model.safetensors nor pytorch_model.bin; add the weights")


def load_hf_dir(path: Path, seed: int = 0, config: BertConfig | None = None) -> PackedBertForQA:
    """A Hugging Face BERT directory (BertForQuestionAnswering, or BertModel + random QA head)."""
    cfg = config or config_from_hf(path)
    state = clean_state_dict(read_hf_weights(path))
    return model_from_state_dict(state, cfg, str(path), seed)
