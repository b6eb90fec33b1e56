"""Harness overhead: LoadGen Offline on the null backend (no model), samples/s of the harness.

Everything but the model runs: QSL, chunking, packing and building the batches, answering
LoadGen with per-sample responses into each batch's logits. Goal: >= 100,000 samples/s.

    .venv/bin/python benchmarks/harness_overhead.py [--duration-ms 10000] [--batching packed]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_main  # noqa: E402

from packed_bert.harness.benchmark import run_benchmark
from packed_bert.harness.config import RunConfig
from packed_bert.squad.features import load_features

GOAL = 100_000.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration-ms", type=int, default=10_000)
    ap.add_argument("--target-qps", type=float, default=200_000.0)
    ap.add_argument("--batching", default="packed", choices=("packed", "sorted", "padded"))
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--dataset", type=Path)
    ap.add_argument("--vocab", type=Path)
    args = ap.parse_args()
    features = load_features(args.dataset, args.vocab)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = RunConfig(
            sut="null",
            results_dir=Path(tmp),
            target_qps=args.target_qps,
            batching=args.batching,
            batch_size=args.batch_size,
            settings={"min_duration": str(args.duration_ms)},
        )
        res = run_benchmark(cfg, features=features, quiet=True)
    rate = res.samples_per_second or 0.0
    print(
        f"null Offline ({args.batching}): {rate:,.0f} samples/s "
        f"({'meets' if rate >= GOAL else 'BELOW'} the {GOAL:,.0f} goal); "
        f"{res.summary.get('samples')} samples"
    )
    print(json.dumps({"samples_per_second": rate, "batching": args.batching, "samples": res.summary.get("samples")}))
    return 0 if rate >= GOAL else 1


if __name__ == "__main__":
    raise SystemExit(run_main(main))
