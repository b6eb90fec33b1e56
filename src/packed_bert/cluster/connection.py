"""Joining a Ray cluster, or starting the embedded one, and leaving it: ``connect`` ->
``ClusterHandle``.

``address``:

- ``None``, ``""``, ``"ray"`` or ``"local"``: an embedded single-node cluster in this process's
  machine, started now and stopped by ``release`` (no set-up). Its node declares the devices
  the run asks for (``node_resources``).
- ``"auto"``: the cluster this machine is a node of (``ray start`` ran here).
- ``"HOST:PORT"``: the cluster whose head listens there (this machine becomes a driver there).
- ``"ray://HOST:PORT"``: the Ray Client server of a cluster (needs ``ray[client]``; every batch
  then passes through the head, so prefer running the driver on a node).

Authentication: Ray's token authentication (``RAY_AUTH_MODE=token``) is on by default for the
embedded cluster (Ray 2.59+; the token is ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or
``~/.ray/auth_token``, made on first use). To join a cluster started with it, set the same
``RAY_AUTH_MODE`` and token here; a wrong or missing token is a one-line ``UserError``.

``ray.init`` installs a SIGTERM handler of Ray's own (it exits the process); ``connect`` puts
back the handler that was there before (packed-bert's ``signals.stop_on_signals``: SIGTERM ends
the run through the harness's interrupt path, which releases the handle). ``release_all``
releases every open handle (call it before ``os._exit``).
Should the driver die anyway, Ray ends its job: the actors stop and the devices are freed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import warnings
import weakref
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from packed_bert.address import EMBEDDED_CLUSTER
from packed_bert.errors import UserError

EMBEDDED = ("", *EMBEDDED_CLUSTER)  # no address: the embedded one-node cluster
DEFAULT_OBJECT_STORE_MB = 512  # the embedded node's: batches and logits are a few MB each

_open: weakref.WeakSet[ClusterHandle] = weakref.WeakSet()


def import_ray() -> Any:
    """``ray``, or a one-line ``UserError`` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UserError("--cluster needs Ray: pip install 'packed-bert[cluster]'") from None
    return ray


@dataclass(eq=False)  # compared and hashed by identity
class ClusterHandle:
    """This process's connection to a Ray cluster, and what it reserved there."""

    address: str  # as given ("embedded" for the embedded cluster)
    embedded: bool
    owns_connection: bool  # False: Ray was already initialised here; release leaves it so
    token_auth: bool
    ray_version: str
    _placement_groups: list[Any] = field(default_factory=list)
    _actors: list[Any] = field(default_factory=list)
    released: bool = False

    def label(self) -> str:
        """How messages name this cluster (``--cluster ...``)."""
        return "ray (embedded)" if self.embedded else self.address

    def describe(self) -> dict[str, Any]:
        """JSON-ready: the cluster and its alive nodes with their device resources."""
        return {
            "address": self.label(),
            "embedded": self.embedded,
            "ray": self.ray_version,
            "token_authentication": self.token_auth,
            "nodes": alive_nodes(),
        }

    def track(self, placement_group: Any = None, actors: list[Any] | None = None) -> None:
        """Remember what ``release`` must free."""
        if placement_group is not None:
            self._placement_groups.append(placement_group)
        self._actors.extend(actors or [])

    def free(self, placement_group: Any = None, actors: list[Any] | None = None) -> None:
        """Kill ``actors`` and remove ``placement_group`` now; with neither given, everything
        this handle holds."""
        ray = import_ray()
        everything = placement_group is None and actors is None
        kill = list(self._actors) if everything else list(actors or [])
        groups = (
            list(self._placement_groups) if everything else [placement_group] if placement_group is not None else []
        )
        self._actors = [a for a in self._actors if all(a is not k for k in kill)]
        self._placement_groups = [g for g in self._placement_groups if all(g is not k for k in groups)]
        if not ray.is_initialized():
            return
        for actor in kill:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        from ray.util.placement_group import remove_placement_group

        for pg in groups:
            with contextlib.suppress(Exception):
                remove_placement_group(pg)

    def release(self) -> None:
        """Kill this handle's actors, free its placement groups, disconnect (and stop the
        embedded cluster). Safe to call twice."""
        if self.released:
            return
        self.released = True
        _open.discard(self)
        self.free()
        ray = import_ray()
        if self.owns_connection and ray.is_initialized():
            ray.shutdown()

    def __enter__(self) -> ClusterHandle:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def connect(
    address: str | None = None,
    *,
    node_resources: dict[str, float] | None = None,
    num_gpus: int | None = None,
    object_store_mb: int = DEFAULT_OBJECT_STORE_MB,
) -> ClusterHandle:
    """Join the cluster at ``address`` or start the embedded one (see the module doc).

    ``node_resources`` (``ClusterRequest.node_resources()``), ``num_gpus`` and
    ``object_store_mb`` only shape the embedded cluster's node.
    """
    ray = import_ray()
    given = (address or "").strip()
    embedded = given.lower() in EMBEDDED
    if ray.is_initialized():  # a test or benchmark joined already: use that connection
        joined = str(getattr(ray.get_runtime_context(), "gcs_address", "") or given)
        handle = ClusterHandle(joined, False, False, token_auth_enabled(), ray.__version__)
        _open.add(handle)
        return handle
    kwargs: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    if embedded:
        kwargs.update(
            address="local",
            num_cpus=os.cpu_count() or 1,
            resources=dict(node_resources or {}),
            include_dashboard=False,
            object_store_memory=object_store_mb << 20,
        )
        if num_gpus is not None:
            kwargs["num_gpus"] = num_gpus
    else:
        kwargs["address"] = given
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGTERM) if main else None  # ray.init installs its own
    before_int = signal.getsignal(signal.SIGINT) if main else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Ray Client's size hints, deprecations
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
            raise UserError(_connect_error(given or "ray", exc)) from None
    handle = ClusterHandle("embedded" if embedded else given, embedded, True, token_auth_enabled(), ray.__version__)
    _open.add(handle)
    if main:  # ours again: a signal ends the run through the harness, which releases the handle
        for sig, old in ((signal.SIGTERM, before), (signal.SIGINT, before_int)):
            if old is not None:
                signal.signal(sig, old)
    return handle


def release_all() -> None:
    """Release every open handle of this process (before ``os._exit``, which skips ``finally``)."""
    for handle in list(_open):
        with contextlib.suppress(Exception):
            handle.release()


def _connect_error(address: str, exc: BaseException) -> str:
    """One line for a failed ``ray.init``."""
    causes: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(causes) < 10:
        causes.append(cur)
        cur = cur.__cause__ or cur.__context__
    if any(type(c).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(c) for c in causes):
        return (
            f"--cluster {address}: the cluster refused this driver's authentication token; set "
            "RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH "
            "or ~/.ray/auth_token) here"
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if address.startswith("ray://"):  # Ray Client hides a refused token behind its timeout
        return (
            f"--cluster {address}: no Ray Client server accepted this driver ({first}); check "
            "that its port is reachable and that RAY_AUTH_MODE=token and the cluster's token "
            "are set here"
        )
    return (
        f"--cluster {address}: no Ray cluster answered ({first}); start one with "
        "'ray start --head' (RAY_AUTH_MODE=token) or use --cluster ray for the embedded one"
    )


def token_auth_enabled() -> bool:
    """Whether this process talks to Ray with token authentication."""
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled
    except ImportError:  # another Ray release: the environment says
        return os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    return bool(is_token_auth_enabled())


def alive_nodes() -> list[dict[str, Any]]:
    """The cluster's alive nodes: id, address, host name and the resources they declare."""
    ray = import_ray()
    out = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        res = {
            k: v
            for k, v in dict(node.get("Resources", {})).items()
            if not k.startswith("node:") and k not in ("memory", "object_store_memory")
        }
        out.append(
            {
                "node_id": str(node.get("NodeID", "")),
                "ip": node.get("NodeManagerAddress"),
                "host": node.get("NodeManagerHostname"),
                "resources": res,
            }
        )
    return out
