"""Time the SQuAD path against the slow pure-Python replica of the MLPerf reference.

    .venv/bin/python benchmarks/squad_speed.py [--data ../shared/data] [--out docs/squad-speed.md]

(a) making the 10,833 features, (b) scoring a full oracle accuracy log (noise 2.0, seed 1).
Both sides are checked to agree before the times are reported; the fast side is the best of 3.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_main  # noqa: E402

from packed_bert.squad import dataset, reference
from packed_bert.squad.features import SquadFeatures, build_features
from packed_bert.squad.scoring import score_accuracy_log

ROOT = Path(__file__).resolve().parents[1]


def oracle_log(data: Path, path: Path, s: float = 2.0, k: int = 1) -> None:
    ref = np.load(data / "squad" / "reference-features.npz")
    start_end = np.load(data / "squad" / "oracle-positions.npz")["start_end"]
    rng = np.random.default_rng(k)
    entries = []
    for i, n in enumerate(ref["lengths"].tolist()):
        logits = rng.normal(0, s, size=(384, 2)).astype(np.float32)
        a, b = start_end[i]
        logits[a, 0] += 5.0
        logits[b, 1] += 5.0
        logits[n:, :] = -10000.0
        entries.append({"seq_id": i, "qsl_idx": i, "data": logits.tobytes().hex().upper(), "token_count": 0})
    path.write_text(json.dumps(entries))


def timed(fn, *args, repeat: int = 1):  # type: ignore[no-untyped-def]
    """(result, best wall time of ``repeat`` runs)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - t)
    return out, best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, help="also write the figures as markdown here")
    args = ap.parse_args()
    ds = args.data / "squad" / "dev-v1.1.json"
    vp = args.data / "vocab" / "bert-uncased-vocab.txt"

    def fast_features() -> SquadFeatures:
        squad = dataset.read_squad(ds)
        vocab = dataset.read_vocab(vp)
        arrays = build_features(squad, vocab)
        tokens = sorted(vocab, key=vocab.__getitem__)
        return SquadFeatures(squad=squad, vocab_tokens=tokens, **arrays)  # type: ignore[arg-type]

    def slow_features() -> tuple[list[reference.RefExample], list[reference.RefFeature]]:
        examples = reference.read_examples(ds)
        return examples, reference.convert_examples(examples, dataset.read_vocab(vp))

    feats, t_fast_f = timed(fast_features, repeat=3)
    (examples, ref_feats), t_slow_f = timed(slow_features)
    assert np.array_equal(np.array([f.input_ids for f in ref_feats], dtype=np.uint16), feats.input_ids)

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "mlperf_log_accuracy.json"
        oracle_log(args.data, log)
        fast, t_fast_s = timed(score_accuracy_log, log, feats, repeat=3)

        def slow_score() -> dict[str, float]:
            preds = reference.predictions(examples, ref_feats, reference.load_log(log))
            return reference.evaluate(examples, preds)

        slow, t_slow_s = timed(slow_score)
    assert abs(fast.f1 - slow["f1"]) < 1e-9 and abs(fast.exact_match - slow["exact_match"]) < 1e-9

    rows = [
        ("features (10,833 from dev-v1.1.json)", t_slow_f, t_fast_f),
        ("scoring (full oracle log, s=2.0 k=1)", t_slow_s, t_fast_s),
    ]
    lines = [
        "| step | slow replica (s) | packed-bert (s) | speed-up |",
        "| --- | ---: | ---: | ---: |",
        *(f"| {name} | {slow_t:.2f} | {fast_t:.2f} | {slow_t / fast_t:.1f}x |" for name, slow_t, fast_t in rows),
    ]
    table = "\n".join(lines)
    print(table)
    print(f'scores agree: {{"exact_match": {fast.exact_match}, "f1": {fast.f1}}}')
    if args.out:
        machine = (
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        )
        args.out.write_text(
            "# SQuAD path speed\n\n"
            "Made by `.venv/bin/python benchmarks/squad_speed.py --out docs/squad-speed.md` "
            f"({machine}; the machine was shared with other jobs, so figures are rough).\n\n"
            "The slow side is `packed_bert.squad.reference`, a line-by-line pure-Python replica of "
            "the MLPerf reference (`create_squad_data.py`, `accuracy-squad.py`); both sides are "
            "checked to give the same features and the same EM/F1 in the same run; packed-bert's "
            "time is the best of 3 runs, the replica's one run. Feature times "
            "exclude the cache (`load_features` returns cached features in about 0.3 s); scoring "
            "times include reading and decoding the 66 MB log.\n\n"
            f"{table}\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
