"""Devices on a Ray cluster: scaling, added latency and the driver's batch rate, beside the
in-process devices. (The home-made TCP path this replaced was measured beside it before it was
removed: docs/performance.md keeps those figures.)

A local Ray cluster on this machine (``ray.cluster_utils.Cluster``, token authentication on):
a head without devices and ``--workers`` worker nodes, each declaring 8 SIMULATED Cloud AI 100
cards (``r282_z93_q8``-sized). The driver (this process) runs LoadGen, the QSL, packing and
scheduling; each card is one Ray actor.

1. Offline throughput with 1..N workers (8 cards each) against N x the throughput of one, and
   against capacity (cards x the published per-card rate), as ``benchmarks/scaling.py``.
2. Server p99: the same q8 Server run (``--server-qps``) with its 8 cards in-process, as Ray
   actors on one worker node; and the round trip
   of one Server-sized batch (``--roundtrip-samples`` packed) to a zero-time (null) device.
3. The driver's highest batch rate: 1-row batches to 4 zero-time (null) devices, two in flight
   per device, for ``--rate-seconds``.

    .venv/bin/python benchmarks/cluster_scaling.py [--workers 4] [--duration-ms 10000] [--write-docs]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import secrets
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from packed_bert.cluster import NULL_DEVICE, SIM_CARD, ClusterRequest, connect, make_cluster_runners
from packed_bert.harness.benchmark import run_benchmark
from packed_bert.harness.cluster_devices import cluster_request
from packed_bert.harness.config import RunConfig
from packed_bert.harness.plan import plan_run
from packed_bert.harness.qsl import SampleLibrary
from packed_bert.squad.features import load_features
from packed_bert.systems import load_system
from packed_bert.terms import Scenario

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_main, sample_features, write_doc_section  # noqa: E402

BEGIN, END = "<!-- cluster:begin -->", "<!-- cluster:end -->"
SUT = "r282_z93_q8"
CARDS = 8  # per worker node, as r282_z93_q8
IDLE_S = 3.0  # how long the idle cost of the cluster's processes is measured


def tree_cpu_s() -> float:
    """CPU seconds used so far by this process and all its descendants that are alive (the
    local cluster's raylets and actors, the TCP workers), so the figures can be told apart from
    other jobs on a shared machine."""
    parent: dict[int, int] = {}
    spent: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parent[int(entry)] = int(fields[1])
        spent[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    mine, total = {os.getpid()}, 0.0
    grew = True  # parents are not listed before their children: grow the set to a fixpoint
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in mine and pid not in mine:
                mine.add(pid)
                grew = True
    for pid in mine:
        total += spent.get(pid, 0.0)
    return total


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


# -- the local Ray cluster -------------------------------------------------------------------


@contextmanager
def ray_cluster(workers: int, resources: dict[str, float]) -> Iterator[Any]:
    """A head without devices and ``workers`` nodes declaring ``resources``; this process is
    a driver on it (token authentication on)."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": 512 << 20, "include_dashboard": False},
    )
    try:
        for _ in range(workers):
            cluster.add_node(num_cpus=1, object_store_memory=256 << 20, resources=dict(resources))
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def offline_cfg(tmp: Path, cards: int, args: argparse.Namespace, **kw: Any) -> RunConfig:
    rate = load_system(SUT).sim_samples_per_s[args.model]
    return RunConfig(
        sut=SUT,
        model=args.model,
        results_dir=tmp,
        target_qps=cards * rate,
        settings={"min_duration": str(args.duration_ms)},
        **kw,
    )


def offline_row(
    path: str,
    workers: int,
    cards: int,
    res: Any,
    wall: float,
    cpu: float,
    args: argparse.Namespace,
    idle: float | None = None,
) -> dict[str, Any]:
    rate = load_system(SUT).sim_samples_per_s[args.model]
    got = res.samples_per_second or 0.0
    row = {
        "path": path,
        "workers": workers,
        "cards": cards,
        "samples_per_second": got,
        "capacity": cards * rate,
        "fraction": got / (cards * rate),
        "valid": res.valid,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "idle_cpu_per_s": idle,
        "load": os.getloadavg()[0],
    }
    print(json.dumps(row), flush=True)
    return row


def offline_ray(args: argparse.Namespace, features: Any, tmp: Path) -> list[dict[str, Any]]:
    """Offline on 1..workers nodes of one cluster (the placement group packs 8 cards a node)."""
    rows = []
    with ray_cluster(args.workers, {SIM_CARD: CARDS}):
        for n in range(1, args.workers + 1):
            cfg = offline_cfg(tmp, n * CARDS, args)
            plan = plan_run(cfg)
            request = cluster_request(plan, SampleLibrary.from_features(features), n * CARDS)
            with connect(None) as handle:  # the benchmark's connection; frees the actors after
                runners = make_cluster_runners(handle, request)
                assert len({r.node for r in runners}) == n, "cards not packed 8 a node"
                cpu = tree_cpu_s()
                time.sleep(IDLE_S)  # what the cluster and its actors cost doing nothing
                idle = (tree_cpu_s() - cpu) / IDLE_S
                start, cpu = time.perf_counter(), tree_cpu_s()
                res = run_benchmark(cfg, features=features, runners=runners, quiet=True)
                rows.append(
                    offline_row("ray", n, n * CARDS, res, time.perf_counter() - start, tree_cpu_s() - cpu, args, idle)
                )
    return rows


def offline_local(args: argparse.Namespace, features: Any, tmp: Path) -> dict[str, Any]:
    start, cpu = time.perf_counter(), tree_cpu_s()
    res = run_benchmark(offline_cfg(tmp, CARDS, args), features=features, quiet=True)
    return offline_row("in-process", 1, CARDS, res, time.perf_counter() - start, tree_cpu_s() - cpu, args)


# -- Server and the per-batch round trip -------------------------------------------------------


def server_cfg(tmp: Path, args: argparse.Namespace, **kw: Any) -> RunConfig:
    return RunConfig(
        sut=SUT,
        model=args.model,
        scenario=Scenario.SERVER,
        results_dir=tmp,
        target_qps=args.server_qps,
        settings={"min_duration": str(args.duration_ms)},
        **kw,
    )


def server_run(path: str, cfg: RunConfig, features: Any, runners: list[Any] | None = None) -> dict[str, Any]:
    """One Server run; with the time each batch took on its device (for a remote device: the
    round trip), read from the run's SUT."""
    from packed_bert.harness import benchmark as runner_mod
    from packed_bert.harness.sut import BenchmarkSUT

    made: list[BenchmarkSUT] = []

    class Recorded(BenchmarkSUT):
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            made.append(self)

    runner_mod.BenchmarkSUT = Recorded  # type: ignore[misc]
    try:
        res = run_benchmark(cfg, features=features, runners=runners, quiet=True)
    finally:
        runner_mod.BenchmarkSUT = BenchmarkSUT  # type: ignore[misc]
    busy = np.asarray(made[0].stats.batch_busy) * 1e3
    s = res.summary
    row = {
        "path": path,
        "qps": s["target_qps"],
        "samples_per_second": s["samples_per_second"],
        "p99_ms": s["latency_p99_ms"],
        "valid": res.valid,
        "batch_p50_ms": float(np.percentile(busy, 50)),
        "batch_p99_ms": float(np.percentile(busy, 99)),
        "load": os.getloadavg()[0],
    }
    print(json.dumps(row), flush=True)
    return row


def null_batch(samples: int) -> Any:
    from packed_bert.packing import pack_batch

    ids, seg, lengths = sample_features(samples, seed=1)
    return pack_batch(ids, seg, lengths)


def roundtrip(name: str, infer: Callable[[Any], Any], batch: Any, n: int = 300) -> dict[str, Any]:
    for _ in range(10):
        infer(batch)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        infer(batch)
        times.append(time.perf_counter() - t0)
    ms = np.asarray(times) * 1e3
    row = {
        "path": name,
        "rows": int(batch.input_ids.shape[0]),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }
    print(json.dumps(row), flush=True)
    return row


def batch_rate(name: str, runners: list[Any], seconds: float, batch: Any) -> dict[str, Any]:
    """1-row batches, two callers per device, for ``seconds``: batches a second and the
    driver's CPU per batch."""
    stop = time.monotonic() + seconds
    counts = [0] * (2 * len(runners))

    def loop(i: int) -> None:
        runner = runners[i // 2]
        while time.monotonic() < stop:
            runner.infer(batch)
            counts[i] += 1

    cpu0, t0 = time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(counts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    total = sum(counts)
    row = {
        "path": name,
        "devices": len(runners),
        "batches_per_s": total / wall,
        "driver_cpu_ms_per_batch": cpu / total * 1e3,
    }
    print(json.dumps(row), flush=True)
    return row


def ray_latency_and_rate(args: argparse.Namespace, features: Any, tmp: Path) -> dict[str, list[dict[str, Any]]]:
    from packed_bert.backends import create

    out: dict[str, list[dict[str, Any]]] = {"server": [], "roundtrip": [], "rate": []}
    big, one_row = null_batch(args.roundtrip_samples), null_batch(1)
    local_null = create("null", "random", "fp32", "cpu")
    out["roundtrip"].append(roundtrip("in-process", local_null.infer, big))
    out["rate"].append(batch_rate("in-process", [create("null") for _ in range(4)], args.rate_seconds, one_row))
    out["server"].append(server_run("in-process", server_cfg(tmp, args), features))
    with ray_cluster(1, {SIM_CARD: CARDS, NULL_DEVICE: 4}), connect(None) as handle:
        null = ClusterRequest(
            backend="null",
            model=args.model,
            precision="fp32",
            weights="random",
            weights_id="random",
            simulated=False,
            resource=NULL_DEVICE,
        )
        nulls = make_cluster_runners(handle, null)
        out["roundtrip"].append(roundtrip("ray", nulls[0].infer, big))
        out["rate"].append(batch_rate("ray", nulls, args.rate_seconds, one_row))
        cfg = server_cfg(tmp, args)
        runners = make_cluster_runners(handle, cluster_request(plan_run(cfg), SampleLibrary.from_features(features)))
        out["server"].append(server_run("ray", cfg, features, runners))
    return out


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    rate = load_system(SUT).sim_samples_per_s[args.model]
    off = results["offline"]
    one = {p: next((r for r in off if r["path"] == p and r["workers"] == 1), None) for p in ("ray",)}
    cmd = (
        f"benchmarks/cluster_scaling.py --workers {args.workers} --duration-ms {args.duration_ms} "
        f"--server-qps {args.server_qps:g}"
    )
    intro = (
        f"SIMULATED cards, one machine ({cpu_model()}, {os.cpu_count()} cores), `{cmd}`, "
        f"{time.strftime('%Y-%m-%d')}, Ray {results['ray']}. A local Ray cluster (token "
        f"authentication on): a head without devices and worker nodes of {CARDS} simulated cards "
        f"each ({SUT}-sized; one Ray actor per card, two batches in flight per card); the "
        "driver runs LoadGen, the QSL, packing and scheduling. Capacity = cards x "
        f"{rate:g} samples/s; vs N x one = samples/s over N x the same path's one-worker figure. "
        "Offline, one test run per row. CPU s: CPU time of this process and its descendants "
        "during the run (the driver, the cluster's raylets and actors; not other "
        "jobs on the machine); of it idle: what the same processes use doing nothing (measured "
        f"for {IDLE_S:g} s before the run) times the run's length; load avg: the machine's 1-minute "
        "load after the run (other jobs included)."
    )
    lines = [
        *textwrap.wrap(intro, 95, break_on_hyphens=False),
        "",
        "| path | workers | simulated cards | samples/s | vs N x one | capacity fraction | valid | CPU s | of it idle | load avg |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in off:
        base = one.get(r["path"])
        vs = f"{r['samples_per_second'] / (r['workers'] * base['samples_per_second']):.3f}" if base else "-"
        idle = "-" if r["idle_cpu_per_s"] is None else f"{r['idle_cpu_per_s'] * r['wall_s']:.1f}"
        lines.append(
            f"| {r['path']} | {r['workers']} | {r['cards']} | {r['samples_per_second']:,.1f} | "
            f"{vs} | {r['fraction']:.1%} | {r['valid']} | {r['cpu_s']:.1f} | {idle} | {r['load']:.1f} |"
        )
    lines += [
        "",
        f"Server, {SUT} (8 simulated cards), {args.server_qps:g} QPS, "
        f"{args.duration_ms / 1e3:g} s: LoadGen's p99 over all samples, and the time a batch "
        "took from the device pool's call to its logits (for Ray: the round trip, "
        "with the card's simulated time):",
        "",
        "| path | samples/s | p99 ms | valid | a batch on its device, p50 / p99 ms | load avg |",
        "| --- | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in results["server"]:
        lines.append(
            f"| {r['path']} | {r['samples_per_second']:,.1f} | {r['p99_ms']:.1f} | {r['valid']} | "
            f"{r['batch_p50_ms']:.1f} / {r['batch_p99_ms']:.1f} | {r['load']:.1f} |"
        )
    rows = results["roundtrip"][0]["rows"] if results["roundtrip"] else 0
    lines += [
        "",
        f"Round trip of one batch ({args.roundtrip_samples} samples packed: {rows} rows) "
        "to a zero-time (null) device, 300 calls:",
        "",
        "| path | p50 ms | p99 ms |",
        "| --- | ---: | ---: |",
    ]
    for r in results["roundtrip"]:
        lines.append(f"| {r['path']} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
    lines += [
        "",
        f"Driver batch rate: 1-row batches to 4 zero-time (null) devices (two callers "
        f"per device), {args.rate_seconds:g} s:",
        "",
        "| path | batches/s | driver CPU ms per batch |",
        "| --- | ---: | ---: |",
    ]
    for r in results["rate"]:
        lines.append(f"| {r['path']} | {r['batches_per_s']:,.0f} | {r['driver_cpu_ms_per_batch']:.3f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="bert-99")
    ap.add_argument("--workers", type=int, default=4, help="worker nodes of 8 simulated cards (1..N)")
    ap.add_argument("--duration-ms", type=int, default=10_000)
    ap.add_argument("--server-qps", type=float, default=4000.0)
    ap.add_argument("--roundtrip-samples", type=int, default=20, help="a Server batch (5 ms of 4,000 QPS)")
    ap.add_argument("--rate-seconds", type=float, default=5.0)
    ap.add_argument("--skip", default="", help="comma list of offline,latency to leave out")
    ap.add_argument("--dataset", type=Path)
    ap.add_argument("--vocab", type=Path)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    features = load_features(args.dataset, args.vocab)
    skip = set(filter(None, args.skip.split(",")))
    # token authentication for the clusters below (Ray reads this once, on first use)
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    import ray

    results: dict[str, Any] = {"ray": ray.__version__, "offline": [], "server": [], "roundtrip": [], "rate": []}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        if "offline" not in skip:
            results["offline"].append(offline_local(args, features, tmp))
            results["offline"] += offline_ray(args, features, tmp)
        if "latency" not in skip:
            for part in [ray_latency_and_rate]:
                for key, rows in part(args, features, tmp).items():
                    results[key] += rows
    table = render(results, args)
    print(table)
    if args.write_docs:
        write_doc_section(BEGIN, END, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
