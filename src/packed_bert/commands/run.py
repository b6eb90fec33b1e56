"""``packed-bert run``: one benchmark run under LoadGen (accuracy, performance, compliance, power).

Takes the spellings of the harness it replaces too: ``--sut=r282_z93_q1 --sdk=1.5.9
--model=bert-99 --mode=accuracy --scenario=offline --override_batch_size=4096 --target_qps=300
--verbose``, ``--compliance=TEST05,TEST01`` (also ``--compliance,=...``) and ``--power=yes
--power_server_ip=IP --power_server_port=PORT --sleep_before_ck_benchmark_sec=S``. The last
line printed is the run's JSON summary.

A plan: any flag as a list (``--model,=bert-99,bert-99.9``, ``--scenario,=offline,singlestream``)
and the groups (``--group.edge``, ``--group.datacenter``, ``--group.open``, ``--group.closed``,
``--group.submission``) stand for several runs, expanded for ``--round``; ``--dry-run`` prints
them as commands. The plan keeps runs whose valid result is already in ``--results-dir``
(``--rerun`` runs them again), goes on past a failed run, and ends with a table.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from packed_bert.harness.config import RunConfig
from packed_bert.harness.flags import add_flags, config_from_namespace
from packed_bert.terms import Execution, Mode
from packed_bert.workflows.plan import PlanRequest, add_plan_flags, expand, request_from_namespace


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run a benchmark under LoadGen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_flags(p)
    add_plan_flags(p)
    p.set_defaults(handler=handle)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return config_from_namespace(args, getattr(args, "argv", None) or ())


def handle(args: argparse.Namespace) -> int:
    request = request_from_namespace(args)
    if request.is_plan:
        return run_plan_command(args, request)
    cfg = config_from_args(args)
    if cfg.mode == Mode.COMPLIANCE:
        from packed_bert.workflows.compliance import run_compliance

        return int(run_compliance(cfg))
    if cfg.mode == Mode.POWER:
        from packed_bert.workflows.power import run_power

        return int(run_power(cfg))
    if cfg.find_peak:
        from packed_bert.workflows.find_peak import find_peak

        result = find_peak(cfg)
    elif cfg.execution == Execution.DEMO:
        from packed_bert.workflows.demo import run_demo

        result = run_demo(cfg)
    else:
        from packed_bert.harness.benchmark import run_benchmark

        result = run_benchmark(cfg)
    print(json.dumps(result.summary, default=str), flush=True)
    return 0


def run_plan_command(args: argparse.Namespace, request: PlanRequest) -> int:
    from packed_bert.workflows.plan_runner import dry_run, run_plan

    runs = expand(args, request)
    if request.dry_run:
        return dry_run(runs, request.rerun)
    return run_plan(runs, rerun=request.rerun)
