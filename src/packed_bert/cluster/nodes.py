"""The nodes and devices a run used, from its runners (for ``system.json`` and submissions).

A runner that is not a ``ClusterRunner`` is a device of the driver's host (node ``driver``).
A cluster runner carries its node (``IP/node-id``), host name and its device index there.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from typing import Any

DRIVER = "driver"


def describe_nodes(runners: Sequence[Any]) -> list[dict[str, Any]]:
    """Per node with devices, in the runners' order: ``node``, ``host``, ``devices`` and the
    description of its first runner (``runner``)."""
    from packed_bert.backends.base import describe

    nodes: dict[str, dict[str, Any]] = {}
    for runner in runners:
        node = str(getattr(runner, "node", DRIVER))
        if node not in nodes:
            host = getattr(runner, "host", None) or platform.node()
            nodes[node] = {"node": node, "host": host, "devices": 0, "runner": describe(runner)}
        nodes[node]["devices"] += 1
    return list(nodes.values())
