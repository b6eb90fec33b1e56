"""The query sample library: the cached SQuAD features, all in memory.

Every feature already lives in numpy arrays, and the SUT reads them by QSL index when it
builds a batch: the unload callback does nothing and the load callback only gives LoadGen's log
thread time to write the loaded set (``LOADGEN_LOG_WAIT_S``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import mlperf_loadgen as lg
import numpy as np

from packed_bert.errors import UserError
from packed_bert.terms import DATASET_FEATURES


@dataclass(frozen=True)
class SampleLibrary:
    """Features of the samples a run may issue: input ids [N, 384], segment ids, lengths [N]."""

    input_ids: np.ndarray
    segment_ids: np.ndarray
    lengths: np.ndarray

    @classmethod
    def from_features(cls, features: Any, count: int | None = None) -> SampleLibrary:
        n = len(features.lengths)
        if count is not None:
            if count < 1:
                raise UserError(f"--count must be >= 1, got {count}")
            n = min(n, count)
        return cls(
            np.ascontiguousarray(features.input_ids[:n]),
            np.ascontiguousarray(features.segment_ids[:n]),
            np.ascontiguousarray(np.asarray(features.lengths[:n], dtype=np.int64)),
        )

    @property
    def total(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def performance_count(self) -> int:
        return min(self.total, DATASET_FEATURES)

    def construct(self) -> Any:
        """The LoadGen QSL handle (destroy with ``lg.DestroyQSL``)."""
        return lg.ConstructQSL(self.total, self.performance_count, _load, _noop)


# LoadGen's LoadSamplesToRam logs the set it loads from a lambda that holds the set by reference
# and runs later on LoadGen's log thread (which wakes every 10 ms): a run that ends before that
# thread gets to it leaves a dangling reference, and a short run answered from the main thread
# (``workers``' inline device) crashed there. Waiting a few of its wake-ups in the load callback,
# while the set is alive, lets the entry be written first.
LOADGEN_LOG_WAIT_S = 0.05


def _load(_indices: list[int]) -> None:
    """All samples are in memory already; see ``LOADGEN_LOG_WAIT_S``."""
    time.sleep(LOADGEN_LOG_WAIT_S)


def _noop(_indices: list[int]) -> None:
    """All samples are in memory already."""
