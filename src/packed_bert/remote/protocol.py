"""Messages between the lead and a worker: a fixed prefix, a small JSON header, raw arrays.

Wire format of one message (all integers big-endian)::

    b"PBRT"  uint32 header_bytes  uint64 body_bytes  header (UTF-8 JSON)  body

The header is ``{"op": str, "fields": {...}, "arrays": [{"name", "dtype", "shape"}, ...]}``; the
body is the arrays' bytes back to back, C order, little-endian, in the header's order, and its
length must equal what the shapes say. Only int32, int64 and float32 travel: nothing is ever
unpickled or evaluated, so a worker can face an untrusted network. The protocol version is
exchanged in the ``hello``.
"""

from __future__ import annotations

import json
import math
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

VERSION = 2  # 2: ``busy`` heartbeats while an ``infer`` waits or runs
MAGIC = b"PBRT"
PREFIX = struct.Struct("!4sIQ")
MAX_HEADER_BYTES = 1 << 20
MAX_BODY_BYTES = 1 << 31
MAX_DIMS = 4
DTYPES: dict[str, np.dtype[Any]] = {
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "float32": np.dtype("<f4"),
}


class ProtocolError(Exception):
    """A message that breaks the format (bad prefix, header, dtype or length)."""


@dataclass
class Message:
    op: str
    fields: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _wire_dtype(name: str, array: np.ndarray) -> tuple[str, np.ndarray]:
    kind = array.dtype.name
    if kind not in DTYPES:
        allowed = ", ".join(DTYPES)
        raise ProtocolError(f"array {name!r}: dtype {kind} is not allowed (only {allowed})")
    return kind, np.ascontiguousarray(array, dtype=DTYPES[kind])


def encode(msg: Message) -> list[bytes | memoryview]:
    """The buffers of one message: prefix and header, then each array's bytes (not copied)."""
    specs: list[dict[str, Any]] = []
    bodies: list[memoryview] = []
    for name, array in msg.arrays.items():
        kind, wire = _wire_dtype(name, np.asarray(array))
        if wire.ndim > MAX_DIMS:
            raise ProtocolError(f"array {name!r}: {wire.ndim} dimensions (at most {MAX_DIMS})")
        specs.append({"name": name, "dtype": kind, "shape": list(wire.shape)})
        if wire.nbytes:
            bodies.append(wire.data.cast("B"))
    header = json.dumps({"op": msg.op, "fields": msg.fields, "arrays": specs}).encode()
    body_bytes = sum(b.nbytes for b in bodies)
    if len(header) > MAX_HEADER_BYTES or body_bytes > MAX_BODY_BYTES:
        raise ProtocolError(f"message too large ({len(header)} header, {body_bytes} body bytes)")
    return [PREFIX.pack(MAGIC, len(header), body_bytes) + header, *bodies]


def send(sock: socket.socket, msg: Message) -> None:
    for buf in encode(msg):
        sock.sendall(buf)


def recv(sock: socket.socket) -> Message | None:
    """The next message, or ``None`` when the peer closed the connection between messages."""
    prefix = _recv_exact(sock, PREFIX.size, allow_eof=True)
    if prefix is None:
        return None
    magic, header_bytes, body_bytes = PREFIX.unpack(prefix)
    if magic != MAGIC:
        raise ProtocolError("not a packed-bert message (bad magic)")
    if header_bytes > MAX_HEADER_BYTES or body_bytes > MAX_BODY_BYTES:
        raise ProtocolError(f"message too large ({header_bytes} header, {body_bytes} body bytes)")
    header_raw = _recv_exact(sock, header_bytes)
    assert header_raw is not None
    op, fields, specs = parse_header(bytes(header_raw))
    need = sum(math.prod(shape) * DTYPES[kind].itemsize for _, kind, shape in specs)
    if need != body_bytes:
        raise ProtocolError(f"body is {body_bytes} bytes, the arrays need {need}")
    arrays: dict[str, np.ndarray] = {}
    for name, kind, shape in specs:
        array = np.empty(shape, dtype=DTYPES[kind])
        if array.nbytes:
            _recv_into(sock, array.data.cast("B"))
        arrays[name] = array
    return Message(op, fields, arrays)


def parse_header(raw: bytes) -> tuple[str, dict[str, Any], list[tuple[str, str, tuple[int, ...]]]]:
    """``op``, ``fields`` and the checked array specs ``(name, dtype, shape)`` of a header."""
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"header is not JSON ({exc})") from None
    if not isinstance(header, dict) or not isinstance(header.get("op"), str):
        raise ProtocolError("header must be an object with a string 'op'")
    fields = header.get("fields", {})
    arrays = header.get("arrays", [])
    if not isinstance(fields, dict) or not isinstance(arrays, list):
        raise ProtocolError("header 'fields' must be an object and 'arrays' a list")
    specs: list[tuple[str, str, tuple[int, ...]]] = []
    for spec in arrays:
        specs.append(_array_spec(spec, {s[0] for s in specs}))
    return header["op"], fields, specs


def _array_spec(spec: Any, seen: set[str]) -> tuple[str, str, tuple[int, ...]]:
    if not isinstance(spec, dict):
        raise ProtocolError("each array spec must be an object")
    name, kind, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
    if not isinstance(name, str) or name in seen:
        raise ProtocolError(f"array name {name!r} is missing or repeated")
    if kind not in DTYPES:
        raise ProtocolError(f"array {name!r}: dtype {kind!r} is not allowed (only {', '.join(DTYPES)})")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS or not all(
        type(d) is int and 0 <= d < 1 << 31 for d in shape
    ):
        raise ProtocolError(f"array {name!r}: bad shape {shape!r}")
    return name, str(kind), tuple(shape)


def _recv_exact(sock: socket.socket, size: int, allow_eof: bool = False) -> bytearray | None:
    buf = bytearray(size)
    got = _recv_into(sock, memoryview(buf), allow_eof=allow_eof)
    return None if got == 0 and size else buf


def _recv_into(sock: socket.socket, view: memoryview, allow_eof: bool = False) -> int:
    got = 0
    while got < view.nbytes:
        n = sock.recv_into(view[got:])
        if n == 0:
            if got == 0 and allow_eof:
                return 0
            raise ConnectionError("the peer closed the connection in the middle of a message")
        got += n
    return got
