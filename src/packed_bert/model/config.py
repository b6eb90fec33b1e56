"""Shapes of a BERT encoder with a question-answering head."""

from dataclasses import dataclass


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden: int = 1024
    layers: int = 24
    heads: int = 16
    intermediate: int = 4096
    max_position: int = 512
    type_vocab: int = 2
    layer_norm_eps: float = 1e-12

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden", "layers", "heads", "intermediate", "max_position", "type_vocab"):
            if getattr(self, name) < 1:
                raise ValueError(f"BertConfig.{name} must be positive, got {getattr(self, name)}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden size {self.hidden} is not divisible by {self.heads} heads")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


BERT_LARGE = BertConfig()
BERT_TINY = BertConfig(hidden=64, layers=2, heads=4, intermediate=128)
