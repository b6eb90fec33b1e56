"""``packed-bert systems``: the systems under test this harness knows."""

from __future__ import annotations

import argparse
import json
from typing import Any

from packed_bert.harness.plan import for_this_cpu
from packed_bert.systems import all_systems
from packed_bert.terms import Model, Scenario


def register(sub: Any) -> None:
    p = sub.add_parser("systems", help="list the systems under test")
    p.add_argument("--json", action="store_true", help="print the system files as JSON")
    p.set_defaults(handler=handle)


def table() -> list[str]:
    head = ("name", "devices", "simulated", *Model, "description")
    # per model: runtime:precision and the default batching (Offline/Server/SingleStream
    # when it differs per scenario)
    rows = [head]
    systems = list(map(for_this_cpu, all_systems()))
    for s in systems:
        rows.append(
            (
                s.name,
                "auto" if s.devices is None else str(s.devices),
                "yes" if s.simulated else "no",
                *(_recipe(s, m) for m in Model),
                s.description,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip() for r in rows]
    note = next((s.cpu_note() for s in systems if s.cpu_class), "")  # a system with recipes per CPU class
    return [*lines, f"this machine: {note}"] if note else lines


def _recipe(s: Any, model: str) -> str:
    """``onnxruntime:int8 sorted``; batching as ``sorted/packed/sorted`` when scenarios differ."""
    per = [s.batching_for(sc, model) for sc in Scenario]
    batching = per[0] if len(set(per)) == 1 else "/".join(per)
    return f"{s.backend_for(model)}:{s.precision_for(model)} {batching} ({_f1(s, model)})"


def _f1(s: Any, model: str) -> str:
    """The recipe's measured F1 over fp32 F1 (the system file's ``[f1_ratio]``)."""
    if model in s.f1_ratio:
        return f"F1 {s.f1_ratio[model]:.2f}% of fp32"
    if s.backend == "null":
        return "no model"
    if s.simulated:
        return "F1: fp32 logits on this CPU"
    return "F1 not measured"


def handle(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps([s.describe() for s in map(for_this_cpu, all_systems())], indent=2))
    else:
        print("\n".join(table()))
    return 0
