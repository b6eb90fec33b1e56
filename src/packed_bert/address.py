"""``HOST:PORT`` addresses (``[::1]:4960`` for IPv6), and the Ray cluster addresses ``--cluster`` takes."""

from __future__ import annotations

from packed_bert.errors import UserError


def parse_address(text: str, flag: str, default_port: int | None = None) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT`` (or of ``HOST`` when there is a ``default_port``); a
    one-line ``UserError`` naming ``flag`` otherwise."""
    value = text.strip()
    host, sep, port_text = value.rpartition(":")
    if not sep and default_port is not None:
        host, sep, port_text = port_text, ":", str(default_port)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        example = f"10.0.0.2:{default_port or 4960}"
        raise UserError(f"{flag} {text!r}: expected HOST:PORT, e.g. {example}")
    return host, int(port_text)


# --cluster words that name no host: "ray" starts an embedded one-node cluster (also "local"),
# "auto" joins the cluster this machine is a node of
EMBEDDED_CLUSTER = ("ray", "local")
CLUSTER_WORDS = (*EMBEDDED_CLUSTER, "auto")


def check_cluster_address(text: str, flag: str = "--cluster") -> str:
    """``text`` if it is ``ray``, ``local``, ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``; a
    one-line ``UserError`` naming ``flag`` otherwise."""
    value = str(text).strip()
    if value.lower() in CLUSTER_WORDS:
        return value
    try:
        parse_address(value.removeprefix("ray://"), flag)
    except UserError:
        raise UserError(
            f"{flag} {text!r}: expected ray (an embedded cluster), auto, HOST:PORT or "
            "ray://HOST:PORT, e.g. 10.0.0.2:6379"
        ) from None
    return value
