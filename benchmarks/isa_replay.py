"""One CPU recipe's ONNX graph replayed on other instruction sets: the same graph, grids and
feeds, so any difference in the logits is the arithmetic's (docs/performance-history.md, nineteenth
session). Speed under emulation means nothing; the bits and the F1 do.

    # 1. natively: the recipe's graph, the feeds of N dev features, this CPU's outputs
    .venv/bin/python benchmarks/isa_replay.py capture --recipe onnxruntime:int8@smoothquant@seq \\
        --features 256 --out /tmp/replay   # --seed N: another draw of features
    # 2. anywhere with numpy and onnxruntime, e.g. QEMU's user mode (apt-get install qemu-user):
    qemu-x86_64 -cpu Nehalem .venv/bin/python benchmarks/isa_replay.py replay /tmp/replay --name nehalem
    qemu-x86_64 -cpu Nehalem .venv/bin/python benchmarks/isa_replay.py probe   # int8 sums exact?
    # 3. natively: bits, differences and F1 against this CPU's outputs
    .venv/bin/python benchmarks/isa_replay.py compare /tmp/replay nehalem

aarch64 under ``qemu-aarch64`` needs an aarch64 Python (Debian's arm64 ``python3.11-minimal``,
``libpython3.11-stdlib``, ``libc6``, ``libstdc++6``, ... fetched with ``apt-get download
PKG:arm64`` after ``dpkg --add-architecture arm64`` and unpacked with ``dpkg -x`` into a root
given to ``-L``), the aarch64 wheels of numpy and onnxruntime (``pip download --platform
manylinux_2_28_aarch64 --only-binary=:all: --python-version 3.11``, unzipped onto PYTHONPATH),
and an aarch64 /proc/cpuinfo bind-mounted in a mount namespace (``unshare -m``): ONNX Runtime's
cpuinfo crashes reading the x86 host's.

``replay`` and ``probe`` import only numpy and onnxruntime; ``capture`` and ``compare`` need
packed-bert and the SQuAD dev set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

FEEDS = "feeds.npz"  # b{k}.{input name}: batch k's feeds
NATIVE = "native"  # the outputs' name of the capturing CPU
SEED = 1  # which dev features, unless --seed says


def _batches(features: Any, index: np.ndarray) -> list[Any]:
    from packed_bert.packing.infer import batches_of

    return list(
        batches_of("sorted", features.input_ids[index], features.segment_ids[index], features.lengths[index], 4, 3)
    )


def _index(features: Any, count: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(features.num_features, count, replace=False))


def capture(recipe: str, count: int, out: Path, seed: int = SEED) -> None:
    import shutil

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from recipe_accuracy import WEIGHTS, make_runner

    from packed_bert.backends.attention_feeds import graph_feeds
    from packed_bert.backends.onnxruntime_backend import DISABLED_OPTIMIZERS
    from packed_bert.squad.features import load_features

    if not recipe.startswith("onnxruntime:"):
        raise SystemExit(f"--recipe {recipe}: replays ONNX Runtime graphs only (onnxruntime:...)")
    features = load_features()
    index = _index(features, count, seed)
    runner = make_runner(recipe, str(WEIGHTS), 1)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(runner.path, out / "model.onnx")
    feeds: dict[str, Any] = {}  # np.savez keywords
    outputs: dict[str, Any] = {}
    for k, batch in enumerate(_batches(features, index)):
        batch_feeds = graph_feeds(batch, runner.attention)
        feeds.update({f"b{k}.{name}": value for name, value in batch_feeds.items()})
        outputs[f"b{k}"] = runner._run(batch_feeds)
    np.savez(out / FEEDS, **feeds)
    np.savez(out / f"out_{NATIVE}.npz", **outputs)
    meta = {"recipe": recipe, "features": count, "seed": seed, "disabled_optimizers": list(DISABLED_OPTIMIZERS)}
    (out / "meta.json").write_text(json.dumps(meta))
    print(f"{out}: {recipe}, {count} features in {len(outputs)} batches")


def replay(directory: Path, name: str) -> None:
    import onnxruntime as ort

    meta = json.loads((directory / "meta.json").read_text())
    opts = ort.SessionOptions()  # as backends/onnxruntime_backend.py makes them, on one thread
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    session = ort.InferenceSession(
        str(directory / "model.onnx"),
        opts,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=meta["disabled_optimizers"],
    )
    stored = np.load(directory / FEEDS)
    by_batch: dict[str, dict[str, np.ndarray]] = {}
    for key in stored.files:
        batch, _, input_name = key.partition(".")
        by_batch.setdefault(batch, {})[input_name] = stored[key]
    start = time.perf_counter()
    outputs = {batch: session.run(None, feeds)[0] for batch, feeds in by_batch.items()}
    np.savez(directory / f"out_{name}.npz", **outputs)
    print(f"{name}: {len(outputs)} batches in {time.perf_counter() - start:.1f} s (ONNX Runtime {ort.__version__})")


def probe() -> None:
    """A MatMulInteger whose u8 x s8 pairs overflow 16 bits: exact, or saturated by vpmaddubsw."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    k = 64
    a = np.full((1, k), 255, np.uint8)
    b = np.full((k, 1), 127, np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])],
        "probe",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [1, k])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [1, 1])],
        [numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = int(session.run(None, {"A": a})[0][0, 0])
    exact = 255 * 127 * k
    print(f"MatMulInteger 255 x 127 x {k}: {got} ({'exact' if got == exact else f'not exact: {exact}'})")


def compare(directory: Path, names: Sequence[str]) -> None:
    from packed_bert.packing.unpack import unpack
    from packed_bert.squad.features import load_features
    from packed_bert.squad.scoring import score_by_split

    meta = json.loads((directory / "meta.json").read_text())
    features = load_features()
    index = _index(features, meta["features"], meta["seed"])
    batches = _batches(features, index)

    def per_feature(name: str) -> dict[int, np.ndarray]:
        outputs = np.load(directory / f"out_{name}.npz")
        logits: dict[int, np.ndarray] = {}
        for k, batch in enumerate(batches):
            order = np.sort(batch.sample_index[batch.sample_index >= 0])
            for i, seq in zip(order.tolist(), unpack(batch, outputs[f"b{k}"].astype(np.float32)), strict=True):
                logits[int(index[i])] = np.array(seq)
        return logits

    native = per_feature(NATIVE)
    base = score_by_split(native, features)["all"]
    print(f"{meta['recipe']}, {len(native)} dev features ({base.questions_scored} questions)\n")
    print("| where it ran | features bit-equal to native | largest difference / logit range | F1 |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| {NATIVE} | {len(native)} / {len(native)} | 0 | {base.f1:.3f} |")
    for name in names:
        got = per_feature(name)
        same = sum(np.array_equal(got[f], native[f]) for f in native)
        worst = max(float(np.abs(got[f] - native[f]).max() / (np.ptp(native[f]) or 1.0)) for f in native)
        f1 = score_by_split(got, features)["all"].f1
        print(f"| {name} | {same} / {len(native)} | {worst:.2g} | {f1:.3f} |")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    cap = sub.add_parser("capture")
    cap.add_argument("--recipe", default="onnxruntime:int8@smoothquant@seq")
    cap.add_argument("--features", type=int, default=256)
    cap.add_argument("--out", type=Path, required=True)
    cap.add_argument("--seed", type=int, default=SEED, help="which dev features (another draw: another seed)")
    rep = sub.add_parser("replay")
    rep.add_argument("directory", type=Path)
    rep.add_argument("--name", required=True, help="names this CPU's outputs (out_NAME.npz)")
    sub.add_parser("probe")
    cmp = sub.add_parser("compare")
    cmp.add_argument("directory", type=Path)
    cmp.add_argument("names", nargs="+")
    args = ap.parse_args(argv)
    directory = getattr(args, "directory", None)
    if directory is not None and not (directory / "meta.json").is_file():
        raise SystemExit(f"{directory}: no capture here; run `isa_replay.py capture --out {directory}` first")
    if args.command == "capture":
        capture(args.recipe, args.features, args.out, args.seed)
    elif args.command == "replay":
        replay(args.directory, args.name)
    elif args.command == "probe":
        probe()
    else:
        compare(args.directory, args.names)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] in (["replay"], ["probe"]):  # numpy and onnxruntime only: no packed-bert needed
        raise SystemExit(main())
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import run_main

    raise SystemExit(run_main(main))
