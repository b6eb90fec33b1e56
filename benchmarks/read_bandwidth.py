"""How fast this machine reads memory: a PyTorch sum over buffers from cache-sized to larger than
BERT-Large's weights (670 MB in bf16, 335 MB in int8), all threads, best of five. One sample at a
time reads every weight once, so ``weight bytes / rate`` bounds its latency from below.

    .venv/bin/python benchmarks/read_bandwidth.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_label, run_main  # noqa: E402


def read_rate(megabytes: int, repeats: int = 5) -> float:
    """GiB/s of the best of ``repeats`` sums over a ``megabytes`` fp32 buffer."""
    import torch

    buffer = torch.ones(megabytes * 2**20 // 4, dtype=torch.float32)
    buffer.sum()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        buffer.sum()
        best = min(best, time.perf_counter() - start)
    return megabytes / 1024 / best


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="16,64,256,335,670,2048", help="buffer sizes, MB")
    args = ap.parse_args(argv)
    import torch

    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    print(f"{cpu_label()}, {threads} threads")
    print("| buffer MB | read GiB/s |")
    print("| ---: | ---: |")
    for size in (int(x) for x in args.sizes.split(",")):
        print(f"| {size} | {read_rate(size):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
