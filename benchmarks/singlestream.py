"""SingleStream on the CPU: the p90 latency of one sample at a time against the compute time of
the p90-length sample at the matrix peak measured beside it (issue 16, item 4: goal <= 1.3x).

    .venv/bin/python benchmarks/singlestream.py --write-docs
    .venv/bin/python benchmarks/singlestream.py --recipes torch:bf16,openvino:bf16 --samples 30

Each recipe runs ``--samples`` real SQuAD dev features (seeded draw), one at a time, each at its
own length (a batch of one, no padding but a runner's own length steps: what the harness does in
SingleStream, after the same untimed warm-up, ``harness.benchmark.warm_up``), BERT-Large random
weights. Every sample sits between two short probes of a 2048^3 matmul at the recipe's
precision, in the runtime that multiplies fastest at it here (``runtime_comparison.probe_for``).
"At peak" is the real-token FLOPs of the p90-length sample of the draw over the highest probe
rate of the recipe's run (the mean read up to 1.5x low when probes ran slow). Recipes are spelled as in ``recipe_accuracy.make_runner``.

``cpu:MODEL`` is the cpu system's recipe for MODEL here, or ``--sut``'s (another CPU system, by
name or .toml path: a copy of cpu.toml with a candidate recipe).

``--loadgen`` measures the scenario itself instead: each ``cpu:MODEL`` recipe runs ``packed-bert
run --sut cpu --model MODEL --scenario singlestream --mode performance`` in its own process (a
test run, or the full 600 s with ``--execution valid``: LoadGen issues the next sample when the
last is answered, back to back, and reports the p90 over every sample), between ``PROBE_READS`` probe readings before and after it; "at peak" is then the p90 of
the issued samples' lengths (the run's ``sample_tokens``) at the best reading.

    .venv/bin/python benchmarks/singlestream.py --loadgen --write-docs
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    Probe,
    class_markers,
    cpu_label,
    flops_by_format,
    real_token_flops,
    run_main,
    work_formats,
    write_doc_section,
)
from recipe_accuracy import make_runner  # noqa: E402
from runtime_comparison import ensure_probes, real_features  # noqa: E402
from throughput import SETTLE_S  # noqa: E402

from packed_bert.harness.benchmark import warm_up  # noqa: E402
from packed_bert.packing import sorted_batches  # noqa: E402


def say_for(recipe: str, msg: str) -> None:
    print(f"{recipe}: {msg}", flush=True)


# "cpu:MODEL": the cpu system's SingleStream recipe for MODEL on this machine's class, built as
# `packed-bert run --sut cpu --scenario singlestream` builds it (its options included)
DEFAULT_RECIPES = "cpu:bert-99,cpu:bert-99.9"


def system_recipe(model: str, threads: int, sut: str = "cpu") -> tuple[str, str, str, dict[str, Any]]:
    """(label, backend, precision, options) of the cpu system's SingleStream recipe for ``model`` here
    (``sut``: another CPU system's, by name or file)."""
    from packed_bert.backends.cpu_class import cpu_class
    from packed_bert.backends.devices import CALIBRATING_BACKENDS
    from packed_bert.errors import UserError
    from packed_bert.squad.calibration import load_calibration
    from packed_bert.systems import load_system
    from packed_bert.terms import Model, Scenario

    if model not in set(Model):
        raise UserError(f"{model}: not a model of the cpu system; name one of {', '.join(Model)}")
    system = load_system(sut)
    spec = system.for_cpu(cpu_class())
    backend, precision = spec.backend_for(model), spec.precision_for(model)
    options: dict[str, Any] = {"threads": threads, **spec.options_for(backend, Scenario.SINGLE_STREAM, precision)}
    if backend in CALIBRATING_BACKENDS:
        options.setdefault("calibration", load_calibration)
    shown = ", ".join(f"{k}={v}" for k, v in options.items() if k not in ("threads", "calibration"))
    return f"{system.name} {model}: {backend}:{precision}{f' ({shown})' if shown else ''}", backend, precision, options


def system_runner(model: str, base: Any, threads: int, sut: str = "cpu") -> tuple[str, str, Any]:
    """(label, the formats its FLOPs run in (``common.work_formats``), runner) of the cpu system's
    (or ``sut``'s) SingleStream recipe for ``model`` here."""
    from packed_bert.backends import create

    label, backend, precision, options = system_recipe(model, threads, sut)
    runner = create(backend, base, precision, "cpu", model=model, **options)
    return label, work_formats(precision, options), runner


PROBE_READS = 3  # probe readings before and after a LoadGen run (--loadgen); the best one counts


def result_row(
    recipe: str,
    samples: int,
    p50_s: float,
    p90_s: float,
    p90_len: int,
    precision: str,
    rates: dict[str, list[float]],
    yardsticks: dict[str, str],
) -> dict[str, Any]:
    """A table row: the p90 against the p90-length sample's FLOPs, each format's at the best probe
    reading of the recipe's run (a slow reading cannot lower it), the parts' times added."""
    parts = flops_by_format(np.array([p90_len]), precision)
    at_peak = sum(flops / max(rates[part]) for part, flops in parts.items())
    return {
        "recipe": recipe,
        "samples": samples,
        "p50_ms": round(1e3 * p50_s, 1),
        "p90_ms": round(1e3 * p90_s, 1),
        "p90_length": p90_len,
        "peak_gflops": round(real_token_flops(np.array([p90_len])) / at_peak / 1e9, 1),
        "yardstick": "+".join(yardsticks[part] for part in parts),
        "p90_length_at_peak_ms": round(1e3 * at_peak, 1),
        "ratio": round(p90_s / at_peak, 2),
    }


def probe_rates(parts: Sequence[str], probes: dict[str, Probe]) -> dict[str, list[float]]:
    """``PROBE_READS`` readings of each format's probe."""
    return {part: [probes[part].rate() for _ in range(PROBE_READS)] for part in parts}


def cpu_run_between_probes(
    model: str,
    scenario: str,
    more_argv: list[str],
    parts: Sequence[str],
    probes: dict[str, Probe],
    settle_s: float = 0.0,
    sut: str = "cpu",
) -> tuple[dict[str, Any], Any, dict[str, list[float]]]:
    """``packed-bert run --sut SUT --model MODEL --scenario SCENARIO --mode performance`` in its own
    process, as a user runs it (the probes' runtimes stay out of it), between ``PROBE_READS``
    readings of each format's probe before it and after it (``settle_s`` after the run first):
    (its summary.json, its LoadGen summary log, each format's readings)."""
    import subprocess
    import tempfile

    from packed_bert.errors import UserError
    from packed_bert.results.loadgen_logs import read_summary

    rates = probe_rates(parts, probes)
    argv = ["run", "--sut", sut, "--model", model, "--scenario", scenario, "--mode", "performance", *more_argv]
    with tempfile.TemporaryDirectory() as tmp:
        cli = "import sys; from packed_bert.cli import main; sys.exit(main(sys.argv[1:]))"
        status = subprocess.run([sys.executable, "-c", cli, *argv, "--results-dir", tmp]).returncode
        found = list(Path(tmp).glob("*/summary.json"))
        if status != 0 or not found:  # a finished run exits 0, VALID or not
            raise UserError(
                f"{sut} {model}: the LoadGen run failed (exit {status}); run `packed-bert {' '.join(argv)}` alone"
            )
        summary = json.loads(found[0].read_text())
        log = read_summary(found[0].parent / "mlperf_log_summary.txt")
    time.sleep(settle_s)
    for part, more in probe_rates(parts, probes).items():
        rates[part] += more
    return summary, log, rates


def loadgen_row(
    recipe: str,
    weights: str,
    execution: str,
    threads: int,
    n: int,
    probes: dict[str, Probe],
    yardsticks: dict[str, str],
    sut: str = "cpu",
) -> dict[str, Any]:
    """A ``cpu:MODEL`` recipe's LoadGen SingleStream run (``execution``: test or valid) against the
    probes around it (``sut``: another CPU system's recipe, by name or file)."""
    from packed_bert.errors import UserError

    if not recipe.startswith("cpu:"):
        raise UserError(f"--loadgen runs the cpu system's recipes (cpu:MODEL), not {recipe}")
    model = recipe.removeprefix("cpu:")
    label, _, recipe_precision, options = system_recipe(model, threads, sut)
    precision = work_formats(recipe_precision, options)
    formats = list(flops_by_format(np.array([1]), precision))
    ensure_probes(formats, probes, n, threads, yardsticks)
    more = ["--execution", execution, "--weights", weights]
    summary, log, rates = cpu_run_between_probes(model, "singlestream", more, formats, probes, sut=sut)
    p50_ns = float(log.fields["50.00 percentile latency (ns)"])
    validity = "VALID" if summary["valid"] else "INVALID"
    return result_row(
        f"{label}, LoadGen {validity}",
        summary["samples"],
        p50_ns / 1e9,
        float(summary["latency_p90_ms"]) / 1e3,
        int(summary["sample_tokens"]["p90"]),
        precision,
        rates,
        yardsticks,
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--recipes",
        default=DEFAULT_RECIPES,
        help="backend:precision[@option][@seq|@mask] list, as recipe_accuracy.py spells them, or cpu:MODEL "
        f"(the cpu system's recipe for MODEL here); default {DEFAULT_RECIPES}",
    )
    ap.add_argument("--sut", default="cpu", help="the CPU system whose cpu:MODEL recipes run, by name or .toml path")
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--weights", default="random")
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny model, synthetic features, 8 samples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loadgen", action="store_true", help="each cpu:MODEL through a LoadGen SingleStream run")
    ap.add_argument(
        "--execution",
        choices=("test", "valid"),
        default="test",
        help="--loadgen's run: test (about a minute) or valid (600 s, as submitted)",
    )
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args(argv)

    import torch

    threads = len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    n = 512 if args.quick else 2048
    cpu = cpu_label()
    probes: dict[str, Probe] = {}
    yardsticks: dict[str, str] = {}
    if args.loadgen:
        weights = "tiny" if args.quick else args.weights
        recipes = args.recipes.split(",")
        rows = [loadgen_row(r, weights, args.execution, threads, n, probes, yardsticks, args.sut) for r in recipes]
        return report(rows, cpu, threads, args, "singlestream-loadgen")
    ids, seg, lens = real_features(args.quick)
    count = 8 if args.quick else args.samples
    pick = np.random.default_rng(args.seed).choice(lens.size, size=count, replace=False)
    singles = [sorted_batches(ids[i : i + 1], seg[i : i + 1], lens[i : i + 1], 1)[0] for i in pick]
    p90_len = int(np.percentile(lens[pick], 90, method="higher"))
    from packed_bert.model.weights import load_model

    base = load_model("tiny" if args.quick else args.weights)
    rows = []
    for recipe in args.recipes.split(","):
        if recipe.startswith("cpu:"):
            recipe, precision, runner = system_runner(recipe.removeprefix("cpu:"), base, threads, args.sut)
        else:
            precision = recipe.split("@")[0].split(":")[1]
            runner = make_runner(recipe, base, threads)
        parts = flops_by_format(np.array([p90_len]), precision)  # a mixed recipe: one probe per format
        ensure_probes(parts, probes, n, threads, yardsticks)
        runner.infer(singles[0])  # warm-up
        warm_up([runner], 1, functools.partial(say_for, recipe))  # untimed, as the harness does
        latencies, rates = [], {part: [probes[part].rate()] for part in parts}
        for b in singles:
            time.sleep(SETTLE_S)
            start = time.perf_counter()
            runner.infer(b)
            latencies.append(time.perf_counter() - start)
            time.sleep(SETTLE_S)
            for part in parts:
                rates[part].append(probes[part].rate())
        p50, p90 = float(np.median(latencies)), float(np.percentile(latencies, 90))
        row = result_row(recipe, count, p50, p90, p90_len, precision, rates, yardsticks)
        rows.append(row)
        print(json.dumps(row), flush=True)
        del runner
    return report(rows, cpu, threads, args, "singlestream")


def report(rows: list[dict[str, Any]], cpu: str, threads: int, args: argparse.Namespace, section: str) -> int:
    for row in rows if args.loadgen else ():  # the direct rows were printed as they came
        print(json.dumps(row), flush=True)
    table = render(rows, cpu, threads, args)
    print(table)
    if args.write_docs and not args.quick:
        write_doc_section(*class_markers(section), table)
    return 0


def render(rows: list[dict[str, object]], cpu: str, threads: int, args: argparse.Namespace) -> str:
    argv = " ".join(a for a in sys.argv[1:] if a != "--write-docs")
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.loadgen:
        what = (
            f"each recipe through a LoadGen SingleStream {args.execution} run (every dev feature a sample, drawn by "
            f"LoadGen, back to back), {PROBE_READS} probe readings before and after it"
        )
    else:
        count = rows[0]["samples"] if rows else 0
        what = f"{count} real SQuAD dev features one at a time at their own length (seed {args.seed})"
    lines = [
        f"Command: `.venv/bin/python benchmarks/singlestream.py {argv}`  ",
        f"CPU: {cpu}, {threads} threads; BERT-Large random weights; {what}; {when}.",
        "",
        "| recipe | samples | p50 ms | p90 ms | p90 length | best probe beside, GFLOP/s (runtime) | p90-length sample at "
        "peak, ms | p90 / at peak (goal <= 1.3) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['recipe']} | {r['samples']} | {r['p50_ms']} | {r['p90_ms']} | {r['p90_length']} | "
            f"{r['peak_gflops']} ({r['yardstick']}) | {r['p90_length_at_peak_ms']} | {r['ratio']}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(run_main(main))
