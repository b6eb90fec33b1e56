"""Devices past one host, on a Ray cluster: LoadGen, the QSL, packing and scheduling stay in
the driver; each device is a Ray actor that runs packed batches.

    request = ClusterRequest(backend="sim", model="bert-99", ...)
    with connect(address, node_resources=request.node_resources()) as handle:
        runners = make_cluster_runners(handle, request)  # one Runner per device
        ...  # run_benchmark(cfg, runners=runners)

Ray is imported only when a cluster is used (``pip install 'packed-bert[cluster]'``).
"""

from packed_bert.cluster.connection import ClusterHandle, connect, release_all
from packed_bert.cluster.identity import DeviceIdentity, weights_id
from packed_bert.cluster.nodes import describe_nodes
from packed_bert.cluster.request import (
    CPU_GROUP,
    GPU,
    NULL_DEVICE,
    SIM_CARD,
    ClusterRequest,
    ray_start_command,
    resource_for,
)
from packed_bert.cluster.runner import ClusterRunner, make_cluster_runners

__all__ = [
    "CPU_GROUP",
    "GPU",
    "NULL_DEVICE",
    "SIM_CARD",
    "ClusterHandle",
    "ClusterRequest",
    "ClusterRunner",
    "DeviceIdentity",
    "connect",
    "describe_nodes",
    "make_cluster_runners",
    "ray_start_command",
    "release_all",
    "resource_for",
    "weights_id",
]
