"""Devices on a Ray cluster (``packed_bert.cluster``), on a small local cluster: a head and two
worker nodes in this machine, with token authentication on.

Runs here are compared with the same run in-process; actors are killed mid-run; other drivers
(a second run, a wrong token, the embedded cluster, Ray Client) are subprocesses. The cluster
is shared by the module's tests and shut down after them.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the cluster tests need Ray: pip install 'packed-bert[cluster]'")

from helpers.fakes import expected_logits, synthetic_features  # noqa: E402
from helpers.runs import decode_log as _decode  # noqa: E402
from helpers.runs import run_with_timeout as _run  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from packed_bert.cluster import (  # noqa: E402
    CPU_GROUP,
    NULL_DEVICE,
    SIM_CARD,
    ClusterHandle,
    ClusterRequest,
    ClusterRunner,
    connect,
    describe_nodes,
    make_cluster_runners,
    weights_id,
)
from packed_bert.errors import UserError  # noqa: E402
from packed_bert.harness.cluster_devices import cluster_request  # noqa: E402
from packed_bert.harness.config import RunConfig  # noqa: E402
from packed_bert.harness.errors import RunError  # noqa: E402
from packed_bert.harness.plan import plan_run  # noqa: E402
from packed_bert.harness.qsl import SampleLibrary  # noqa: E402
from packed_bert.harness.sut import BenchmarkSUT  # noqa: E402

NODE = {"num_cpus": 1, "object_store_memory": 80 << 20}
WORKER_DEVICES = {SIM_CARD: 1, CPU_GROUP: 1, NULL_DEVICE: 1}

_TARGETS = """
[target_qps."bert-99"]
Offline = 100
Server = 10
SingleStream = 10
[target_qps."bert-99.9"]
Offline = 100
Server = 10
SingleStream = 10
"""
TINY_TORCH = (
    """
name = "tiny_torch"
description = "tiny random BERT, torch fp32 (tests)"
devices = 1
backend = "torch"
weights = "tiny"
[batching]
Offline = "packed"
[precision]
"bert-99" = "fp32"
"bert-99.9" = "fp32"
[batch_size]
Offline = 8
Server = 4
SingleStream = 1
"""
    + _TARGETS
)
SLOW_SIM = (
    """
name = "slow_sim"
description = "a SIMULATED card slow enough to be killed mid-batch (tests)"
devices = 1
backend = "sim"
simulated = true
weights = "random"
inflight_per_device = 2
backend_options = {logits = "cheap"}
[batching]
Offline = "packed"
Server = "packed"
[precision]
"bert-99" = "int8"
"bert-99.9" = "fp16"
[batch_size]
Offline = 24
Server = 8
SingleStream = 1
[sim_samples_per_s]
"bert-99" = 60.0
"bert-99.9" = 60.0
"""
    + _TARGETS
)


def _use_auth(env: dict[str, str | None]) -> None:
    """Set Ray's authentication variables in this process and make Ray read them again (it
    reads them once, when first asked; a user's driver starts with them set)."""
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head (one simulated card) and two worker nodes (a simulated card, a CPU group and a
    null device each), token authentication on; this process is a driver on it."""
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "GRPC_ENABLE_FORK_SUPPORT")}
    # the head's Ray Client proxy forks a server per client; with gRPC's fork handlers on, that
    # server died at start about one time in four here ("SpecificServer startup failed")
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "0"
    _use_auth({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)})
    client_port = _free_port()
    c = Cluster(
        initialize_head=True,
        head_node_args={
            **NODE,
            "include_dashboard": False,
            "resources": {SIM_CARD: 1},
            "ray_client_server_port": client_port,
        },
    )
    c.client_address = f"ray://127.0.0.1:{client_port}"  # type: ignore[attr-defined]
    try:
        for _ in range(2):
            c.add_node(**NODE, resources=dict(WORKER_DEVICES))
        ray.init(address=c.address, log_to_driver=False, logging_level=logging.ERROR)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        _use_auth(saved)


@pytest.fixture
def handle(cluster: Cluster) -> Iterator[ClusterHandle]:
    """This test's use of the cluster; its actors and devices are freed after it."""
    with connect(cluster.address) as h:
        yield h


def _request(cfg: RunConfig, feats: Any, devices: int | None = None, timeout_s: float = 10.0) -> ClusterRequest:
    plan = plan_run(cfg)
    return cluster_request(plan, SampleLibrary.from_features(feats, cfg.sample_count), devices, timeout_s)


def _system(tmp_path: Path, text: str) -> str:
    path = tmp_path / "system.toml"
    path.write_text(text)
    return str(path)


def _kill_mid_batch(runner: ClusterRunner, after_s: float = 0.05) -> threading.Event:
    """SIGKILL the runner's actor process ``after_s`` into its first batch; the event is set
    once it was killed."""
    pid = ray.get(runner.actor.pid.remote())
    killed, armed = threading.Event(), threading.Lock()  # armed: taken once, never released
    infer = runner.infer

    def kill() -> None:
        os.kill(pid, signal.SIGKILL)
        killed.set()

    def first_batch_kills(batch: Any) -> np.ndarray:
        if armed.acquire(blocking=False):  # one timer: a second batch in flight would kill a process already gone
            threading.Timer(after_s, kill).start()
        return infer(batch)

    runner.infer = first_batch_kills  # type: ignore[method-assign]
    return killed


def _null_request(**kw: Any) -> ClusterRequest:
    base: dict[str, Any] = dict(
        backend="null",
        model="bert-99",
        precision="fp32",
        weights="random",
        weights_id="random",
        simulated=False,
        resource=NULL_DEVICE,
    )
    return ClusterRequest(**{**base, **kw})


def _driver(script: str, env: dict[str, str | None] | None = None) -> subprocess.Popen[str]:
    """Another driver process running ``script``, with ``env`` changed (``None``: unset)."""
    full = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for key, value in (env or {}).items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full,
    )


def _wait_free(resource: str, count: int, timeout_s: float = 20.0) -> None:
    end = time.monotonic() + timeout_s
    while ray.available_resources().get(resource, 0) < count:
        assert time.monotonic() < end, f"{resource} not freed: {ray.available_resources()}"
        time.sleep(0.2)


# -- runs ------------------------------------------------------------------------------------


def test_a_run_on_the_cluster_equals_the_in_process_run(
    handle: ClusterHandle,
    tmp_path: Path,
) -> None:
    feats = synthetic_features(40, seed=3)
    cfg = RunConfig(sut=_system(tmp_path, TINY_TORCH), mode="accuracy", results_dir=tmp_path, sample_count=40)
    local = _run(cfg, features=feats)
    runners = make_cluster_runners(handle, _request(cfg, feats))  # a CPU group on each worker
    assert len(runners) == 2 and len({r.node for r in runners}) == 2
    assert all(r.name == "ray/torch" and r.precision == "fp32" and not r.simulated for r in runners)
    # each node's CPU group gets the cores, not the one thread Ray gives a worker asking for none
    assert [r.info.threads for r in runners] == [len(os.sched_getaffinity(0))] * 2
    assert all(f"there, {len(os.sched_getaffinity(0))} threads: " in r.detail for r in runners)
    on_cluster = _run(cfg, features=feats, runners=runners, timeout=120.0)
    want = _decode(local.run_dir / "mlperf_log_accuracy.json")
    got = _decode(on_cluster.run_dir / "mlperf_log_accuracy.json")
    assert sorted(got) == sorted(want) == list(range(40))
    for idx in want:  # other batches (two devices): the same sequences, not bit-identical
        assert len(got[idx]) == 1
        np.testing.assert_allclose(got[idx][0], want[idx][0], rtol=0, atol=1e-4)
    desc = json.loads((on_cluster.run_dir / "system.json").read_text())
    assert desc["devices"] == 2 and desc["number_of_nodes"] == 2
    assert [n["node"] for n in describe_nodes(runners)] == [n["node"] for n in desc["nodes"]]
    assert desc["runners"][0]["name"] == "ray/torch"


def test_an_actor_killed_mid_run_loses_no_sample_and_answers_none_twice(
    handle: ClusterHandle,
    tmp_path: Path,
    suts: list[BenchmarkSUT],
) -> None:
    feats = synthetic_features(150, seed=4)
    cfg = RunConfig(sut=_system(tmp_path, SLOW_SIM), mode="accuracy", results_dir=tmp_path, sample_count=150)
    runners = make_cluster_runners(handle, _request(cfg, feats))  # three simulated cards
    assert len(runners) == 3 and all(r.simulated and r.inflight == 2 for r in runners)
    killed = _kill_mid_batch(runners[1])
    res = _run(cfg, features=feats, runners=runners, timeout=120.0)
    assert killed.is_set()
    got = _decode(res.run_dir / "mlperf_log_accuracy.json")
    assert sorted(got) == list(range(150))
    for idx, payloads in got.items():
        assert len(payloads) == 1, f"sample {idx} answered {len(payloads)} times"
        np.testing.assert_allclose(payloads[0], expected_logits(feats, idx), rtol=0, atol=1e-6)
    (pool,) = [s.pool for s in suts]
    (lost,) = pool.lost
    assert pool.error is None and lost.device == 1 and lost.resent >= 1
    assert runners[1].node in lost.runner and "ActorDiedError" in lost.reason


def test_no_actor_left_fails_the_run_in_one_line(
    handle: ClusterHandle,
    tmp_path: Path,
) -> None:
    feats = synthetic_features(60, seed=5)
    cfg = RunConfig(
        sut=_system(tmp_path, SLOW_SIM), results_dir=tmp_path, target_qps=60.0, settings={"min_duration": "3000"}
    )
    (only,) = make_cluster_runners(handle, _request(cfg, feats, devices=1))
    _kill_mid_batch(only)
    start = time.monotonic()
    with pytest.raises(RunError, match="all 1 devices were lost") as info:
        _run(cfg, features=feats, runners=[only], timeout=60.0)
    assert time.monotonic() - start < 60
    line = str(info.value)
    assert "\n" not in line and only.node in line and info.value.exit_code == 1


def test_a_silent_device_is_lost_after_the_batch_timeout_and_cannot_answer_late(
    handle: ClusterHandle,
) -> None:
    from packed_bert.backends.base import DeviceLost
    from packed_bert.backends.sim import SimTiming
    from packed_bert.cluster.wire import ArrayBatch

    req = _null_request(
        backend="sim",
        precision="int8",
        resource=SIM_CARD,
        simulated=True,
        devices=1,
        sim_timing=SimTiming(30.0, 0.0),
        batch_timeout_s=0.5,
    )
    (slow,) = make_cluster_runners(handle, req)
    ids = np.ones((2, 384), np.int32)
    with pytest.raises(DeviceLost, match=r"no answer in 0.5 s"):
        slow.infer(ArrayBatch(ids, ids, ids, ids[:, :1]))
    # killed, so its answer never comes. ray.kill lands asynchronously, and the actor takes two
    # calls at once (inflight 2), so a call just after the kill may still be answered: ask until
    # the actor is gone, well before the 30 s batch could finish
    deadline = time.monotonic() + 20
    with pytest.raises(ray.exceptions.RayActorError):
        while time.monotonic() < deadline:
            ray.get(slow.actor.pid.remote(), timeout=20)
            time.sleep(0.1)
    with pytest.raises(DeviceLost, match="lost earlier"):
        slow.infer(ArrayBatch(ids, ids, ids, ids[:, :1]))


# -- devices and who holds them ----------------------------------------------------------------


def test_two_runs_cannot_share_a_device_and_a_stopped_run_frees_them(
    cluster: Cluster,
    handle: ClusterHandle,
) -> None:
    holder = f"""
        import sys, time
        from packed_bert.cluster import ClusterRequest, NULL_DEVICE, connect, make_cluster_runners
        from packed_bert.signals import stop_on_signals
        req = ClusterRequest(backend="null", model="bert-99", precision="fp32", weights="random",
                             weights_id="random", simulated=False, resource=NULL_DEVICE,
                             run_name="holder")
        try:
            with stop_on_signals(), connect({cluster.address!r}) as handle:  # as the CLI does
                print("holding", len(make_cluster_runners(handle, req)), flush=True)
                time.sleep(120)
        except KeyboardInterrupt as exc:
            print("released:", exc, flush=True)
    """
    for stop in (signal.SIGTERM, signal.SIGKILL):
        proc = _driver(holder)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "holding 2", proc.stderr.read() if proc.stderr else ""
            with pytest.raises(UserError) as info:
                make_cluster_runners(handle, _null_request(placement_timeout_s=1.0))
            line = str(info.value)
            assert "\n" not in line and f"--cluster {cluster.address}: 2 x {NULL_DEVICE} wanted, 0 free" in line
            assert f"held by packed-bert holder on {os.uname().nodename} pid {proc.pid}" in line
            proc.send_signal(stop)
            out, _ = proc.communicate(timeout=30)
        finally:
            proc.kill()
        if stop == signal.SIGTERM:  # released by the driver itself
            assert "released: stopped by SIGTERM" in out and proc.returncode == 0
        _wait_free(NULL_DEVICE, 2)  # after SIGKILL: Ray ends the dead driver's job
    assert len(make_cluster_runners(handle, _null_request())) == 2


def test_a_device_that_runs_something_else_is_named_in_one_line(
    handle: ClusterHandle,
    tmp_path: Path,
) -> None:
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"A" * 4096)
    want = weights_id(str(ckpt))
    ckpt.write_bytes(b"B" * 4096)  # same name and size, other content: another fine-tune
    with pytest.raises(UserError) as info:
        make_cluster_runners(handle, _null_request(weights=str(ckpt), weights_id=want))
    line = str(info.value)
    assert "\n" not in line and " device " in line and "node " in line
    assert f"weights {weights_id(str(ckpt))} (this run: {want})" in line
    _wait_free(NULL_DEVICE, 2)  # nothing stays reserved
    req = _null_request(backend="sim", precision="int8", resource=SIM_CARD, devices=1)
    with pytest.raises(UserError, match=r"simulated device \(this run: real\)"):
        make_cluster_runners(handle, req)
    with pytest.raises(UserError, match=f"5 x {NULL_DEVICE} wanted, the cluster has 2"):
        make_cluster_runners(handle, _null_request(devices=5))


# -- other drivers: authentication, the embedded cluster, Ray Client --------------------------


_FAILS_IN_ONE_LINE = """
    import sys
    from packed_bert.errors import UserError
    from packed_bert.cluster import connect
    try:
        connect({address!r})
    except UserError as exc:
        print(exc)
        sys.exit(2)
"""


def test_joining_with_a_wrong_token_is_refused_in_one_line(cluster: Cluster) -> None:
    proc = _driver(
        _FAILS_IN_ONE_LINE.format(address=cluster.address),
        {"RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_gcs_server_port_wait_time_s": "1"},
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert out.strip() == (
        f"--cluster {cluster.address}: the cluster refused this driver's authentication token; "
        "set RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or "
        "~/.ray/auth_token) here"
    )


def test_the_embedded_cluster_has_token_auth_and_sigterm_leaves_no_process(tmp_path: Path) -> None:
    """``connect(None)``: Ray's own default turns token authentication on and writes the token
    under HOME; SIGTERM ends the run and stops every process of the embedded cluster."""
    script = """
        import json, time
        import numpy as np
        import ray
        from packed_bert.cluster import ClusterRequest, NULL_DEVICE, connect, make_cluster_runners
        from packed_bert.cluster.wire import ArrayBatch
        from packed_bert.signals import stop_on_signals
        req = ClusterRequest(backend="null", model="bert-99", precision="fp32", weights="random",
                             weights_id="random", simulated=False, resource=NULL_DEVICE,
                             devices_per_node=2)
        ids = np.ones((3, 384), np.int32)
        batch = ArrayBatch(ids, ids, ids, np.full((3, 1), 384, np.int32))
        try:
            with stop_on_signals(), connect(None, node_resources=req.node_resources(), object_store_mb=80) as handle:
                runners = make_cluster_runners(handle, req)
                node = ray._private.worker._global_node
                pids = [p.process.pid for procs in node.all_processes.values() for p in procs]
                pids += [ray.get(r.actor.pid.remote()) for r in runners]
                print(json.dumps({"devices": len(runners), "token": handle.token_auth,
                                  "shape": list(runners[0].infer(batch).shape), "pids": pids}),
                      flush=True)
                time.sleep(120)
        except KeyboardInterrupt:
            print("released", flush=True)
    """
    env: dict[str, str | None] = {"HOME": str(tmp_path), "RAY_AUTH_MODE": None, "RAY_AUTH_TOKEN": None}
    proc = _driver(script, env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        info = json.loads(line)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert info["devices"] == 2 and info["token"] is True and info["shape"] == [3, 384, 2]
    assert (tmp_path / ".ray" / "auth_token").is_file()  # Ray's default for a local cluster
    assert "released" in out and proc.returncode == 0, err
    end = time.monotonic() + 30
    alive = info["pids"]
    while alive and time.monotonic() < end:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.5)
    assert not alive, f"embedded cluster processes left: {alive}"


def test_a_ray_client_address_joins_with_the_token(cluster: Cluster) -> None:
    script = f"""
        import numpy as np
        from packed_bert.cluster import ClusterRequest, NULL_DEVICE, connect, make_cluster_runners
        from packed_bert.cluster.wire import ArrayBatch
        req = ClusterRequest(backend="null", model="bert-99", precision="fp32", weights="random",
                             weights_id="random", simulated=False, resource=NULL_DEVICE, devices=1)
        ids = np.ones((2, 384), np.int32)
        with connect({cluster.client_address!r}) as handle:
            (runner,) = make_cluster_runners(handle, req)
            print(list(runner.infer(ArrayBatch(ids, ids, ids, ids[:, :1])).shape), handle.token_auth)
    """
    proc = _driver(script)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.split() == ["[2,", "384,", "2]", "True"]


def test_connection_failures_are_one_line() -> None:
    """Ray Client retries a refused token until it times out (about 30 s; not run here): the
    line says both causes."""
    from packed_bert.cluster.connection import _connect_error

    line = _connect_error("ray://h:10001", ConnectionError("ray client connection timeout"))
    assert line.startswith("--cluster ray://h:10001: no Ray Client server accepted this driver")
    assert "RAY_AUTH_MODE=token" in line
    line = _connect_error("h:6379", ConnectionError("Failed to connect to Ray cluster at h:6379"))
    assert line.startswith("--cluster h:6379: no Ray cluster answered (Failed to connect")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_cli_runs_a_system_on_the_embedded_cluster(shared_data: Path, tmp_path: Path) -> None:
    """``packed-bert run --cluster ray``: no set-up; system.json names the node and cluster."""
    cmd = [
        sys.executable,
        "-m",
        "packed_bert.cli",
        "run",
        "--sut",
        "r282_z93_q1",
        "--cluster",
        "ray",
        "--count",
        "400",
        "--setting",
        "min_duration=1000",
        "--results-dir",
        str(tmp_path),
        "--dataset",
        str(shared_data / "squad" / "dev-v1.1.json"),
        "--vocab",
        str(shared_data / "vocab" / "bert-uncased-vocab.txt"),
    ]
    env = dict(os.environ, HOME=str(tmp_path), GRPC_ENABLE_FORK_SUPPORT="0")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["simulated"] is True and summary["devices_lost"] == []
    system = json.loads((Path(summary["run_dir"]) / "system.json").read_text())
    assert system["devices"] == 1 and system["number_of_nodes"] == 1
    assert system["cluster"]["address"] == "ray (embedded)" and system["cluster"]["token_authentication"]
    assert [n["devices"] for n in system["nodes"]] == [1]
