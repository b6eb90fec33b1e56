"""Is the power server there? A TCP connect before anything runs."""

import socket

from packed_bert import address
from packed_bert.errors import UserError

DEFAULT_PORT = 4950  # the power-dev server's default


def parse_address(spec: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``HOST``, port 4950) -> (host, port)."""
    return address.parse_address(spec, "--power-server", DEFAULT_PORT)


def check_server(host: str, port: int, timeout_s: float = 3.0) -> None:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(
            f"power server {host}:{port} does not answer ({reason}); start power_server there or fix --power-server"
        ) from exc
