"""Multi-host over localhost TCP: `packed-bert serve` workers of a SIMULATED system, and a lead
that uses only their devices (``--no-local-devices --hosts ...``), LoadGen Offline.

Each worker is its own process serving all the cards of ``--sut`` (r282_z93_q8: 8 simulated
Cloud AI 100 cards). The capacity is remote cards x the published per-card rate, as in
``benchmarks/scaling.py``; the fraction shows what the TCP hop and the lead cost. Runs with 2
workers, then 1.

    .venv/bin/python benchmarks/multihost.py [--sut r282_z93_q8] [--duration-ms 10000] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from packed_bert.harness.benchmark import run_benchmark
from packed_bert.harness.config import RunConfig
from packed_bert.squad.features import load_features
from packed_bert.systems import load_system

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_doc_section  # noqa: E402

BEGIN, END = "<!-- multihost:begin -->", "<!-- multihost:end -->"


def spawn_worker(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    """``packed-bert serve`` on a free localhost port; returns the process and its address."""
    cmd = [sys.executable, "-m", "packed_bert.cli", "serve", "--sut", args.sut, "--model", args.model,
           "--listen", "127.0.0.1:0"]
    for flag in ("dataset", "vocab"):
        if getattr(args, flag):
            cmd += [f"--{flag}", str(getattr(args, flag))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.match(r"serve: (\S+) serves ", line)
        if found:
            return proc, found.group(1)
    raise SystemExit(f"worker did not start: {' '.join(cmd)}")


def stop(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def measure(args: argparse.Namespace, workers: int, features: Any, tmp: Path) -> dict[str, Any]:
    spec = load_system(args.sut)
    assert spec.devices is not None
    cards = workers * spec.devices
    rate = spec.sim_samples_per_s[args.model]
    capacity = cards * rate
    procs: list[subprocess.Popen[str]] = []
    try:
        hosts = []
        for _ in range(workers):
            proc, address = spawn_worker(args)
            procs.append(proc)
            hosts.append(address)
        cfg = RunConfig(sut=args.sut, model=args.model, results_dir=tmp, target_qps=capacity,
                        hosts=tuple(hosts), local_devices=False,
                        settings={"min_duration": str(args.duration_ms)})
        start = time.perf_counter()
        res = run_benchmark(cfg, features=features, quiet=True)
        wall = time.perf_counter() - start
    finally:
        stop(procs)
    got = res.samples_per_second or 0.0
    row = {"workers": workers, "cards": cards, "samples_per_second": got, "capacity": capacity,
           "fraction": got / capacity, "simulated": res.simulated, "valid": res.valid,
           "token_efficiency": res.summary.get("token_efficiency"), "wall_s": round(wall, 1)}
    print(json.dumps(row), flush=True)
    return row


def render(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    spec = load_system(args.sut)
    rate = spec.sim_samples_per_s[args.model]
    text = (
        f"SIMULATED cards, localhost TCP: `benchmarks/multihost.py --sut {args.sut} "
        f"--duration-ms {args.duration_ms}`, one Offline test run per row. Each worker is a "
        f"`packed-bert serve --sut {args.sut} --model {args.model}` process with "
        f"{spec.devices} simulated cards, on the same 2-core machine as the lead, which runs "
        "LoadGen with `--no-local-devices --hosts ...` (two connections per remote card). "
        f"Capacity = cards x {rate:g} samples/s (the published per-card rate), as in "
        "`benchmarks/scaling.py`."
    )
    lines = [
        *textwrap.wrap(text, 95, break_on_hyphens=False),
        "",
        "| workers | simulated cards | samples/s | capacity | fraction |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['workers']} | {r['cards']} | {r['samples_per_second']:,.1f} | "
                     f"{r['capacity']:,.1f} | {r['fraction']:.1%} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sut", default="r282_z93_q8", help="a simulated system")
    ap.add_argument("--model", default="bert-99")
    ap.add_argument("--duration-ms", type=int, default=10_000)
    ap.add_argument("--workers", default="2,1", help="worker counts to run, in order")
    ap.add_argument("--dataset", type=Path)
    ap.add_argument("--vocab", type=Path)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    if not load_system(args.sut).simulated:
        raise SystemExit(f"--sut {args.sut}: choose a simulated system (this machine has no cards)")
    features = load_features(args.dataset, args.vocab)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(args, int(n), features, Path(tmp)) for n in args.workers.split(",")]
    table = render(rows, args)
    print(table)
    if args.write_docs:
        write_doc_section(BEGIN, END, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
