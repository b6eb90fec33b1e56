"""Shared fakes for the harness tests: synthetic features and runners (no model, no SQuAD)."""

from __future__ import annotations

import random
import threading
import time
from types import SimpleNamespace

import numpy as np

from packed_bert.backends.sim import cheap_logits


def synthetic_features(n: int = 300, seed: int = 0) -> SimpleNamespace:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 385, n).astype(np.uint16)
    pos = np.arange(384)
    real = pos[None, :] < lengths[:, None]
    input_ids = (rng.integers(1000, 30000, (n, 384)) * real).astype(np.uint16)
    segment_ids = ((pos[None, :] > 30) & real).astype(np.uint8)
    return SimpleNamespace(input_ids=input_ids, segment_ids=segment_ids, lengths=lengths)


def expected_logits(features: SimpleNamespace, qsl_idx: int) -> np.ndarray:
    """What a sample's response must hold: its logits computed alone, [len, 2]."""
    n = int(features.lengths[qsl_idx])
    ids = features.input_ids[qsl_idx, :n].astype(np.int32)[None, :]
    pos = np.arange(n, dtype=np.int32)[None, :]
    return cheap_logits(ids, pos)[0]


class ShuffledRunner:
    """Cheap per-token logits after a random sleep, so batches finish out of order."""

    name = "fake"
    precision = "fp32"
    device = "cpu"
    simulated = False
    static_shape = False
    detail = "test fake"

    def __init__(self, seed: int, max_sleep_s: float = 0.02, fail_on_call: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.max_sleep_s = max_sleep_s
        self.fail_on_call = fail_on_call
        self.calls = 0
        self.lock = threading.Lock()

    def infer(self, batch: object) -> np.ndarray:
        with self.lock:
            self.calls += 1
            call = self.calls
            sleep = self.rng.random() * self.max_sleep_s
        if self.fail_on_call is not None and call >= self.fail_on_call:
            raise RuntimeError("simulated device fault")
        time.sleep(sleep)
        return cheap_logits(np.asarray(batch.input_ids), np.asarray(batch.position_ids))  # type: ignore[attr-defined]
