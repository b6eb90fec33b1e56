"""The worker (``packed-bert serve``): this host's runners, served to a lead over TCP.

One thread per connection. A connection says ``hello`` (optionally binding itself to one
device index) and then sends ``infer`` requests; each is answered with the logits or with an
``error`` message (the connection stays usable). While a request waits for its device or runs,
the worker sends a ``busy`` message every ``heartbeat_s``: the lead then times out on silence,
not on how long a batch takes (a 4,096-sample batch on a CPU worker takes many minutes). Runners are not thread-safe, so each device
has a lock: several connections may share a device (the lead keeps two batches in flight per
device), and they take turns on it.
"""

from __future__ import annotations

import contextlib
import platform
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from packed_bert.address import format_address, parse_address
from packed_bert.backends.base import describe
from packed_bert.errors import UserError
from packed_bert.remote.info import WorkerInfo, weights_id
from packed_bert.remote.protocol import VERSION, Message, ProtocolError, recv, send

BATCH_FIELDS = ("input_ids", "segment_ids", "position_ids", "seq_lens")
HEARTBEAT_S = 5.0


@dataclass(frozen=True)
class WireBatch:
    """A batch as it arrived: the four int32 arrays a runner reads."""

    input_ids: np.ndarray
    segment_ids: np.ndarray
    position_ids: np.ndarray
    seq_lens: np.ndarray


def batch_from(arrays: dict[str, np.ndarray]) -> WireBatch:
    """The batch of an ``infer`` request, checked: int32 [R, L] x 3 and seq_lens [R, K]."""
    if sorted(arrays) != sorted(BATCH_FIELDS):
        raise ProtocolError(f"infer needs the arrays {', '.join(BATCH_FIELDS)}; got {sorted(arrays)}")
    if any(a.dtype != np.int32 or a.ndim != 2 for a in arrays.values()):
        raise ProtocolError("infer arrays must be 2-D int32")
    shape = arrays["input_ids"].shape
    if arrays["segment_ids"].shape != shape or arrays["position_ids"].shape != shape:
        raise ProtocolError("input_ids, segment_ids and position_ids must have one shape [R, L]")
    if arrays["seq_lens"].shape[0] != shape[0]:
        raise ProtocolError("seq_lens must be [R, K] for the R rows of input_ids")
    return WireBatch(*(arrays[k] for k in BATCH_FIELDS))


class WorkerServer:
    """Serves ``runners`` (one per device) on ``listen`` (``HOST:PORT``; port 0: any free one)."""

    def __init__(self, runners: Sequence[Any], info: WorkerInfo, listen: str,
                 heartbeat_s: float = HEARTBEAT_S) -> None:
        if not runners:
            raise ValueError("a worker needs at least one runner")
        host, port = parse_address(listen, "--listen")
        try:
            self._listener = socket.create_server((host, port))
        except OSError as exc:
            raise UserError(f"--listen {listen}: cannot listen ({exc.strerror or exc})") from None
        self._listener.settimeout(0.2)
        self.address = format_address(host, self._listener.getsockname()[1])
        self.runners = list(runners)
        self.info = info
        self.heartbeat_s = heartbeat_s
        self._locks = [threading.Lock() for _ in self.runners]
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._state = threading.Lock()
        self.connections = 0
        self.batches = 0

    def serve_forever(self) -> None:
        """Accept connections until ``close``; each is served by its own thread."""
        while not self._stop.is_set():
            try:
                conn, _peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                raise
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            with self._state:
                self._conns.add(conn)
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True,
                             name=f"serve-{self.connections}").start()

    def start(self) -> threading.Thread:
        """``serve_forever`` in a daemon thread (tests, benchmarks)."""
        thread = threading.Thread(target=self.serve_forever, name="serve-accept", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        """Stop accepting and drop every connection (their leads see the worker gone)."""
        self._stop.set()
        self._listener.close()
        with self._state:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _serve(self, conn: socket.socket) -> None:
        device: int | None = None
        sending = threading.Lock()  # heartbeats and replies share the socket

        def reply_with(msg: Message) -> None:
            with sending:
                send(conn, msg)

        try:
            while not self._stop.is_set():
                try:
                    msg = recv(conn)
                except ProtocolError as exc:
                    reply_with(Message("error", {"message": f"protocol error: {exc}"}))
                    return  # where the next message starts is unknown: end the connection
                if msg is None:
                    return
                if msg.op == "hello":
                    reply, device = self._hello(msg, device)
                elif msg.op == "infer":
                    with _Heartbeat(reply_with, self.heartbeat_s):
                        reply = self._infer(msg, device)
                else:
                    reply = Message("error", {"message": f"unknown op {msg.op!r}"})
                reply_with(reply)
        except OSError:
            return  # the lead went away
        finally:
            with self._state:
                self._conns.discard(conn)
            conn.close()

    def _hello(self, msg: Message, device: int | None) -> tuple[Message, int | None]:
        version = msg.fields.get("version")
        if version != VERSION:
            text = f"protocol version {version!r} asked; this worker speaks {VERSION}"
            return Message("error", {"message": text}), device
        want = msg.fields.get("device")
        if want is not None:
            if type(want) is not int or not 0 <= want < len(self.runners):
                text = f"device {want!r} asked; this worker has devices 0..{len(self.runners) - 1}"
                return Message("error", {"message": text}), device
            device = want
        return Message("hello", self.info.fields()), device

    def _infer(self, msg: Message, device: int | None) -> Message:
        if device is None:
            return Message("error", {"message": "say hello with a device index before infer"})
        try:
            batch = batch_from(msg.arrays)
            with self._locks[device]:
                logits = self.runners[device].infer(batch)
            out = np.ascontiguousarray(logits, dtype=np.float32)
            rows, length = batch.input_ids.shape
            if out.shape != (rows, length, 2):
                raise ValueError(f"runner gave logits {out.shape}, expected {(rows, length, 2)}")
        except Exception as exc:  # noqa: BLE001 - the lead gets the error, the worker goes on
            text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
            return Message("error", {"message": f"device {device}: {text}"})
        with self._state:
            self.batches += 1
        return Message("logits", arrays={"logits": out})


class _Heartbeat:
    """Sends ``busy`` every ``interval_s`` from a thread while the ``with`` block runs."""

    def __init__(self, reply_with: Callable[[Message], None], interval_s: float) -> None:
        self._reply_with = reply_with
        self._interval_s = interval_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="serve-heartbeat", daemon=True)

    def __enter__(self) -> None:
        self._thread.start()

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._done.wait(self._interval_s):
            try:
                self._reply_with(Message("busy"))
            except OSError:
                return  # the lead went away; the request's own reply will find out too


def worker_info(plan: Any, runners: Sequence[Any]) -> WorkerInfo:
    """The hello of a worker serving ``runners`` for ``plan`` (a ``harness.plan.RunPlan``)."""
    return WorkerInfo(
        version=VERSION, sut=plan.system.name, model=plan.cfg.model, precision=plan.precision,
        weights=weights_id(plan.weights), backend=plan.backend, simulated=plan.system.simulated,
        devices=len(runners), runners=tuple(describe(r) for r in runners),
        host=platform.node(), batching=plan.batching,
    )


def build_worker(cfg: Any, listen: str, features: Any = None) -> WorkerServer:
    """A worker for ``cfg`` (a ``RunConfig``: system, model, weights, batching): its runners are
    made as a run makes its local ones. SQuAD is read only for a simulated system, whose card
    rate is per packed row (``features`` lets tests pass their own)."""
    from packed_bert.backends.devices import local_runners
    from packed_bert.harness.devices import device_request
    from packed_bert.harness.plan import plan_run
    from packed_bert.harness.qsl import SampleLibrary

    plan = plan_run(cfg)
    if plan.backend == "sim":
        if features is None:
            from packed_bert.squad.features import load_features

            features = load_features(cfg.dataset, cfg.vocab)
        library = SampleLibrary.from_features(features)
    else:
        empty = np.zeros((0, 384), np.int32)
        library = SampleLibrary(empty, empty, np.zeros(0, np.int64))
    runners = local_runners(device_request(plan, library))
    return WorkerServer(runners, worker_info(plan, runners), listen)
