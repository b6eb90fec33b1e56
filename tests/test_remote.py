"""Multi-host: the framing, a worker (``packed-bert serve``) and runs whose devices are on it.

Everything runs on 127.0.0.1 with port 0 (any free port); workers run in threads, or as
``serve`` subprocesses where a test kills or interrupts one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.fakes import synthetic_features

import packed_bert.squad.features as squad_features_mod
from packed_bert import cli
from packed_bert.backends import create
from packed_bert.harness.config import RunConfig
from packed_bert.packing import pack_batch
from packed_bert.remote import protocol as wire
from packed_bert.remote.client import RemoteRunner
from packed_bert.remote.server import WorkerServer, build_worker, worker_info

TINY_SYSTEM = """
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
Offline = 4
Server = 4
SingleStream = 1
[target_qps."bert-99"]
Offline = 100
Server = 10
SingleStream = 10
[target_qps."bert-99.9"]
Offline = 100
Server = 10
SingleStream = 10
"""


@pytest.fixture
def workers() -> Iterator[list[WorkerServer]]:
    """Workers started by a test (``_start``) are closed after it."""
    started: list[WorkerServer] = []
    yield started
    for server in started:
        server.close()


def _start(started: list[WorkerServer], cfg: RunConfig, features: Any = None) -> WorkerServer:
    server = build_worker(cfg, "127.0.0.1:0", features=features)
    server.start()
    started.append(server)
    return server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_line_error(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _packed_batch(n: int, seed: int = 0) -> Any:
    """``n`` synthetic features packed into one batch."""
    feats = synthetic_features(n, seed=seed)
    return pack_batch(feats.input_ids.astype(np.int32), feats.segment_ids.astype(np.int32),
                      feats.lengths.astype(np.int64))


def _fake_squad(monkeypatch: pytest.MonkeyPatch, n: int) -> Any:
    """SQuAD features for runs and simulated workers: ``n`` synthetic ones instead."""
    feats = synthetic_features(n)
    monkeypatch.setattr(squad_features_mod, "load_features", lambda *a, **k: feats)
    return feats


# -- framing ---------------------------------------------------------------------------------


def test_framing_round_trip_with_empty_arrays() -> None:
    arrays = {
        "ids": np.arange(12, dtype=np.int32).reshape(3, 4),
        "index": np.array([[-1, 7]], dtype=np.int64),
        "logits": np.linspace(-1, 1, 24, dtype=np.float32).reshape(3, 4, 2),
        "empty": np.zeros((0, 384), dtype=np.int32),
        "scalarish": np.zeros((2, 0, 2), dtype=np.float32),
        "strided": np.arange(20, dtype=np.int32).reshape(4, 5)[:, ::2],  # not contiguous
    }
    a, b = socket.socketpair()
    with a, b:
        wire.send(a, wire.Message("infer", {"k": [1, "x"]}, arrays))
        wire.send(a, wire.Message("bye"))
        got = wire.recv(b)
        assert got is not None and got.op == "infer" and got.fields == {"k": [1, "x"]}
        assert list(got.arrays) == list(arrays)
        for name, want in arrays.items():
            assert got.arrays[name].dtype == want.dtype and got.arrays[name].shape == want.shape
            np.testing.assert_array_equal(got.arrays[name], want)
        bye = wire.recv(b)
        assert bye is not None and bye.op == "bye" and not bye.arrays
        a.close()
        assert wire.recv(b) is None  # closed between messages


def test_framing_refuses_other_dtypes_both_ways() -> None:
    for bad in (np.zeros(3, np.uint16), np.zeros(3, np.float64), np.array(["x"]), np.zeros(2, object)):
        with pytest.raises(wire.ProtocolError, match="not allowed"):
            wire.encode(wire.Message("infer", arrays={"a": bad}))
    header = json.dumps({"op": "infer", "arrays": [{"name": "a", "dtype": "object", "shape": [1]}]}).encode()
    a, b = socket.socketpair()
    with a, b:
        a.sendall(wire.PREFIX.pack(wire.MAGIC, len(header), 8) + header + bytes(8))
        with pytest.raises(wire.ProtocolError, match="not allowed"):
            wire.recv(b)
    a, b = socket.socketpair()
    with a, b:  # the body must be exactly what the shapes say
        header = json.dumps({"op": "x", "arrays": [{"name": "a", "dtype": "int32", "shape": [2]}]}).encode()
        a.sendall(wire.PREFIX.pack(wire.MAGIC, len(header), 4) + header + bytes(4))
        with pytest.raises(wire.ProtocolError, match="need 8"):
            wire.recv(b)
    a, b = socket.socketpair()
    with a, b:
        a.sendall(struct.pack("!4sIQ", b"HTTP", 1, 0))
        with pytest.raises(wire.ProtocolError, match="magic"):
            wire.recv(b)


def test_worker_answers_bad_requests_with_errors(workers: list[WorkerServer]) -> None:
    server = _start(workers, RunConfig(sut="null"))
    host, port = server.address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        wire.send(sock, wire.Message("hello", {"version": 999}))
        reply = wire.recv(sock)
        assert reply is not None and reply.op == "error" and f"speaks {wire.VERSION}" in reply.fields["message"]
        ids = np.zeros((2, 8), np.int32)
        wire.send(sock, wire.Message("infer", arrays={"input_ids": ids}))
        reply = wire.recv(sock)
        assert reply is not None and reply.op == "error" and "hello" in reply.fields["message"]
        wire.send(sock, wire.Message("hello", {"version": wire.VERSION, "device": 0}))
        reply = wire.recv(sock)
        assert reply is not None and reply.op == "hello" and reply.fields["devices"] == 1
        wire.send(sock, wire.Message("infer", arrays={"input_ids": ids}))  # missing arrays
        reply = wire.recv(sock)
        assert reply is not None and reply.op == "error" and "seq_lens" in reply.fields["message"]
        batch = {k: ids for k in ("input_ids", "segment_ids", "position_ids")}
        wire.send(sock, wire.Message("infer", arrays={**batch, "seq_lens": np.zeros((2, 3), np.int32)}))
        reply = wire.recv(sock)  # the connection is still usable after errors
        assert reply is not None and reply.op == "logits" and reply.arrays["logits"].shape == (2, 8, 2)


# -- RemoteRunner ----------------------------------------------------------------------------


def test_remote_runner_gives_the_local_runners_logits(workers: list[WorkerServer]) -> None:
    batch = _packed_batch(24, seed=3)
    local = create("torch", "tiny", "fp32", "cpu")
    served = create("torch", "tiny", "fp32", "cpu")
    plan_like = _plan_like("tiny_torch", "tiny", "fp32", "torch")
    server = WorkerServer([served], worker_info(plan_like, [served]), "127.0.0.1:0")
    server.start()
    workers.append(server)
    remote = RemoteRunner(server.address, 0)
    try:
        got = remote.infer(batch)
        want = local.infer(batch)
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.array_equal(got, want)
        assert remote.name == f"remote:{server.address}/torch" and remote.precision == "fp32"
        assert remote.simulated is False and remote.static_shape == local.static_shape
        assert server.address in remote.detail and "torch" in remote.detail
    finally:
        remote.close()


def test_an_error_inside_the_workers_runner_reaches_the_lead(workers: list[WorkerServer]) -> None:
    from helpers.fakes import ShuffledRunner

    from packed_bert.remote.client import RemoteError

    failing = ShuffledRunner(seed=0, max_sleep_s=0.0, fail_on_call=2)
    server = WorkerServer([failing], worker_info(_plan_like("fake", "random", "fp32", "fake"), [failing]),
                          "127.0.0.1:0")
    server.start()
    workers.append(server)
    batch = _packed_batch(6)
    remote = RemoteRunner(server.address, 0, timeout_s=5.0)
    try:
        assert remote.infer(batch).shape == (batch.num_rows, 384, 2)
        for _ in range(2):  # an error message, not a dropped socket: the connection goes on
            with pytest.raises(RemoteError, match=r"device 0: RuntimeError: simulated device fault"):
                remote.infer(batch)
        assert failing.calls == 3
    finally:
        remote.close()
    with pytest.raises(RemoteError, match="connection lost earlier"):
        remote.infer(batch)


def _plan_like(sut: str, weights: str, precision: str, backend: str) -> Any:
    from types import SimpleNamespace

    system = SimpleNamespace(name=sut, simulated=False)
    return SimpleNamespace(system=system, cfg=SimpleNamespace(model="bert-99"), precision=precision,
                           weights=weights, backend=backend, batching="packed")


# -- runs over workers -----------------------------------------------------------------------


def _decode(log: Path) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    for entry in json.loads(log.read_text()):
        out[entry["qsl_idx"]] = np.frombuffer(bytes.fromhex(entry["data"]), np.float32).reshape(-1, 2)
    return out


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    code = cli.main(argv)
    cap = capsys.readouterr()
    lines = cap.out.strip().splitlines()
    summary = json.loads(lines[-1]) if code == 0 else {}
    return code, summary, cap.out + cap.err


def test_accuracy_run_over_two_workers_matches_the_local_run(
    squad_paths: tuple[Path, Path], tmp_path: Path, workers: list[WorkerServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    system = tmp_path / "tiny_torch.toml"
    system.write_text(TINY_SYSTEM)
    dataset, vocab = squad_paths
    base = ["run", "--sut", str(system), "--mode", "accuracy", "--count", "10",
            f"--dataset={dataset}", f"--vocab={vocab}"]
    code, local, _ = _run_cli([*base, f"--results-dir={tmp_path / 'local'}"], capsys)
    assert code == 0
    hosts = [_start(workers, RunConfig(sut=str(system))).address for _ in range(2)]
    code, remote, out = _run_cli([*base, f"--results-dir={tmp_path / 'remote'}", "--no-local-devices",
                                  "--hosts", ",".join(hosts)], capsys)
    assert code == 0, out
    assert "; 2 x torch fp32 on 2 nodes," in out  # devices, not the 4 connections to them
    assert (remote["exact_match"], remote["f1"]) == (local["exact_match"], local["f1"])
    want = _decode(Path(local["run_dir"]) / "mlperf_log_accuracy.json")
    got = _decode(Path(remote["run_dir"]) / "mlperf_log_accuracy.json")
    assert sorted(got) == sorted(want) == list(range(10))
    for idx in want:  # other batches (more devices), so not bit-identical: same sequences
        np.testing.assert_allclose(got[idx], want[idx], rtol=0, atol=1e-4)
    desc = json.loads((Path(remote["run_dir"]) / "system.json").read_text())
    assert desc["number_of_nodes"] == 2 and desc["devices"] == 2 and desc["local_devices"] is False
    assert [n["node"] for n in desc["nodes"]] == hosts
    assert all(n["connections"] == 2 for n in desc["nodes"])
    assert desc["runners"][0]["name"].startswith(f"remote:{hosts[0]}/torch")
    served = sum(w.batches for w in workers)
    assert served >= 2 and all(w.batches > 0 for w in workers)  # both workers took part


def test_simulated_workers_make_a_simulated_run(
    tmp_path: Path, workers: list[WorkerServer], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    feats = _fake_squad(monkeypatch, 300)
    worker = _start(workers, RunConfig(sut="r282_z93_q1"), features=feats)
    code, summary, out = _run_cli(
        ["run", "--sut", "r282_z93_q1", "--hosts", worker.address, "--target-qps", "1300",
         f"--results-dir={tmp_path}", "--setting", "min_duration=1000"], capsys)
    assert code == 0, out
    assert summary["simulated"] is True and summary["samples_per_second"] > 0
    assert "r282_z93_q1 [SIMULATED]" in out and "performance (SIMULATED)" in out
    desc = json.loads((Path(summary["run_dir"]) / "system.json").read_text())
    assert desc["simulated"] is True and desc["number_of_nodes"] == 2 and desc["devices"] == 2
    assert [n["node"] for n in desc["nodes"]] == ["lead", worker.address]
    assert all(r["name"].endswith("(simulated)") for r in desc["runners"] if isinstance(r, dict))
    assert worker.batches > 0

    from packed_bert.submission.systems import system_json

    sub = system_json(desc, "r282_z93_q1", "ACME", "closed")
    assert sub["number_of_nodes"] == 2 and sub["accelerators_per_node"] == 1
    assert "simulated" in sub["system_name"] and worker.address in sub["hw_notes"]


def test_a_worker_serving_another_model_is_a_one_line_error(
    tmp_path: Path, workers: list[WorkerServer], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    feats = _fake_squad(monkeypatch, 50)
    worker = _start(workers, RunConfig(sut="r282_z93_q1", model="bert-99.9"), features=feats)
    code, _, out = _run_cli(["run", "--sut", "r282_z93_q1", "--model", "bert-99", "--hosts",
                             worker.address, f"--results-dir={tmp_path}"], capsys)
    line = _one_line_error(out)
    assert code == 2 and worker.address in line
    assert "model bert-99.9 (this run: bert-99)" in line and "precision fp16 (this run: int8)" in line
    assert "packed-bert serve --sut r282_z93_q1 --model bert-99" in line
    code, _, out = _run_cli(["run", "--sut", "null", "--hosts", worker.address,
                             f"--results-dir={tmp_path}"], capsys)
    line = _one_line_error(out)
    assert code == 2 and "simulated devices (this run: real)" in line


def test_an_unreachable_host_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    _fake_squad(monkeypatch, 50)
    address = f"127.0.0.1:{_free_port()}"
    code, _, out = _run_cli(["run", "--sut", "null", "--no-local-devices", "--hosts", address,
                             f"--results-dir={tmp_path}"], capsys)
    line = _one_line_error(out)
    assert code == 2 and f"--hosts {address}: cannot connect" in line
    assert f"start 'packed-bert serve --sut null --model bert-99 --listen {address}' there" in line
    for argv in (["--hosts", "nohost"], ["--no-local-devices"]):
        code, _, out = _run_cli(["run", "--sut", "null", *argv, f"--results-dir={tmp_path}"], capsys)
        assert code == 2 and "--hosts" in _one_line_error(out)


def test_hosts_from_the_system_file_and_the_cli(tmp_path: Path) -> None:
    from packed_bert.commands import run as run_cmd
    from packed_bert.errors import UserError
    from packed_bert.harness.flags import to_argv
    from packed_bert.systems import parse_system

    spec = parse_system('hosts = ["10.0.0.2:4960", "[::1]:4961"]\n' + TINY_SYSTEM, "t.toml")
    assert spec.hosts == ("10.0.0.2:4960", "[::1]:4961") and spec.describe()["hosts"]
    with pytest.raises(UserError, match="not HOST:PORT"):
        parse_system('hosts = ["10.0.0.2"]\n' + TINY_SYSTEM, "t.toml")

    def cfg(argv: list[str]) -> RunConfig:
        args = cli.build_parser().parse_args(argv)
        return run_cmd.config_from_args(args)

    assert cfg(["run", "--sut", "null"]).hosts is None  # the system file's
    assert cfg(["run", "--sut", "null", "--hosts", ""]).hosts == ()  # none, whatever the file says
    two = cfg(["run", "--sut", "null", "--hosts", "a:1, b:2", "--no-local-devices"])
    assert two.hosts == ("a:1", "b:2") and two.local_devices is False
    again = cfg(to_argv(two)[1:])
    assert (again.hosts, again.local_devices) == (two.hosts, two.local_devices)


# -- a worker process ------------------------------------------------------------------------


def _spawn_serve(*args: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "packed_bert.cli", "serve", *args, "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.match(r"serve: (\S+) serves ", line)
        if found:
            return proc, found.group(1)
    proc.kill()
    raise AssertionError(f"serve printed no address: {proc.stderr.read() if proc.stderr else ''}")


def test_serve_stops_cleanly_on_ctrl_c() -> None:
    proc, address = _spawn_serve("--sut", "null")
    try:
        assert re.fullmatch(r"127\.0\.0\.1:\d+", address)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err
    assert out.strip().splitlines()[-1].startswith("serve: stopped; 0 connections")


def test_a_worker_killed_mid_run_fails_the_run_without_hanging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    _fake_squad(monkeypatch, 300)
    proc, address = _spawn_serve("--sut", "null")
    result: list[int] = []
    argv = ["run", "--sut", "null", "--scenario", "server", "--target-qps", "500", "--no-local-devices",
            "--hosts", address, f"--results-dir={tmp_path}", "--setting", "min_duration=2500"]
    thread = threading.Thread(target=lambda: result.append(cli.main(argv)), daemon=True)
    try:
        start = time.monotonic()
        thread.start()
        time.sleep(1.2)
        proc.kill()  # SIGKILL: no goodbye on the socket
        thread.join(30)
        assert not thread.is_alive(), "the run hung"
    finally:
        proc.kill()
        proc.communicate()
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err  # the progress lines, then one error line
    errors = [line for line in err.splitlines() if line.startswith("packed-bert: error:")]
    assert len(errors) == 1 and "Traceback" not in err
    line = errors[0]
    assert result == [1] and f"{address} device 0" in line and "connection lost" in line
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".incomplete")]


class _SlowRunner:
    """A runner whose batches take ``seconds`` (a CPU worker on a big batch)."""

    name, precision, device, simulated, static_shape = "slow", "fp32", "cpu", False, False

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def infer(self, batch: Any) -> np.ndarray:
        time.sleep(self.seconds)
        return np.zeros((*batch.input_ids.shape, 2), np.float32)


@pytest.mark.parametrize("heartbeat_s", [0.1, 5.0])
def test_heartbeats_keep_a_long_batch_alive_and_silence_times_out(
    workers: list[WorkerServer], heartbeat_s: float,
) -> None:
    from packed_bert.remote.client import RemoteError

    slow = _SlowRunner(1.0)
    server = WorkerServer([slow], worker_info(_plan_like("slow", "random", "fp32", "slow"), [slow]),
                          "127.0.0.1:0", heartbeat_s=heartbeat_s)
    server.start()
    workers.append(server)
    batch = _packed_batch(3)
    remote = RemoteRunner(server.address, 0, timeout_s=0.4)  # silence allowed: 0.4 s
    try:
        if heartbeat_s < 0.4:  # a 1 s batch with a heartbeat every 0.1 s: answered
            assert remote.infer(batch).shape == (batch.num_rows, 384, 2)
        else:  # no heartbeat within 0.4 s: the lead gives up on the silent worker
            with pytest.raises(RemoteError, match="connection lost"):
                remote.infer(batch)
    finally:
        remote.close()


def test_checkpoints_are_told_apart_by_content_not_name_or_size(tmp_path: Path) -> None:
    from packed_bert.remote.info import same_weights, weights_id

    a, b, c = (tmp_path / d / "model.pytorch" for d in ("a", "b", "c"))
    for path, data in ((a, b"\x01" * 1000), (b, b"\x01" * 1000), (c, b"\x02" * 1000)):
        path.parent.mkdir()
        path.write_bytes(data)  # c: another fine-tune of the same shape, same name and size
    assert same_weights(weights_id(str(a)), weights_id(str(b)))  # same bytes, other path
    assert not same_weights(weights_id(str(a)), weights_id(str(c)))
    assert same_weights(weights_id(str(a)), weights_id(str(tmp_path / "elsewhere" / "model.pytorch")))
    assert not same_weights(weights_id(str(a)), "tiny")
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    before = weights_id(str(hf))
    (hf / "config.json").write_text("{ }")
    assert before.startswith("hf/ (sha256 ") and not same_weights(before, weights_id(str(hf)))
