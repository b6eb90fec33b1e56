"""A tiny BERT whose LayerNorms are perturbed (so numerical differences show), features of
random tokens at given lengths (and as a calibration set), its eager PyTorch logits: the reference of the backend tests, and
the check that a runner gives a sample the same logits in any batch."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch

from packed_bert.model import BERT_TINY, PackedBertForQA
from packed_bert.packing import infer_sequences


def perturbed_tiny_model(heads: int = BERT_TINY.heads, intermediate: int = BERT_TINY.intermediate) -> PackedBertForQA:
    """The tiny BERT (``heads`` heads: 4 give a head dimension of 16, 2 of 32; ``intermediate``
    the FFN's inner width)."""
    torch.manual_seed(0)
    model = PackedBertForQA(dataclasses.replace(BERT_TINY, heads=heads, intermediate=intermediate)).eval()
    with torch.no_grad():  # non-trivial LayerNorm and QA head so differences show
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def random_features(seed: int, n: int, max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` features of random tokens with lengths in [16, max_len): ids, segments, lengths."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(16, max_len, n)
    ids = np.zeros((n, 384), np.int32)
    seg = np.zeros((n, 384), np.int32)
    for i, length in enumerate(lengths):
        ids[i, :length] = rng.integers(1, BERT_TINY.vocab_size, length)
        seg[i, length // 3 : length] = 1
    return ids, seg, lengths


def eager_logits(model: torch.nn.Module, batch: object) -> np.ndarray:
    with torch.no_grad():
        args = [torch.from_numpy(getattr(batch, n)) for n in ("input_ids", "segment_ids", "position_ids", "seq_lens")]
        return model(*args).numpy()


def same_in_any_batch(
    infer: Callable[..., np.ndarray], features: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> list[np.ndarray]:
    """Each feature's logits alone (sorted batches of one), after asserting that sorted batches of
    four, packed rows and padded batches give every feature the same bits."""
    ids, seg, lens = features
    alone = infer_sequences(infer, ids, seg, lens, "sorted", 1)
    for strategy, size in (("sorted", 4), ("packed", 4), ("padded", 3)):
        logits = infer_sequences(infer, ids, seg, lens, strategy, size)
        for one, other in zip(alone, logits, strict=True):
            np.testing.assert_array_equal(one, other, err_msg=f"{strategy}, {size}")
    return alone


def calibration_of(features: tuple[np.ndarray, np.ndarray, np.ndarray]) -> Callable[[], dict[str, np.ndarray]]:
    """``features`` as the calibration set of an int8 mode that calibrates (tests only)."""
    ids, seg, lens = features
    return lambda: {"input_ids": ids, "segment_ids": seg, "lengths": lens}
