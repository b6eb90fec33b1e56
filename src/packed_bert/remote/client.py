"""The lead's side: ``RemoteRunner`` (a device of another host, behind the ``Runner`` interface)
and ``connect_hosts`` (every device of every ``--hosts`` worker, checked against the run).

Every socket has a timeout, so a worker that dies or vanishes makes ``infer`` raise
``RemoteError`` instead of hanging; the device pool then answers the rest of the run empty and
the run ends with a one-line failure.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from packed_bert.address import parse_address
from packed_bert.backends.base import BatchLike
from packed_bert.errors import UserError
from packed_bert.remote.info import Expected, WorkerInfo
from packed_bert.remote.protocol import VERSION, Message, ProtocolError, recv, send

CONNECT_TIMEOUT_S = 10.0
INFER_TIMEOUT_S = 60.0  # silence: the worker sends ``busy`` every 5 s while a batch waits or runs
CONNECTIONS_PER_DEVICE = 2  # batches the lead keeps in flight on each remote device


class RemoteError(RuntimeError):
    """A remote device failed a batch, or its worker went away."""


def _connect(address: str, timeout_s: float, serve_hint: str) -> socket.socket:
    host, port = parse_address(address)
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise UserError(
            f"--hosts {address}: cannot connect ({why}); start "
            f"'packed-bert serve {serve_hint} --listen {address}' there"
        ) from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


def _hello(sock: socket.socket, address: str, device: int | None) -> WorkerInfo:
    """Exchange hellos; any failure is a one-line ``UserError`` naming the worker."""
    try:
        send(sock, Message("hello", {"version": VERSION, "device": device}))
        reply = recv(sock)
        if reply is None:
            raise ProtocolError("the worker closed the connection")
        if reply.op == "error":
            raise ProtocolError(str(reply.fields.get("message")))
        if reply.op != "hello":
            raise ProtocolError(f"expected a hello, got {reply.op!r}")
        return WorkerInfo.from_fields(reply.fields)
    except (OSError, ProtocolError) as exc:
        sock.close()
        raise UserError(f"--hosts {address}: no packed-bert worker answered ({exc})") from None


def probe(address: str, serve_hint: str = "--sut SYSTEM", timeout_s: float = CONNECT_TIMEOUT_S) -> WorkerInfo:
    """What the worker at ``address`` serves."""
    sock = _connect(address, timeout_s, serve_hint)
    try:
        return _hello(sock, address, None)
    finally:
        sock.close()


class RemoteRunner:
    """Device ``device_index`` of the worker at ``address``, over one connection of its own."""

    def __init__(
        self,
        address: str,
        device_index: int,
        *,
        timeout_s: float = INFER_TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        serve_hint: str = "--sut SYSTEM",
    ) -> None:
        self.address = address
        self.device_index = device_index
        sock = _connect(address, connect_timeout_s, serve_hint)
        info = _hello(sock, address, device_index)
        sock.settimeout(timeout_s)
        self._sock: socket.socket | None = sock
        self._lock = threading.Lock()
        self._lost = ""
        self.info = info
        remote = info.runners[device_index]
        self.simulated = bool(remote.get("simulated", info.simulated))
        base = str(remote.get("name", info.backend)).removesuffix(" (simulated)")
        self.name = f"remote:{address}/{base}"
        self.precision = str(remote.get("precision", info.precision))
        self.device = f"{address}/{remote.get('device', device_index)}"
        self.static_shape = bool(remote.get("static_shape", False))
        self.detail = f"on host {info.host} ({address}), device {device_index}: {remote.get('detail', '')}"

    @property
    def node(self) -> str:
        return self.address

    def infer(self, batch: BatchLike) -> np.ndarray:
        arrays = {k: np.ascontiguousarray(getattr(batch, k), dtype=np.int32)
                  for k in ("input_ids", "segment_ids", "position_ids", "seq_lens")}
        where = f"{self.address} device {self.device_index}"
        with self._lock:
            if self._sock is None:
                raise RemoteError(f"{where}: connection lost earlier ({self._lost})")
            try:
                send(self._sock, Message("infer", arrays=arrays))
                reply = recv(self._sock)
                while reply is not None and reply.op == "busy":  # heartbeats: the batch goes on
                    reply = recv(self._sock)
                if reply is None:
                    raise ConnectionError("the worker closed the connection")
            except (OSError, ProtocolError) as exc:
                self._drop(f"{type(exc).__name__}: {exc}")
                raise RemoteError(f"{where}: connection lost ({self._lost})") from exc
        if reply.op == "error":
            raise RemoteError(f"{where}: {reply.fields.get('message')}")
        logits = reply.arrays.get("logits")
        rows, length = arrays["input_ids"].shape
        if reply.op != "logits" or logits is None or logits.shape != (rows, length, 2):
            raise RemoteError(f"{where}: unexpected answer {reply.op!r}")
        return logits

    def close(self) -> None:
        with self._lock:
            self._drop("closed")

    def _drop(self, why: str) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            self._lost = why

    def __del__(self) -> None:
        sock = getattr(self, "_sock", None)
        if sock is not None:
            sock.close()


def connect_hosts(
    hosts: Sequence[str],
    want: Expected,
    serve_hint: str,
    *,
    connections_per_device: int = CONNECTIONS_PER_DEVICE,
    timeout_s: float = INFER_TIMEOUT_S,
) -> list[Any]:
    """One ``RemoteRunner`` per connection: ``connections_per_device`` for each device of each
    worker. A worker that cannot be reached or serves something else is a one-line ``UserError``."""
    seen: set[str] = set()
    runners: list[Any] = []
    for address in hosts:
        if address in seen:
            raise UserError(f"--hosts {address}: given twice")
        seen.add(address)
        info = probe(address, serve_hint)
        diff = info.mismatch(want)
        if diff:
            raise UserError(
                f"--hosts {address}: worker {info.host} serves {info.sut} with {diff}; start "
                f"'packed-bert serve {serve_hint} --listen {address}' there"
            )
        for device in range(info.devices):
            for _ in range(connections_per_device):
                runners.append(RemoteRunner(address, device, timeout_s=timeout_s, serve_hint=serve_hint))
    return runners
