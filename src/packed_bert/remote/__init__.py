"""Devices of other hosts: a remote device is a ``Runner`` whose ``infer`` ships the batch over
TCP to a ``packed-bert serve`` worker on that host.

- ``address.py``: ``HOST:PORT`` parsing
- ``protocol.py``: the framing (a JSON header and raw int32/int64/float32 arrays; no pickle)
- ``info.py``: what a worker serves (its hello) and the check against the lead's plan
- ``server.py``: the worker (``packed-bert serve``)
- ``client.py``: ``RemoteRunner`` and ``connect_hosts``
- ``nodes.py``: the nodes and devices a run used, for its system description
"""
