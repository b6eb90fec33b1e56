"""A run's devices as one Ray placement group: held for the whole run, so a second run cannot
take them; it is told in one line who holds them."""

from __future__ import annotations

import os
import platform
import time
from typing import Any

from packed_bert.cluster.connection import ClusterHandle, import_ray
from packed_bert.cluster.request import ClusterRequest
from packed_bert.errors import UserError

NAME_PREFIX = "packed-bert"


def group_name(request: ClusterRequest) -> str:
    """Says whose the devices are, for the message a second run gets."""
    return f"{NAME_PREFIX} {request.run_name} on {platform.node()} pid {os.getpid()} since {time.strftime('%H:%M:%S')}"


def devices_wanted(handle: ClusterHandle, request: ClusterRequest) -> int:
    """How many devices the run takes: ``request.devices``, or every one the cluster has."""
    ray = import_ray()
    total = int(ray.cluster_resources().get(request.resource, 0))
    where = f"--cluster {handle.label()}"
    if total == 0:
        raise UserError(
            f"{where}: no node offers {request.resource}; start worker nodes with "
            f"ray start --address HEAD:PORT --resources '{{\"{request.resource}\": N}}'"
            if request.resource != "GPU"
            else f"{where}: no node has a GPU"
        )
    if request.devices is None:
        return total
    if request.devices > total:
        raise UserError(f"{where}: {request.devices} x {request.resource} wanted, the cluster has {total}")
    return request.devices


def reserve(handle: ClusterHandle, request: ClusterRequest, count: int) -> Any:
    """A ready placement group of ``count`` one-device bundles, or a one-line ``UserError``
    when the devices stay taken for ``placement_timeout_s``."""
    ray = import_ray()
    from ray.util.placement_group import placement_group, remove_placement_group

    bundles = [{request.resource: 1.0} for _ in range(count)]
    pg = placement_group(bundles, strategy="PACK", name=group_name(request))
    try:
        ray.get(pg.ready(), timeout=request.placement_timeout_s)
    except ray.exceptions.GetTimeoutError:
        remove_placement_group(pg)
        free = int(ray.available_resources().get(request.resource, 0))
        holders = holding_groups(request.resource, exclude=pg.id.hex())
        who = f"held by {'; '.join(holders)}" if holders else "held by other jobs"
        raise UserError(
            f"--cluster {handle.label()}: {count} x {request.resource} wanted, {free} free for "
            f"{request.placement_timeout_s:g} s: {who}; wait for that run to end or ask for fewer"
        ) from None
    handle.track(placement_group=pg)
    return pg


def holding_groups(resource: str, exclude: str = "") -> list[str]:
    """Names of the placement groups that hold ``resource`` now."""
    from ray.util.placement_group import placement_group_table

    names = []
    for pg_id, info in placement_group_table().items():
        if pg_id == exclude or info.get("state") != "CREATED":
            continue
        bundles = dict(info.get("bundles", {}))
        held = sum(float(b.get(resource, 0)) for b in bundles.values())
        if held:
            name = info.get("name") or f"placement group {pg_id[:8]}"
            names.append(f"{name} ({held:g})")
    return names
