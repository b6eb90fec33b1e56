"""``packed-bert serve``: lend this host's devices to a run on another host (multi-host).

Builds the system's runners as a run does, prints one line with the address and the devices it
serves, and answers the lead's batches over TCP until Ctrl-C. On the lead:
``packed-bert run --sut SYSTEM --hosts THIS_HOST:PORT[,...] [--no-local-devices]``.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from types import FrameType
from typing import Any

from packed_bert.harness.config import RunConfig
from packed_bert.terms import Batching, Model, parse

DEFAULT_LISTEN = "0.0.0.0:4960"


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve this host's devices to a run on another host",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sut", required=True, help="system name (see `packed-bert systems`) or a .toml")
    p.add_argument("--model", default="bert-99", help="bert-99 | bert-99.9")
    p.add_argument("--weights", help="random | tiny | PATH (default: the system file's)")
    p.add_argument("--batching", choices=tuple(Batching),
                   help="recorded only: the lead decides how batches are built")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                   help=f"address to listen on (default {DEFAULT_LISTEN}; port 0: any free port)")
    p.add_argument("--dataset", type=Path, help="SQuAD v1.1 dev json (simulated systems)")
    p.add_argument("--vocab", type=Path, help="BERT uncased vocab.txt (simulated systems)")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from packed_bert.remote.server import build_worker

    model = parse(Model, args.model, "--model")
    batching = None if args.batching is None else parse(Batching, args.batching, "--batching")
    cfg = RunConfig(sut=args.sut, model=model, weights=args.weights,
                    batching=batching, dataset=args.dataset, vocab=args.vocab)
    server = build_worker(cfg, args.listen)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:  # from here on Ctrl-C (or SIGTERM) is the normal way to stop
        print(_ready_line(server), flush=True)
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.close()
    print(f"serve: stopped; {server.connections} connections, {server.batches} batches served",
          flush=True)
    return 0


def _ready_line(server: Any) -> str:
    from packed_bert.remote.protocol import VERSION

    info = server.info
    sim = " [SIMULATED]" if info.simulated else ""
    names = list(dict.fromkeys(str(r.get("device")) for r in info.runners))
    shown = ", ".join(names[:4]) + (f", ... ({len(names)})" if len(names) > 4 else "")
    return (f"serve: {server.address} serves {info.sut}{sim} {info.model} {info.precision}, "
            f"weights {info.weights}: {info.devices} x {info.backend} ({shown}); "
            f"protocol {VERSION}; Ctrl-C stops")


def _terminate(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt
