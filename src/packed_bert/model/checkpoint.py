"""State dicts with Hugging Face BERT names: cleaning, shape inference, strict loading."""

import re
import warnings
from collections.abc import Mapping

import numpy as np
import torch

from packed_bert.errors import UserError
from packed_bert.model.bert import PackedBertForQA
from packed_bert.model.config import BertConfig
from packed_bert.model.init import INIT_STD, empty_model

HEAD_DIM = 64  # BERT's head size, used when a checkpoint does not say how many heads it has
QA_HEAD = ("qa_outputs.weight", "qa_outputs.bias")
_IGNORED = re.compile(r"(^|\.)position_ids$|^bert\.pooler\.|^cls\.")
_LAYER = re.compile(r"^bert\.encoder\.layer\.(\d+)\.")

TensorLike = torch.Tensor | np.ndarray


def _strip(name: str) -> str:
    """Map a parameter name onto HF ``BertForQuestionAnswering`` naming."""
    while name.startswith("module."):
        name = name[len("module.") :]
    for anchor in ("bert.", "embeddings.", "encoder.", "pooler.", "qa_outputs."):
        at = name.find(anchor)
        if at == 0 or (at > 0 and name[at - 1] == "."):
            name = name[at:]
            break
    if name.startswith(("embeddings.", "encoder.", "pooler.")):
        name = "bert." + name
    return name


def clean_state_dict(state: Mapping[str, TensorLike]) -> dict[str, torch.Tensor]:
    """Drop ``module.``/wrapper prefixes, buffers and heads that are not ours; float32 tensors."""
    out: dict[str, torch.Tensor] = {}
    for raw, value in state.items():
        name = _strip(raw)
        if _IGNORED.search(name):
            continue
        tensor = torch.from_numpy(np.array(value, copy=True)) if isinstance(value, np.ndarray) else value
        if not isinstance(tensor, torch.Tensor):
            continue
        out[name] = tensor.detach().to(torch.float32)
    return out


def infer_config(state: Mapping[str, torch.Tensor], source: str, heads: int | None = None) -> BertConfig:
    """BertConfig from tensor shapes (heads: given, else hidden / 64)."""
    try:
        vocab, hidden = state["bert.embeddings.word_embeddings.weight"].shape
        max_position = state["bert.embeddings.position_embeddings.weight"].shape[0]
        type_vocab = state["bert.embeddings.token_type_embeddings.weight"].shape[0]
        intermediate = state["bert.encoder.layer.0.intermediate.dense.weight"].shape[0]
    except KeyError as exc:
        raise UserError(
            f"{source}: not a BERT checkpoint (no tensor {exc.args[0]}); "
            "give a BertForQuestionAnswering or BertModel checkpoint"
        ) from None
    layers = 1 + max(int(m.group(1)) for k in state if (m := _LAYER.match(k)))
    n_heads = heads if heads is not None else max(1, int(hidden) // HEAD_DIM)
    try:
        return BertConfig(
            vocab_size=int(vocab),
            hidden=int(hidden),
            layers=layers,
            heads=n_heads,
            intermediate=int(intermediate),
            max_position=int(max_position),
            type_vocab=int(type_vocab),
        )
    except ValueError as exc:
        raise UserError(f"{source}: {exc}; the checkpoint's shapes are not a BERT's") from None


def _shape(t: torch.Size | tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in t) + "]"


def model_from_state_dict(
    state: Mapping[str, torch.Tensor],
    config: BertConfig,
    source: str,
    seed: int = 0,
) -> PackedBertForQA:
    """Load a cleaned state dict strictly; a missing QA head alone becomes a seeded random head."""
    model = empty_model(config)
    expected = model.state_dict()
    for name, tensor in state.items():
        if name in expected and tuple(tensor.shape) != tuple(expected[name].shape):
            raise UserError(
                f"{source}: tensor {name} has shape {_shape(tensor.shape)} but the model needs "
                f"{_shape(expected[name].shape)}; give a checkpoint of the same BERT size"
            )
    missing = [k for k in expected if k not in state]
    missing_body = [k for k in missing if k not in QA_HEAD]
    if missing_body:
        raise UserError(
            f"{source}: checkpoint lacks {len(missing_body)} tensors, e.g. {missing_body[0]}; "
            "give a complete BERT checkpoint"
        )
    unexpected = sorted(k for k in state if k not in expected)
    if unexpected:
        warnings.warn(
            f"{source}: ignoring {len(unexpected)} tensors the model does not use, e.g. {unexpected[0]}",
            stacklevel=2,
        )
    full = {k: v for k, v in state.items() if k in expected}
    if missing:
        generator = torch.Generator().manual_seed(seed)
        full["qa_outputs.weight"] = torch.empty(2, config.hidden).normal_(0.0, INIT_STD, generator=generator)
        full["qa_outputs.bias"] = torch.zeros(2)
        warnings.warn(
            f"{source}: no question-answering head (a BertModel checkpoint); "
            f"using a random one (seed {seed}), so its answers are meaningless",
            stacklevel=2,
        )
    model.load_state_dict(full, strict=True)
    return model.eval()
