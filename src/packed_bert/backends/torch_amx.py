"""BERT's encoder on packed-bert's own AMX kernels (``amx_kernels``): the blocks both AMX recipes
share, and the bf16 recipe (torch ``bf16`` with ``kernel="amx"``; the int8 one is ``torch_int8``).

Each block's layers hand their outputs on in the form the next kernel reads: Q|K|V leave their
layer in bf16 and attention runs per sequence straight from them (``AmxSelfAttention``), writing
the attention output layer's tile input; the residual add and LayerNorm run in one kernel that
also writes the next layer's tile input (``DenseAddNorm``); the FFN input layer's GELU output goes
straight to the FFN output layer. The residual stream, LayerNorm and the QA head stay fp32.

The bf16 recipe rounds every encoder weight and every linear layer's input to bf16 (to nearest
even) and sums in fp32, as OpenVINO's and oneDNN's bf16 kernels do; where the attention kernel
takes the head dimension, the Q layer's weights and bias hold 1/sqrt(head dim) (folded in fp32,
then rounded once), as OpenVINO's per-sequence graph does. Every kernel works row by row or
sequence by sequence, so a sample's logits are the same in any batch.
"""

from __future__ import annotations

import copy
from functools import partial
from typing import Protocol

import numpy as np
import torch
from torch import nn

from packed_bert.backends.amx_kernels import (
    ATTENTION_DIMS,
    FLOAT_KINDS,
    AmxLinearWeights,
    SequenceAttention,
    add_layernorm,
    library,
    q_multiplier,
)
from packed_bert.backends.onnx_fused import site_bias, site_weight
from packed_bert.backends.torch_invariant import TiledLinear
from packed_bert.model.attention import AttentionCore, matmul_attention, sequence_core
from packed_bert.model.bert import BertSelfAttention


class AmxLayer(Protocol):
    """A linear layer module that runs on the AMX kernel (its constants in ``amx``)."""

    amx: AmxLinearWeights | None

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


class AmxLinear(nn.Module):
    """One encoder linear layer on the AMX kernel with the constants ``weights`` (their weight kind
    says how it computes), the output in ``out_dtype`` (fp32 or bf16)."""

    def __init__(self, weights: AmxLinearWeights, out_dtype: torch.dtype) -> None:
        super().__init__()
        self.amx: AmxLinearWeights | None = weights
        self.out_dtype = out_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.amx is not None
        return self.amx(x, self.out_dtype)


class AmxBf16Linear(AmxLinear):
    """One encoder linear layer in bf16: ``weight_t`` [K, N] and ``bias`` (fp32), optionally
    through GELU (erf)."""

    def __init__(
        self, weight_t: np.ndarray, bias: np.ndarray, *, gelu: bool = False, out_dtype: torch.dtype = torch.bfloat16
    ) -> None:
        super().__init__(AmxLinearWeights.bf16(weight_t, bias, gelu=gelu), out_dtype)


class AmxInt12Linear(AmxLinear):
    """One encoder linear layer with int8 weights per column whose input the kernel puts on a
    12-bit grid per row (``AmxLinearWeights.int12``): int8-bf16's kept layers with torch option
    kept=int12, on the soft-tile builds."""

    def __init__(
        self, weight_t: np.ndarray, bias: np.ndarray, *, gelu: bool = False, out_dtype: torch.dtype = torch.bfloat16
    ) -> None:
        super().__init__(AmxLinearWeights.int12(weight_t, bias, gelu=gelu), out_dtype)


class AmxInt8RowsLinear(AmxLinear):
    """One encoder linear layer with its SmoothQuant-smoothed weights in int8 per column whose input
    the kernel puts on an 8-bit grid per row (``AmxLinearWeights.int8_rows``): int8-bf16's kept
    layers with torch option kept=int8-rows."""

    def __init__(
        self,
        weight_t: np.ndarray,
        bias: np.ndarray,
        smooth: np.ndarray,
        *,
        gelu: bool = False,
        out_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        super().__init__(AmxLinearWeights.int8_rows(weight_t, bias, smooth, gelu=gelu), out_dtype)


class AmxInt8HybridLinear(AmxLinear):
    """``AmxInt8RowsLinear`` whose input its producer writes on a fixed grid up to ``bound``, the rows
    past it on their own (``AmxLinearWeights.int8_hybrid``): kept=int8-hybrid."""

    def __init__(
        self,
        weight_t: np.ndarray,
        bias: np.ndarray,
        smooth: np.ndarray,
        bound: float,
        *,
        gelu: bool = False,
        out_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        super().__init__(AmxLinearWeights.int8_hybrid(weight_t, bias, smooth, bound, gelu=gelu), out_dtype)


class DenseAddNorm(nn.Module):
    """``LayerNorm(dense(x) + residual)`` with the add and the norm in one kernel (``amx_kernels``),
    which also writes the tile input of ``feeds``, the layer that takes the result next: BERT's
    attention-output and FFN-output blocks on the AMX path."""

    def __init__(self, dense: nn.Module, norm: nn.Module) -> None:
        super().__init__()
        self.dense = dense
        self.LayerNorm = norm
        self.feeds: AmxLinearWeights | None = None

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        norm = self.LayerNorm
        assert isinstance(norm, nn.LayerNorm)
        return add_layernorm(self.dense(x), residual, norm, self.feeds)


class AmxSelfAttention(nn.Module):
    """BERT's self-attention on the AMX path: Q|K|V in one layer, then attention per sequence
    straight from its output, written as the attention output layer's tile input (``feeds``)."""

    def __init__(self, qkv: nn.Module, heads: int, head_dim: int) -> None:
        super().__init__()
        self.qkv = qkv
        self.heads, self.head_dim = heads, head_dim
        self.feeds: AmxLinearWeights | None = None

    def forward(self, hidden: torch.Tensor, core: AttentionCore) -> torch.Tensor:
        qkv = self.qkv(hidden)
        if isinstance(core, SequenceAttention):
            out = core.attend_qkv(qkv, self.heads, self.feeds)
            if out is not None:
                return out
        q, k, v = (t.reshape(*hidden.shape[:-1], self.heads, self.head_dim) for t in qkv.chunk(3, dim=-1))
        return core(q, k, v).reshape(hidden.shape)


def wire_block(
    model: nn.Module,
    name: str,
    layers: tuple[AmxLayer, AmxLayer, AmxLayer, AmxLayer],
    previous: DenseAddNorm | None,
) -> DenseAddNorm:
    """Put encoder layer ``name``'s (``...attention.self``) AMX layers (Q|K|V, attention output,
    FFN input with GELU, FFN output) in place, each kernel writing the next one's tile input;
    ``previous``, the layer before's FFN block, then feeds this Q|K|V. Returns this FFN block."""
    qkv, o_layer, gelu_layer, out_layer = layers
    assert qkv.amx is not None and o_layer.amx is not None and gelu_layer.amx is not None and out_layer.amx is not None
    module = model.get_submodule(name)
    assert isinstance(module, BertSelfAttention)
    p = name.removesuffix(".attention.self")
    attention = model.get_submodule(f"{p}.attention")
    own = AmxSelfAttention(qkv, module.heads, module.head_dim)  # type: ignore[arg-type]
    own.feeds = o_layer.amx
    setattr(attention, "self", own)  # noqa: B010
    attention_block = DenseAddNorm(o_layer, model.get_submodule(f"{p}.attention.output.LayerNorm"))  # type: ignore[arg-type]
    attention_block.feeds = gelu_layer.amx
    setattr(attention, "output", attention_block)  # noqa: B010
    setattr(model.get_submodule(p), "intermediate", gelu_layer)  # noqa: B010
    gelu_layer.amx.feed(out_layer.amx)
    if previous is not None:
        previous.feeds = qkv.amx
    block = DenseAddNorm(out_layer, model.get_submodule(f"{p}.output.LayerNorm"))  # type: ignore[arg-type]
    setattr(model.get_submodule(p), "output", block)  # noqa: B010
    return block


def fuse_encoder(model: nn.Module) -> None:
    """The wired encoder (every layer through ``wire_block``) run by one kernel call a batch."""
    from packed_bert.backends.amx_encoder import AmxEncoder

    bert = model.get_submodule("bert")
    setattr(bert, "encoder", AmxEncoder(bert.get_submodule("encoder")))  # noqa: B010


def finish_amx_model(model: nn.Module, residual: torch.dtype = torch.float32) -> None:
    """What both AMX recipes do once every layer is wired: the encoder in one kernel call, the
    embeddings and the QA head on the library's row kernels. ``residual``: the residual stream's
    dtype (the embeddings' output and every add+LayerNorm's after them): fp32, or bf16 (half the
    bytes those kernels read and write; each sum and LayerNorm still in fp32)."""
    fuse_encoder(model)
    amx_embeddings(model, residual)
    amx_qa_head(model)


def tile_qa_head(model: nn.Module) -> None:
    """The fp32 QA head on fixed row tiles: oneDNN's blocking would follow the batch's row count."""
    qa_head = model.get_submodule("qa_outputs")
    assert isinstance(qa_head, nn.Linear)
    setattr(model, "qa_outputs", TiledLinear(qa_head))  # noqa: B010


class AmxEmbeddings(nn.Module):
    """BERT's embeddings in one call of the AMX library (``pb_embeddings``): each token's word and
    position rows added, then its token type row, in the order torch adds them ((word + position) +
    type), and the sum's LayerNorm, as the add+LayerNorm kernel computes it. Torch's three lookups,
    two adds and LayerNorm cost about 0.3 ms more of a 303-token SingleStream sample."""

    def __init__(self, embeddings: nn.Module, residual: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.residual = residual  # the output's dtype: the residual stream's
        self.tables = [
            getattr(embeddings, name).weight.detach().float().contiguous()
            for name in ("word_embeddings", "position_embeddings", "token_type_embeddings")
        ]
        norm = embeddings.get_submodule("LayerNorm")
        assert isinstance(norm, nn.LayerNorm)
        self.LayerNorm = norm
        # fp32, as the kernel reads them
        self.gamma, self.beta = (t.detach().float().contiguous() for t in (norm.weight, norm.bias))

    def forward(self, input_ids: torch.Tensor, segment_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        word, position, token_type = self.tables
        ids, positions, segments = (t.reshape(-1).long().contiguous() for t in (input_ids, position_ids, segment_ids))
        out = torch.empty(ids.shape[0], word.shape[1], dtype=self.residual)
        status = library().pb_embeddings(
            word.data_ptr(), word.shape[0], ids.data_ptr(), position.data_ptr(), position.shape[0],
            positions.data_ptr(), token_type.data_ptr(), token_type.shape[0], segments.data_ptr(), ids.shape[0],
            word.shape[1], self.gamma.data_ptr(), self.beta.data_ptr(), float(self.LayerNorm.eps), out.data_ptr(),
            FLOAT_KINDS[self.residual],
        )  # fmt: skip
        if status != 0:
            raise ValueError(f"amx embeddings: a token, position or segment id past its table ({ids.shape[0]} tokens)")
        return out.reshape(*input_ids.shape, word.shape[1])


def amx_embeddings(model: nn.Module, residual: torch.dtype = torch.float32) -> None:
    """BERT's embeddings on ``AmxEmbeddings`` (writing ``residual``) where the width is whole vectors."""
    embeddings = model.get_submodule("bert.embeddings")
    word = embeddings.get_submodule("word_embeddings")
    assert isinstance(word, nn.Embedding)
    if word.embedding_dim % 16 == 0:
        setattr(model.get_submodule("bert"), "embeddings", AmxEmbeddings(embeddings, residual))  # noqa: B010


class AmxQaHead(nn.Module):
    """The fp32 QA head (start and end logits) in the AMX library's row kernel (``pb_qa_head``):
    each row's sums in one fixed order, so the same in any batch, without TiledLinear's padding
    to 512 rows (about 0.6 ms of a 303-token SingleStream sample)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight = linear.weight.detach().float().contiguous()  # [2, H]
        self.bias = linear.bias.detach().float().contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])  # fp32 or bf16, read as it is (bf16 widened in the kernel)
        flat = (flat if flat.dtype in FLOAT_KINDS else flat.float()).contiguous()
        out = torch.empty(flat.shape[0], 2)
        status = library().pb_qa_head(
            flat.data_ptr(), FLOAT_KINDS[flat.dtype], flat.shape[0], flat.shape[1], self.weight.data_ptr(),
            self.bias.data_ptr(), out.data_ptr(),
        )  # fmt: skip
        if status != 0:
            raise RuntimeError(f"amx QA head kernel: status {status} for width {flat.shape[1]}")
        return out.reshape(*x.shape[:-1], 2)


def amx_qa_head(model: nn.Module) -> None:
    """The QA head on ``AmxQaHead`` where it is BERT's (two outputs, a width of whole vectors);
    on fixed row tiles (``tile_qa_head``) otherwise."""
    qa_head = model.get_submodule("qa_outputs")
    assert isinstance(qa_head, nn.Linear)
    if qa_head.out_features == 2 and qa_head.in_features % 16 == 0:
        setattr(model, "qa_outputs", AmxQaHead(qa_head))  # noqa: B010
    else:
        tile_qa_head(model)


def amx_attention(
    seq_lens: torch.Tensor, length: int, *, q_scaled: bool = False, attention: str = "bf16"
) -> AttentionCore:
    """Attention per sequence in the AMX kernel (``amx_kernels.SequenceAttention``; ``attention``:
    its products, ``amx_kernels.ATTENTION_KINDS``), with the plain per-sequence matmuls where it
    does not apply (``q_scaled``: none may)."""
    return SequenceAttention(
        seq_lens, length, sequence_core(seq_lens, matmul_attention), q_scaled=q_scaled, attention=attention
    )


def bf16_model(model: nn.Module, residual: torch.dtype = torch.float32, attention: str = "bf16") -> nn.Module:
    """A copy of ``model`` (a ``PackedBertForQA``) whose encoder linear layers run in bf16 on the
    AMX kernel, the residual stream in ``residual`` (``finish_amx_model``). The two layers before an
    add+LayerNorm write fp32: bf16 there ran no faster (BERT-Large, 16-sample batches: 14.7-14.9
    against 14.8-15.2 samples/s, alternating)."""
    library()  # built (or taken from the cache) and loaded here, before any timed call
    model = copy.deepcopy(model).float().eval()
    w = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    previous: DenseAddNorm | None = None
    q_scaled = False
    for name, module in list(model.named_modules()):
        if not isinstance(module, BertSelfAttention):
            continue
        p = name.removesuffix(".attention.self")
        weight = site_weight(w, name)
        bias = site_bias(w, name)
        q_scaled = module.head_dim in ATTENTION_DIMS  # the kernel attends: 1/sqrt(d) goes into Q's weights
        if q_scaled:
            hidden = module.heads * module.head_dim
            factor = q_multiplier(module.head_dim)
            weight, bias = weight.copy(), bias.copy()
            weight[:, :hidden] *= factor
            bias[:hidden] *= factor

        def dense(site: str, gelu: bool = False, out_dtype: torch.dtype = torch.bfloat16) -> AmxBf16Linear:
            return AmxBf16Linear(site_weight(w, site), w[f"{site}.bias"], gelu=gelu, out_dtype=out_dtype)

        layers = (
            AmxBf16Linear(weight, bias),
            dense(f"{p}.attention.output.dense", out_dtype=torch.float32),
            dense(f"{p}.intermediate.dense", gelu=True),
            dense(f"{p}.output.dense", out_dtype=torch.float32),
        )
        previous = wire_block(model, name, layers, previous)
    finish_amx_model(model, residual)
    setattr(model, "attention", partial(amx_attention, q_scaled=q_scaled, attention=attention))  # noqa: B010
    return model
