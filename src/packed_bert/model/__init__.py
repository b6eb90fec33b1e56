"""BERT for question answering over packed rows, its configurations and weight import."""

from packed_bert.model.bert import PackedBertForQA
from packed_bert.model.config import BERT_LARGE, BERT_TINY, BertConfig

__all__ = ["BERT_LARGE", "BERT_TINY", "BertConfig", "PackedBertForQA"]
