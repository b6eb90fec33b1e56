"""The whole encoder of an AMX recipe in one kernel call (``pb_encoder`` in ``kernels/amx.c``).

``torch_amx.wire_block`` leaves each BERT layer as four AMX linear layers, attention per sequence
and two add+LayerNorm blocks, each kernel writing the next one's input; run module by module,
Python runs between every two of the 7 kernel calls of a layer. On one 268-token sample that
work took about 40 us a time (11 us with the kernels made no-ops: each kernel evicts the
interpreter's state from the caches), 7 ms of a 70 ms sample. ``AmxEncoder`` makes the same calls
in the same order from C, so the logits are the same bits; it falls back to the modules where the
attention kernel does not apply (another attention core, a head dimension it does not take).
"""

from __future__ import annotations

import ctypes

import torch
from torch import nn

from packed_bert.backends.amx_kernels import (
    AS_BF16,
    AS_FP32,
    ATTENTION_DIMS,
    FLOAT_KINDS,
    MAX_SEQUENCE,
    W_BF16,
    W_S8,
    W_S8R,
    AmxLinearWeights,
    SequenceAttention,
    block_rows,
    library,
    q_multiplier,
)
from packed_bert.model.attention import AttentionCore

_P, _I, _L, _F = ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_float


class _Dense(ctypes.Structure):
    _fields_ = [
        ("packed", _P), ("w_kind", _I), ("K", _L), ("N", _L), ("in_scale", _P), ("zero_point", _I),
        ("colsum_zp", _P), ("col_scale", _P), ("bias", _P), ("gelu", _I), ("fixed_scale", _P), ("fixed_step", _F),
    ]  # fmt: skip


class _Layer(ctypes.Structure):
    _fields_ = [
        ("qkv", _Dense), ("o", _Dense), ("ffn_in", _Dense), ("ffn_out", _Dense), ("dense_kind", _I),
        ("gamma1", _P), ("beta1", _P), ("gamma2", _P), ("beta2", _P), ("eps1", _F), ("eps2", _F),
    ]  # fmt: skip


def _dense(w: AmxLinearWeights) -> _Dense:
    int8, scaled = w.w_kind in (W_S8, W_S8R), w.w_kind != W_BF16  # uint8 inputs; int32 sums (scales per column)
    return _Dense(
        w.packed.data_ptr(), w.w_kind, w.k, w.n,
        w.in_scale.data_ptr() if int8 else None, w.zero_point,
        w.colsum_zp.data_ptr() if int8 else None, w.col_scale.data_ptr() if scaled else None,
        w.bias.data_ptr(), int(w.gelu),
        None if w.fixed_scale is None else w.fixed_scale.data_ptr(), w.fixed_step,
    )  # fmt: skip


def _amx(module: nn.Module) -> AmxLinearWeights:
    weights = getattr(module, "amx", None)
    if not isinstance(weights, AmxLinearWeights):
        raise TypeError(f"amx encoder: {type(module).__name__} is not a layer on the AMX kernel")
    return weights


class AmxEncoder(nn.Module):
    """``encoder`` (a ``BertEncoder`` wired by ``torch_amx.wire_block``) run by one kernel call."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder  # the modules: their constants, and the fallback
        layers = list(encoder.layer)  # type: ignore[arg-type]
        first = layers[0].attention.self
        self.heads, self.head_dim = int(first.heads), int(first.head_dim)
        self.inter = _amx(layers[0].intermediate).n
        structs = []
        self._keep: list[torch.Tensor] = []  # LayerNorm constants in fp32, alive as long as the pointers
        # each role's tile input kind (Q|K|V, attention output, FFN input, FFN output), in every
        # layer: uint8 (int8 layers) or bf16; a recipe may mix them (int8 with a bf16 FFN output)
        role_dtypes: list[set[torch.dtype]] = [set() for _ in range(4)]
        dense_dtypes: set[torch.dtype] = set()
        for layer in layers:
            o_block, ffn_block = layer.attention.output, layer.output
            weights = [_amx(m) for m in (layer.attention.self.qkv, o_block.dense, layer.intermediate, ffn_block.dense)]
            for kinds, w in zip(role_dtypes, weights, strict=True):
                kinds.add(w.input_dtype)
            dense_dtypes |= {o_block.dense.out_dtype, ffn_block.dense.out_dtype}
            norms = []
            for norm in (o_block.LayerNorm, ffn_block.LayerNorm):
                gamma, beta = (t.detach().float().contiguous() for t in (norm.weight, norm.bias))
                self._keep += [gamma, beta]
                norms.append((gamma.data_ptr(), beta.data_ptr(), float(norm.eps)))
            structs.append(
                _Layer(
                    *(_dense(w) for w in weights),
                    AS_BF16 if o_block.dense.out_dtype == torch.bfloat16 else AS_FP32,
                    norms[0][0],
                    norms[0][1],
                    norms[1][0],
                    norms[1][1],
                    norms[0][2],
                    norms[1][2],
                )  # fmt: skip
            )
        self._layers = (_Layer * len(structs))(*structs)
        # the work buffers hold one kind per role and one dense kind: layers that differ run the modules
        self.fused = all(len(kinds) == 1 for kinds in role_dtypes) and len(dense_dtypes) == 1
        _, o, _, ffn_out = (next(iter(kinds)) for kinds in role_dtypes)  # when fused
        # the attention output's and the FFN output layer's tile inputs, and the FFN's inner rows
        # as far apart as the kernel lays them (pb_encoder keeps its own work buffers)
        self._att_dtype, self._inter_dtype = o, ffn_out
        size = ffn_out.itemsize  # bytes of a value of the FFN output layer's tile input
        self._inter_stride = int(library().pb_tile_row_bytes(self.inter * size)) // size

    def forward(self, hidden: torch.Tensor, core: AttentionCore) -> torch.Tensor:
        if not (self.fused and self._applies(hidden, core)):
            return self.encoder(hidden, core)
        assert isinstance(core, SequenceAttention)
        shape = hidden.shape
        flat = hidden.reshape(-1, shape[-1])
        if core.covered:
            return self._run(flat, core.starts, core.lens, core.q_scaled, core.attention_kind).reshape(shape)
        # rows with positions outside every sequence (a packed row's tail, a sorted batch's shorter
        # rows): the kernel runs on the sequences' tokens alone, which then sit back to back, and
        # those positions come out as zeros (a row's results do not depend on its neighbours, so
        # the sequences' results keep their bits)
        index, starts = core.token_index()
        out = self._run(flat.index_select(0, index), starts, core.lens, core.q_scaled, core.attention_kind)
        return flat.new_zeros(flat.shape).index_copy_(0, index, out.to(flat.dtype)).reshape(shape)

    def _run(
        self, hidden: torch.Tensor, starts: torch.Tensor, lens: torch.Tensor, q_scaled: bool, attention_kind: int
    ) -> torch.Tensor:
        """The encoder kernel over ``hidden`` [tokens, width], every token in one of the sequences
        at ``starts`` / ``lens`` (int64); ``q_scaled`` and ``attention_kind`` as ``SequenceAttention`` has them."""
        # the residual stream in its kind (fp32, or bf16: AmxEmbeddings' residual), its rows padded
        # to whole blocks (a bf16 first Q|K|V layer reads them in place)
        residual = hidden.dtype if hidden.dtype in FLOAT_KINDS else torch.float32
        tokens, width = hidden.shape
        x = block_rows(tokens, width, residual, fill=0).copy_(hidden)
        q_mul = 1.0 if q_scaled else float(q_multiplier(self.head_dim))
        status = library().pb_encoder(
            ctypes.addressof(self._layers), len(self._layers), tokens, self.heads, self.head_dim, q_mul,
            starts.data_ptr(), lens.data_ptr(), len(lens), FLOAT_KINDS[residual],
            x.data_ptr(), attention_kind,
        )  # fmt: skip
        if status != 0:
            raise RuntimeError(f"amx encoder kernel: status {status} for {tokens} tokens")
        return x[:tokens]

    def _applies(self, hidden: torch.Tensor, core: AttentionCore) -> bool:
        return (
            isinstance(core, SequenceAttention)
            and self.head_dim in ATTENTION_DIMS
            and 0 < core.longest <= MAX_SEQUENCE
            and hidden.shape[-1] == self.heads * self.head_dim
        )
