"""BERT for question answering over packed rows, its configurations and weight import.

The PyTorch model is imported on first use (``packed_bert.model.PackedBertForQA``), so the
torch-free parts (``model.config``, ``model.spec``) load without torch.
"""

from typing import Any

from packed_bert.model.config import BERT_LARGE, BERT_TINY, BertConfig

__all__ = ["BERT_LARGE", "BERT_TINY", "BertConfig", "PackedBertForQA"]


def __getattr__(name: str) -> Any:
    if name == "PackedBertForQA":
        from packed_bert.model.bert import PackedBertForQA

        return PackedBertForQA
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
