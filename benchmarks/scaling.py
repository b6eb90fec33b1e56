"""Scaling: the simulated Cloud AI 100 systems (1, 5, 8, 16 cards) against their capacity.

Each system runs LoadGen Offline (performance, test duration) on the ``sim`` backend; the
capacity is cards x the published per-card rate. Goal: every system >= 97% of capacity, i.e.
the harness never limits a 16-card host.

    .venv/bin/python benchmarks/scaling.py [--duration-ms 10000] [--systems r282_z93_q1,...]
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
from packed_bert.systems import load_system

SYSTEMS = ("r282_z93_q1", "r282_z93_q5", "r282_z93_q8", "r292_z93_q16")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration-ms", type=int, default=10_000)
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--model", default="bert-99")
    ap.add_argument("--dataset", type=Path)
    ap.add_argument("--vocab", type=Path)
    args = ap.parse_args()
    features = load_features(args.dataset, args.vocab)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.systems.split(","):
            spec = load_system(name)
            capacity = spec.devices * spec.sim_samples_per_s[args.model]  # type: ignore[operator]
            cfg = RunConfig(
                sut=name,
                model=args.model,
                results_dir=Path(tmp),
                target_qps=capacity,
                settings={"min_duration": str(args.duration_ms)},
            )
            res = run_benchmark(cfg, features=features, quiet=True)
            got = res.samples_per_second or 0.0
            rows.append(
                {
                    "system": name,
                    "cards": spec.devices,
                    "capacity": capacity,
                    "samples_per_second": got,
                    "fraction": got / capacity,
                    "token_efficiency": res.summary.get("token_efficiency"),
                }
            )
            print(
                f"{name:14s} {spec.devices:3d} cards  {got:10,.1f} samples/s  "
                f"capacity {capacity:10,.1f}  {got / capacity:6.1%}",
                flush=True,
            )
    print(json.dumps(rows))
    return 0 if all(r["fraction"] >= 0.97 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(run_main(main))
