"""Denormal floats flushed to zero while a runtime works; the calling thread's own mode after.

With trained weights the softmax's exp of scores far below their row's maximum comes out a
denormal float32 (minilm-l6-squad on SQuAD: about 1 score in 10,000), and each one costs the CPU a
microcode assist. ONNX Runtime and OpenVINO flush them when asked, in their own threads and in the
thread that creates or runs a session, which they leave switched; ``flushed`` gives that thread
its mode back, so numpy and torch elsewhere in the process keep IEEE denormals.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def flushing() -> bool:
    """Whether this thread flushes denormals now (to zero on the way in or out)."""
    return bool(np.float32(1e-39) * np.float32(1.0) == 0)


@contextmanager
def flushed() -> Iterator[None]:
    """Denormals flushed to zero in this thread inside the block, its previous mode after."""
    was = flushing()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(was)
