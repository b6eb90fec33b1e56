"""BERT with a question-answering head that runs packed rows and unpadded token streams.

Parameter names are those of Hugging Face ``BertForQuestionAnswering`` (``bert.embeddings...``,
``bert.encoder.layer.N...``, ``qa_outputs``), so its checkpoints load with ``load_state_dict``.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from packed_bert.model.attention import AttentionCore, masked_core, matmul_attention, sequence_core, varlen_core
from packed_bert.model.config import BertConfig
from packed_bert.model.mask import block_diagonal_mask

MASKED = -10000.0  # added to the scores of keys outside a token's sequence (exp underflows to 0)


class BertEmbeddings(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden)
        self.position_embeddings = nn.Embedding(config.max_position, config.hidden)
        self.token_type_embeddings = nn.Embedding(config.type_vocab, config.hidden)
        self.LayerNorm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, segment_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        summed = (
            self.word_embeddings(input_ids.long())
            + self.position_embeddings(position_ids.long())
            + self.token_type_embeddings(segment_ids.long())
        )
        return self.LayerNorm(summed)


class BertSelfAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.heads = config.heads
        self.head_dim = config.head_dim
        self.query = nn.Linear(config.hidden, config.hidden)
        self.key = nn.Linear(config.hidden, config.hidden)
        self.value = nn.Linear(config.hidden, config.hidden)
        # a runtime may set one module computing Q|K|V at once ([..., 3 * hidden]); None: three
        self.qkv: nn.Module | None = None

    def forward(self, hidden: torch.Tensor, core: AttentionCore) -> torch.Tensor:
        shape = (*hidden.shape[:-1], self.heads, self.head_dim)
        if self.qkv is not None:
            q, k, v = (t.reshape(shape) for t in self.qkv(hidden).chunk(3, dim=-1))
        else:
            q = self.query(hidden).view(shape)
            k = self.key(hidden).view(shape)
            v = self.value(hidden).view(shape)
        return core(q, k, v).reshape(hidden.shape)


class BertSelfOutput(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden, config.hidden)
        self.LayerNorm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)

    def forward(self, context: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(context) + residual)


class BertAttention(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(self, hidden: torch.Tensor, core: AttentionCore) -> torch.Tensor:
        return self.output(self.self(hidden, core), hidden)


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden, config.intermediate)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(hidden))  # exact (erf) GELU, as BERT


class BertOutput(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.intermediate, config.hidden)
        self.LayerNorm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)

    def forward(self, intermediate: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(intermediate) + residual)


class BertLayer(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(self, hidden: torch.Tensor, core: AttentionCore) -> torch.Tensor:
        attended = self.attention(hidden, core)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(nn.Module):
    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(config) for _ in range(config.layers))

    def forward(self, hidden: torch.Tensor, core: AttentionCore) -> torch.Tensor:
        for layer in self.layer:
            hidden = layer(hidden, core)
        return hidden


class BertModel(nn.Module):
    """The encoder without a pooler (as in ``BertForQuestionAnswering``)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        segment_ids: torch.Tensor,
        position_ids: torch.Tensor,
        core: AttentionCore,
    ) -> torch.Tensor:
        return self.encoder(self.embeddings(input_ids, segment_ids, position_ids), core)


class PackedBertForQA(nn.Module):
    """BERT + Linear(hidden, 2) start/end logits, for packed rows or unpadded streams."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.qa_outputs = nn.Linear(config.hidden, 2)
        # packed rows: "sdpa" = one fused kernel over the rows with a block-diagonal mask;
        # "sequence" = each sequence alone, whose results do not depend on the batch
        # (``attention.sequence_core``); "sequence-matmul" = the same with two plain matmuls per
        # sequence instead of the SDPA kernel (``attention.matmul_attention``); a runtime may set a
        # function of (seq_lens, row length) that returns its own core
        self.attention: str | Callable[[torch.Tensor, int], AttentionCore] = "sdpa"

    def forward(
        self,
        input_ids: torch.Tensor,
        segment_ids: torch.Tensor,
        position_ids: torch.Tensor,
        seq_lens: torch.Tensor,
    ) -> torch.Tensor:
        """Packed rows [R, L] with per-row lengths [R, K] -> logits [R, L, 2].

        Each token attends only to the tokens of its own sequence; logits of padding tokens
        are meaningless.
        """
        if callable(self.attention):
            core = self.attention(seq_lens, input_ids.shape[1])
        elif self.attention in ("sequence", "sequence-matmul"):
            core = sequence_core(seq_lens, matmul_attention if self.attention == "sequence-matmul" else None)
        else:
            mask = block_diagonal_mask(seq_lens, input_ids.shape[1])
            # An additive mask made once, not a boolean one: exported to ONNX, a boolean SDPA mask
            # becomes Where + IsNaN on every layer's [R, heads, L, L] scores (14% of int8 time).
            dtype = self.bert.embeddings.word_embeddings.weight.dtype
            bias = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, MASKED)
            core = masked_core(bias)
        hidden = self.bert(input_ids, segment_ids, position_ids, core)
        return self.qa_outputs(hidden)

    def forward_varlen(
        self,
        input_ids: torch.Tensor,
        segment_ids: torch.Tensor,
        position_ids: torch.Tensor,
        cu_seqlens: torch.Tensor,
        max_seqlen: int,
        method: str = "auto",
    ) -> torch.Tensor:
        """Unpadded stream [T] with offsets ``cu_seqlens`` [S + 1] -> logits [T, 2]."""
        core = varlen_core(cu_seqlens, int(max_seqlen), method)
        hidden = self.bert(input_ids, segment_ids, position_ids, core)
        return self.qa_outputs(hidden)
