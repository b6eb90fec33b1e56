"""``packed-bert serve``: make this host a Ray node that offers its devices to packed-bert runs.

A thin wrapper over ``ray start``: it declares this host's devices of a system as the Ray
resource the run's device actors ask for (``packed_bert_sim_card``, ``GPU``,
``packed_bert_cpu_group``, ``packed_bert_null_device``; docs/cluster.md), with Ray's token
authentication on. Then, on any node (or through Ray Client):
``packed-bert run --sut SYSTEM --cluster HEAD:PORT``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from packed_bert.errors import UserError
from packed_bert.terms import Model, parse


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="make this host a Ray node offering its devices (ray start)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--sut", required=True, help="the system whose devices this host offers")
    p.add_argument("--model", default="bert-99", help="bert-99 | bert-99.9 (picks the system's runtime)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--head", metavar="HOST:PORT", help="join the cluster whose head is there")
    where.add_argument(
        "--start-head",
        metavar="PORT",
        type=int,
        help="start a new cluster here (head node on PORT; Ray Client on 10001)",
    )
    p.add_argument("--devices", type=int, help="how many devices this host offers (default: the system file's)")
    p.add_argument("--dry-run", action="store_true", help="print the ray start command, do not run it")
    p.set_defaults(handler=handle)


def ray_command(args: argparse.Namespace) -> list[str]:
    from packed_bert.cluster import GPU, ray_start_command, resource_for
    from packed_bert.systems import load_system

    system = load_system(args.sut)
    model = parse(Model, args.model, "--model")
    backend = system.backend_for(model)
    resource = resource_for(backend, "cuda" if backend == "torch" and system.devices is None else "cpu")
    devices = args.devices if args.devices is not None else system.devices
    if devices is not None and devices < 1:
        raise UserError(f"--devices {devices}: must be at least 1")
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray is None:
        raise UserError("serve needs Ray's ray command: pip install 'packed-bert[cluster]'")
    if args.head:
        argv = ray_start_command(args.head.strip(), resource, devices)
    else:
        argv = [
            "ray",
            "start",
            "--head",
            "--port",
            str(args.start_head),
            "--ray-client-server-port",
            "10001",
            "--include-dashboard",
            "false",
        ]
        if resource == GPU:
            argv += [] if devices is None else ["--num-gpus", str(devices)]
        else:
            argv += ["--resources", json.dumps({resource: devices or 1})]
    return [ray, *argv[1:]]


def handle(args: argparse.Namespace) -> int:
    argv = ray_command(args)
    env = dict(os.environ)
    env.setdefault("RAY_AUTH_MODE", "token")  # every node, driver and client shows the token
    shown = f"RAY_AUTH_MODE={env['RAY_AUTH_MODE']} " + shlex.join(argv)
    if args.dry_run:
        print(shown)
        return 0
    print(f"serve: {shown}", flush=True)
    return subprocess.run(argv, env=env, check=False).returncode
