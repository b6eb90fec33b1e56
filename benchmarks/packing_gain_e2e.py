"""Packing gain end to end: one real CPU backend, the same samples, packed vs sorted vs padded.

Runs LoadGen Offline on ``--sut cpu`` (BERT-Large shape, random weights unless --weights) three
times in one process with one runner, and prints samples/s of each and the gain of packing.

    .venv/bin/python benchmarks/packing_gain_e2e.py [--samples 24] [--model bert-99]
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
from packed_bert.harness.devices import make_runners
from packed_bert.harness.plan import plan_run
from packed_bert.harness.qsl import SampleLibrary
from packed_bert.squad.features import load_features


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sut", default="cpu")
    ap.add_argument("--model", default="bert-99")
    ap.add_argument("--samples", type=int, default=24)
    ap.add_argument("--pool", type=int, default=200, help="QSL samples the runs draw from")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--strategies", default="packed,sorted,padded")
    ap.add_argument("--dataset", type=Path)
    ap.add_argument("--vocab", type=Path)
    args = ap.parse_args()
    features = load_features(args.dataset, args.vocab)
    base = RunConfig(
        sut=args.sut,
        model=args.model,
        weights=args.weights,  # type: ignore[arg-type]
        sample_count=args.pool,
        target_qps=float(args.samples),
        settings={"min_duration": "1000"},
    )
    runners = make_runners(plan_run(base), SampleLibrary.from_features(features, args.pool))
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for strategy in args.strategies.split(","):
            cfg = RunConfig(**{**base.__dict__, "results_dir": Path(tmp), "batching": strategy})
            res = run_benchmark(cfg, features=features, runners=runners, quiet=True)
            rates[strategy] = res.samples_per_second or 0.0
            print(
                f"{args.sut} {args.model} {strategy:7s}: {rates[strategy]:8.3f} samples/s "
                f"(token efficiency {res.summary.get('token_efficiency'):.1%}, "
                f"{res.summary.get('samples')} samples)",
                flush=True,
            )
    if "packed" in rates and "padded" in rates and rates["padded"]:
        print(f"packing gain over padding: {rates['packed'] / rates['padded']:.2f}x")
    if "packed" in rates and "sorted" in rates and rates["sorted"]:
        print(f"packed vs sorted: {rates['packed'] / rates['sorted']:.2f}x")
    print(json.dumps(rates))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
