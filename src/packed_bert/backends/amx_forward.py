"""A whole forward pass on packed-bert's AMX kernels, from a batch's arrays to its logits, without
the model's module plumbing: the embeddings, the one-call encoder and the QA head run on the
sequences' tokens alone, and the positions outside every sequence get the QA head's bias (what the
modules give them: zero rows into it). The same logits bit for bit. Each small torch operation
between the kernels costs about ten times its warm time there, the caches emptied by the encoder
(0.3 ms to set up one sequence's attention core, 35 us warm): on the KVM-masked Xeon model 167 a
274-token SingleStream sample took 0.45-0.50 ms less (49.3 -> 48.7 ms, alternating in one
process), 200 dev samples 0.25 ms less each (36.50 -> 36.25 ms)."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from packed_bert.backends.amx_encoder import AmxEncoder
from packed_bert.backends.amx_kernels import ATTENTION_DIMS, ATTENTION_KINDS, MAX_SEQUENCE
from packed_bert.backends.base import BatchLike
from packed_bert.backends.torch_amx import AmxEmbeddings, AmxQaHead, amx_attention


class AmxForward:
    """``model`` (a ``PackedBertForQA`` whose embeddings, encoder, QA head and attention are the
    AMX ones: ``of``) run as its kernels' calls in a row."""

    def __init__(
        self, embeddings: AmxEmbeddings, encoder: AmxEncoder, qa_head: AmxQaHead, q_scaled: bool, attention: str
    ) -> None:
        self.embeddings, self.encoder, self.qa_head = embeddings, encoder, qa_head
        self.q_scaled = q_scaled
        self.attention_kind = ATTENTION_KINDS[attention]
        self._bias = qa_head.bias.numpy()

    @classmethod
    def of(cls, model: nn.Module) -> AmxForward | None:
        """The whole pass of ``model``, or None where a part of it is not on the AMX kernels."""
        bert = getattr(model, "bert", None)
        embeddings, encoder = getattr(bert, "embeddings", None), getattr(bert, "encoder", None)
        qa_head, core = getattr(model, "qa_outputs", None), getattr(model, "attention", None)
        if not (
            isinstance(embeddings, AmxEmbeddings)
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
        rows, length = batch.input_ids.shape
        lens = np.asarray(batch.seq_lens, dtype=np.int64)
        starts = np.cumsum(lens, axis=1) - lens + np.arange(rows)[:, None] * length
        used = lens > 0
        starts, lens = starts[used], lens[used]
        tokens = int(lens.sum())
        if tokens == 0 or int(lens.max()) > MAX_SEQUENCE:
            return None
        firsts = np.cumsum(lens) - lens  # each sequence's first token among the sequences' tokens
        covered = tokens == rows * length
        # the sequences' tokens back to back: their positions in the flat rows
        index = None if covered else np.repeat(starts, lens) + (np.arange(tokens) - np.repeat(firsts, lens))
        ids, segments, positions = (
            torch.from_numpy(
                np.ascontiguousarray(a.reshape(-1) if index is None else a.reshape(-1)[index], dtype=np.int64)
            )
            for a in (batch.input_ids, batch.segment_ids, batch.position_ids)
        )
        hidden = self.embeddings(ids, segments, positions)
        encoded = self.encoder.run_tokens(
            hidden, torch.from_numpy(firsts), torch.from_numpy(lens), self.q_scaled, self.attention_kind
        )
        logits = self.qa_head(encoded).numpy()
        if index is None:
            return logits.reshape(rows, length, 2)
        out = np.empty((rows * length, 2), np.float32)
        out[:] = self._bias
        out[index] = logits
        return out.reshape(rows, length, 2)
