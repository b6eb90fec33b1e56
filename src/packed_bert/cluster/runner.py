"""The driver's side: ``ClusterRunner`` (one device actor behind the ``Runner`` interface) and
``make_cluster_runners`` (reserve the devices, start one actor on each, check them).

A batch goes to its actor as one object of narrow arrays (``cluster.wire``: 5 bytes a token)
and comes back as one float32 [R, L, 2] array, through Ray's object store (shared memory on a
node; no per-sample objects). An actor, node or link that dies makes ``infer`` raise ``DeviceLost``: the device
pool sends the batch to the other devices. An error of the runner inside the actor fails the
run, as it would on a local device.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from packed_bert.backends.base import BatchLike, DeviceLost
from packed_bert.cluster.actor import DeviceActor
from packed_bert.cluster.connection import ClusterHandle, import_ray
from packed_bert.cluster.identity import DeviceIdentity, check_devices
from packed_bert.cluster.placement import devices_wanted, reserve
from packed_bert.cluster.request import ClusterRequest
from packed_bert.cluster.wire import encode
from packed_bert.errors import UserError


class ClusterRunner:
    """Device ``identity.index`` of a run: a ``DeviceActor`` on node ``identity.node``."""

    pipelined = True  # several batches in flight; the actor runs them one after another

    def __init__(
        self, actor: Any, identity: DeviceIdentity, device_index: int, inflight: int = 2, timeout_s: float | None = None
    ) -> None:
        self.actor = actor
        self.inflight = inflight  # batches the actor takes at once (the pool's threads in Offline)
        self.info = identity
        self.node = identity.node
        self.host = identity.host
        self.device_index = device_index  # on its node
        runner = identity.runner
        self.simulated = bool(runner.get("simulated", identity.simulated))
        base = str(runner.get("name", identity.backend)).removesuffix(" (simulated)")
        self.name = f"ray/{base}"
        self.precision = str(runner.get("precision", identity.precision))
        self.device = f"{identity.node}/{runner.get('device', identity.device)}"
        self.static_shape = bool(runner.get("static_shape", False))
        threads = f", {identity.threads} threads" if identity.threads else ""
        self.detail = (
            f"Ray actor on node {identity.host} ({identity.node}), device "
            f"{device_index} there{threads}: {runner.get('detail', '')}"
        )
        self.timeout_s = timeout_s
        self._lost = ""

    @property
    def where(self) -> str:
        return self.info.where

    def infer(self, batch: BatchLike) -> np.ndarray:
        ray = import_ray()
        if self._lost:
            raise DeviceLost(f"{self.where}: lost earlier ({self._lost})")
        wire = encode(batch)
        try:
            ref = self.actor.infer.remote(wire)
            # wait first, then get: a blocking ray.get holds the process's object store client
            # while it waits, so with a thread per in-flight batch the next batch's put queued
            # behind the gets for many seconds (Offline on 8 cards fell to 3-37% of capacity)
            ready, _ = ray.wait([ref], timeout=self.timeout_s)
            if not ready:
                raise ray.exceptions.GetTimeoutError()
            logits = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # the runner raised: a device fault
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            raise RuntimeError(f"{self.where}: {type(cause).__name__}: {cause}") from None
        except ray.exceptions.GetTimeoutError:
            self._lose(f"no answer in {self.timeout_s:g} s")
            with contextlib.suppress(Exception):
                ray.kill(self.actor, no_restart=True)  # a late answer must not come back
            raise DeviceLost(f"{self.where}: {self._lost}") from None
        except ray.exceptions.RayError as exc:  # actor, node, object or owner died
            self._lose(f"{type(exc).__name__}: {_first_line(exc)}")
            raise DeviceLost(f"{self.where}: {self._lost}") from None
        rows, length = wire.input_ids.shape
        if not isinstance(logits, np.ndarray) or logits.shape != (rows, length, 2):
            raise RuntimeError(
                f"{self.where}: logits of shape {getattr(logits, 'shape', None)} for a [{rows}, {length}] batch"
            )
        return logits

    def _lose(self, why: str) -> None:
        self._lost = self._lost or why


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def make_cluster_runners(handle: ClusterHandle, request: ClusterRequest) -> list[ClusterRunner]:
    """Reserve the run's devices (a placement group, held until ``handle.release()``), start one
    actor per device, check each against the run and return one runner per device, grouped
    by node. Any failure is a one-line ``UserError`` and leaves nothing reserved."""
    ray = import_ray()
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    count = devices_wanted(handle, request)
    pg = reserve(handle, request, count)
    remote_cls = ray.remote(DeviceActor)
    actors = []
    for i in range(count):
        strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i)
        actor = remote_cls.options(
            **request.actor_resources(),
            max_concurrency=max(1, request.inflight),
            max_restarts=0,
            scheduling_strategy=strategy,
        ).remote(request, i)
        actors.append(actor)
    handle.track(actors=actors)
    try:
        found = _prepare(actors, request, handle)
        check_devices(found, request, handle.label())
    except BaseException:
        handle.free(placement_group=pg, actors=actors)
        raise
    return _runners(actors, found, request)


def _prepare(actors: list[Any], request: ClusterRequest, handle: ClusterHandle) -> list[DeviceIdentity]:
    ray = import_ray()
    refs = [a.prepare.remote() for a in actors]
    try:
        return list(ray.get(refs, timeout=request.startup_timeout_s))
    except ray.exceptions.GetTimeoutError:
        raise UserError(
            f"--cluster {handle.label()}: the device actors did not start within {request.startup_timeout_s:g} s"
        ) from None
    except ray.exceptions.RayError as exc:
        raise UserError(f"--cluster {handle.label()}: a device actor failed to start: {_first_line(exc)}") from None


def _runners(actors: list[Any], found: list[DeviceIdentity], request: ClusterRequest) -> list[ClusterRunner]:
    """One runner per actor, ordered by node (the order nodes first appear), numbered per node."""
    order = {node: i for i, node in reversed(list(enumerate(f.node for f in found)))}
    per_node: dict[str, int] = {}
    out = []
    for actor, ident in sorted(zip(actors, found, strict=True), key=lambda p: (order[p[1].node], p[1].index)):
        k = per_node.get(ident.node, 0)
        per_node[ident.node] = k + 1
        out.append(ClusterRunner(actor, ident, k, request.inflight, request.batch_timeout_s))
    return out
