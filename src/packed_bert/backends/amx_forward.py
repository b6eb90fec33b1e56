"""A whole forward pass on packed-bert's AMX kernels in one call (``pb_forward`` in
``kernels/forward.h``), from a batch's arrays to its logits, without the model's modules: the
sequences' tokens gathered, the embeddings, the one-call encoder and the QA head on them alone, and
the positions outside every sequence given the QA head's bias (what the modules give them: zero rows
into it). The same logits bit for bit. Between kernels each small torch or numpy operation costs
about ten times its warm time, the encoder having emptied the caches (0.3 ms to set up one
sequence's attention core, 35 us warm); on the KVM-masked Xeon model 167 a 274-token SingleStream
sample took 2.0-2.3 ms less than through the modules, 200 dev samples one at a time 1.4-1.6 ms less
each, a sorted batch of 16 8.6 ms less of 460 (alternating in one process)."""

from __future__ import annotations

import ctypes
from functools import partial
from typing import Any

import numpy as np
from torch import nn

from packed_bert.backends.amx_encoder import AmxEncoder
from packed_bert.backends.amx_kernels import ATTENTION_DIMS, ATTENTION_KINDS, FLOAT_KINDS, library, q_multiplier
from packed_bert.backends.base import BatchLike
from packed_bert.backends.torch_amx import AmxEmbeddings, AmxQaHead, amx_attention

_P, _I, _L, _F = ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_float


class _Model(ctypes.Structure):  # pb_model in kernels/forward.h
    _fields_ = [
        ("layers", _P), ("count", _I), ("heads", _I), ("dim", _I), ("attention", _I), ("residual_kind", _I),
        ("q_mul", _F), ("word", _P), ("position", _P), ("type", _P), ("word_rows", _L), ("position_rows", _L),
        ("type_rows", _L), ("gamma", _P), ("beta", _P), ("eps", _F), ("qa_weight", _P), ("qa_bias", _P),
    ]  # fmt: skip


def _int32(a: np.ndarray) -> np.ndarray:
    return a if a.dtype == np.int32 and a.flags.c_contiguous else np.ascontiguousarray(a, dtype=np.int32)


class AmxForward:
    """``model`` (a ``PackedBertForQA`` whose embeddings, encoder, QA head and attention are the
    AMX ones: ``of``) run as one kernel call (``pb_forward``)."""

    def __init__(
        self, embeddings: AmxEmbeddings, encoder: AmxEncoder, qa_head: AmxQaHead, q_scaled: bool, attention: str
    ) -> None:
        self.encoder = encoder
        self._keep = (embeddings, encoder, qa_head)  # the tensors and structures _model points into
        word, position, token_type = embeddings.tables
        q_mul = 1.0 if q_scaled else float(q_multiplier(encoder.head_dim))
        self._model = _Model(
            ctypes.addressof(encoder._layers), len(encoder._layers), encoder.heads, encoder.head_dim,
            ATTENTION_KINDS[attention], FLOAT_KINDS[embeddings.residual], q_mul,
            word.data_ptr(), position.data_ptr(), token_type.data_ptr(),
            word.shape[0], position.shape[0], token_type.shape[0],
            embeddings.gamma.data_ptr(), embeddings.beta.data_ptr(), float(embeddings.LayerNorm.eps),
            qa_head.weight.data_ptr(), qa_head.bias.data_ptr(),
        )  # fmt: skip
        self._forward = library().pb_forward

    @classmethod
    def of(cls, model: nn.Module) -> AmxForward | None:
        """The whole pass of ``model``, or None where a part of it is not on the AMX kernels."""
        bert = getattr(model, "bert", None)
        embeddings, encoder = getattr(bert, "embeddings", None), getattr(bert, "encoder", None)
        qa_head, core = getattr(model, "qa_outputs", None), getattr(model, "attention", None)
        if not (
            isinstance(embeddings, AmxEmbeddings)
            and embeddings.residual in FLOAT_KINDS
            and isinstance(encoder, AmxEncoder)
            and encoder.fused
            and encoder.head_dim in ATTENTION_DIMS
            and isinstance(qa_head, AmxQaHead)
            and isinstance(core, partial)
            and core.func is amx_attention
            and not core.args
        ):
            return None
        options: dict[str, Any] = dict(core.keywords)
        return cls(embeddings, encoder, qa_head, bool(options.get("q_scaled", False)), options.get("attention", "bf16"))

    def __call__(self, batch: BatchLike) -> np.ndarray | None:
        """Logits [rows, length, 2] of ``batch``, or None where the encoder kernel does not take it
        (not fused, no token, or a sequence longer than it attends over): the modules run it then."""
        if not self.encoder.fused:
            return None
        ids, segments, positions, lens = (
            _int32(a) for a in (batch.input_ids, batch.segment_ids, batch.position_ids, batch.seq_lens)
        )
        rows, length = ids.shape
        out = np.empty((rows, length, 2), np.float32)
        status = self._forward(
            ctypes.byref(self._model), ids.ctypes.data, segments.ctypes.data, positions.ctypes.data, lens.ctypes.data,
            rows, length, lens.shape[1], out.ctypes.data,
        )  # fmt: skip
        if status == 3:
            return None
        if status == 1:
            raise ValueError(
                f"amx forward: an id past its table, or sequences longer than their rows ({rows}x{length})"
            )
        if status != 0:
            raise RuntimeError(f"amx forward kernel: status {status} for {rows} rows of {length} tokens")
        return out
