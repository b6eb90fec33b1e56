"""The nodes and devices a run used, from its runners (for ``system.json``).

A local runner is one device of the lead host. Remote runners carry their worker's address
(``node``) and ``device_index``; a remote device served over several connections counts once.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from typing import Any

LEAD = "lead"


def node_of(runner: Any) -> str:
    return str(getattr(runner, "node", LEAD))


def describe_nodes(runners: Sequence[Any]) -> list[dict[str, Any]]:
    """Per node with devices, in the runners' order: ``node`` (``lead`` or ``HOST:PORT``),
    ``host`` (its host name), ``devices``, ``connections`` (runners) and a sample runner."""
    from packed_bert.backends.base import describe

    nodes: dict[str, dict[str, Any]] = {}
    devices: dict[str, set[Any]] = {}
    for i, runner in enumerate(runners):
        node = node_of(runner)
        if node not in nodes:
            info = getattr(runner, "info", None)
            host = getattr(info, "host", None) or platform.node()
            nodes[node] = {"node": node, "host": host, "devices": 0, "connections": 0,
                           "runner": describe(runner)}
            devices[node] = set()
        devices[node].add(getattr(runner, "device_index", i))
        nodes[node]["connections"] += 1
    for node, entry in nodes.items():
        entry["devices"] = len(devices[node])
    return list(nodes.values())
