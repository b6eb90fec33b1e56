"""Building a model without wasted work, and BERT's seeded random initialisation."""

import torch
from torch import nn

from packed_bert.model.bert import PackedBertForQA
from packed_bert.model.config import BertConfig

INIT_STD = 0.02  # BERT's initializer_range


def empty_model(config: BertConfig) -> PackedBertForQA:
    """A model with allocated but uninitialised CPU parameters (skips torch's default init)."""
    with torch.device("meta"):
        model = PackedBertForQA(config)
    return model.to_empty(device="cpu")


def init_module(module: nn.Module, generator: torch.Generator) -> None:
    """BERT init in place: Linear/Embedding weights N(0, 0.02), biases 0, LayerNorm 1 and 0."""
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.Linear | nn.Embedding):
                sub.weight.normal_(0.0, INIT_STD, generator=generator)
                if isinstance(sub, nn.Linear) and sub.bias is not None:
                    sub.bias.zero_()
            elif isinstance(sub, nn.LayerNorm):
                sub.weight.fill_(1.0)
                sub.bias.zero_()


def random_model(config: BertConfig, seed: int = 0) -> PackedBertForQA:
    """A model of ``config``'s shape with BERT's random init; the same seed gives the same model."""
    model = empty_model(config)
    init_module(model, torch.Generator().manual_seed(seed))
    return model.eval()
