"""``packed-bert run``: one benchmark run under LoadGen (accuracy, performance, compliance, power).

Takes the spellings of the harness it replaces too: ``--sut=r282_z93_q1 --sdk=1.5.9
--model=bert-99 --mode=accuracy --scenario=offline --override_batch_size=4096 --target_qps=300
--verbose``, ``--compliance=TEST05,TEST01`` (also ``--compliance,=...``) and ``--power=yes
--power_server_ip=IP --power_server_port=PORT --sleep_before_ck_benchmark_sec=S``. The last
line printed is the run's JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from packed_bert.errors import UserError
from packed_bert.harness.config import RunConfig

_SCENARIOS = {"offline": "Offline", "server": "Server", "singlestream": "SingleStream",
              "single_stream": "SingleStream", "single-stream": "SingleStream"}
_MODELS = {"bert-99": "bert-99", "bert-99.9": "bert-99.9", "bert99": "bert-99", "bert99.9": "bert-99.9"}


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run a benchmark under LoadGen",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sut", required=True, help="system name (see `packed-bert systems`) or a .toml")
    p.add_argument("--model", default="bert-99", help="bert-99 | bert-99.9")
    p.add_argument("--mode", default="performance",
                   help="accuracy | performance | compliance | power")
    p.add_argument("--scenario", default="offline", help="offline | server | singlestream")
    p.add_argument("--batch-size", "--batch_size", "--override_batch_size", dest="batch_size",
                   type=int, help="samples per device batch (default: the system file's)")
    p.add_argument("--target-qps", "--target_qps", dest="target_qps", type=float,
                   help="LoadGen target QPS (default: the system file's)")
    p.add_argument("--execution", default="test", choices=("test", "valid", "demo"),
                   help="test: short runs; valid: MLPerf minimums; demo: short run + checks")
    p.add_argument("--results-dir", "--results_dir", dest="results_dir", type=Path,
                   default=Path("results"))
    p.add_argument("--weights", help="random | tiny | PATH (default: the system file's)")
    p.add_argument("--batching", choices=("packed", "sorted", "padded"),
                   help="default: the system file's")
    p.add_argument("--no-packing", "--no_packing", dest="no_packing", action="store_true",
                   help="same as --batching padded")
    p.add_argument("--find-peak", "--find_peak", dest="find_peak", action="store_true",
                   help="Server: search the highest QPS meeting the 130 ms p99 bound")
    p.add_argument("--dataset", type=Path, help="SQuAD v1.1 dev json")
    p.add_argument("--vocab", type=Path, help="BERT uncased vocab.txt")
    p.add_argument("--count", "--sample-count", "--sample_count", dest="count", type=int,
                   help="use only the first N samples (quick runs)")
    p.add_argument("--questions", choices=("all", "odd-articles", "even-articles"),
                   help="run and score only these SQuAD dev questions (by article; default all)")
    p.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                   help="extra user.conf setting for this scenario, e.g. min_duration=20000")
    p.add_argument("--sdk", help="accelerator SDK version, recorded in system.json")
    p.add_argument("--verbose", "-v", action="store_true")
    # multi-host
    p.add_argument("--hosts", metavar="HOST:PORT[,HOST:PORT...]",
                   help="also use the devices of these workers (`packed-bert serve` on each); "
                        "default: the system file's hosts")
    p.add_argument("--no-local-devices", "--no_local_devices", dest="no_local_devices",
                   action="store_true", help="use only the --hosts devices (this host runs LoadGen)")
    # compliance
    p.add_argument("--compliance", "--compliance,", dest="compliance", default=None,
                   help="audit tests, e.g. TEST01,TEST05 (implies --mode compliance)")
    p.add_argument("--round", help="MLPerf round, e.g. v4.1 (default: the newest supported)")
    p.add_argument("--accuracy-dir", "--accuracy_dir", dest="accuracy_dir", type=Path,
                   help="compliance: the accuracy run to compare with (default: the newest in --results-dir)")
    p.add_argument("--performance-dir", "--performance_dir", dest="performance_dir", type=Path,
                   help="compliance: the performance run to compare with (default: the newest)")
    # power
    p.add_argument("--power", choices=("yes", "no"), default=None, help="old spelling of --mode power")
    p.add_argument("--power-server", dest="power_server", metavar="HOST:PORT")
    p.add_argument("--power_server_ip", dest="power_server_ip")
    p.add_argument("--power_server_port", dest="power_server_port")
    p.add_argument("--ntp", "--ntp_server", dest="ntp")
    p.add_argument("--sleep-before", "--sleep_before_ck_benchmark_sec", dest="sleep_before",
                   type=float, default=0.0)
    p.set_defaults(handler=handle)


def config_from_args(args: argparse.Namespace, argv: list[str] | None = None) -> RunConfig:
    scenario = _SCENARIOS.get(str(args.scenario).lower())
    if scenario is None:
        raise UserError(f"--scenario {args.scenario!r}: choose offline, server or singlestream")
    model = _MODELS.get(str(args.model).lower())
    if model is None:
        raise UserError(f"--model {args.model!r}: choose bert-99 or bert-99.9")
    mode = str(args.mode).lower()
    if mode not in ("accuracy", "performance", "compliance", "power"):
        raise UserError(f"--mode {args.mode!r}: choose accuracy, performance, compliance or power")
    tests: tuple[str, ...] = ()
    if args.compliance:
        tests = tuple(t.strip().upper() for t in args.compliance.split(",") if t.strip())
        if mode == "performance":
            mode = "compliance"
    if args.power == "yes" and mode == "performance":
        mode = "power"
    power_server = args.power_server
    if args.power_server_ip:
        power_server = f"{args.power_server_ip}:{args.power_server_port or 4950}"
    batching = "padded" if args.no_packing else args.batching
    if args.no_packing and args.batching not in (None, "padded"):
        raise UserError("--no-packing and --batching disagree; give one of them")
    extra: dict[str, Any] = {}
    if args.setting:
        from packed_bert.harness.settings import parse_setting

        extra["settings"] = dict(parse_setting(s) for s in args.setting)
    for key in ("accuracy_dir", "performance_dir"):
        if getattr(args, key, None) is not None:
            extra[key] = getattr(args, key)
    if args.sleep_before < 0:
        raise UserError("--sleep-before must be >= 0 seconds")
    hosts = None
    if args.hosts is not None:
        from packed_bert.remote.address import split_hosts

        hosts = split_hosts(args.hosts)
    return RunConfig(
        sut=args.sut, model=model, scenario=scenario, mode=mode,  # type: ignore[arg-type]
        execution=args.execution, results_dir=args.results_dir, batch_size=args.batch_size,
        target_qps=args.target_qps, weights=args.weights, batching=batching,  # type: ignore[arg-type]
        sdk=args.sdk,
        dataset=args.dataset, vocab=args.vocab, find_peak=args.find_peak,
        sample_count=args.count, questions=None if args.questions in (None, "all") else args.questions,
        verbose=args.verbose, compliance_tests=tests,
        round=args.round, power_server=power_server, ntp_server=args.ntp,
        sleep_before_s=args.sleep_before, hosts=hosts, local_devices=not args.no_local_devices,
        command_line=tuple(argv or getattr(args, "argv", None) or ["packed-bert", *sys.argv[1:]]),
        extra=extra,
    )


def command_for(cfg: RunConfig) -> list[str]:
    """The ``packed-bert run`` command line that makes ``cfg`` again (``config_from_args`` of it
    gives back the same run): what compliance and power record and hand to the power client."""
    argv = ["packed-bert", "run", "--sut", cfg.sut, "--model", cfg.model, "--scenario", cfg.scenario.lower(),
            "--mode", cfg.mode, "--execution", cfg.execution, "--results-dir", str(cfg.results_dir)]
    for flag, value in (("--batch-size", cfg.batch_size), ("--target-qps", cfg.target_qps),
                        ("--weights", cfg.weights), ("--batching", cfg.batching), ("--sdk", cfg.sdk),
                        ("--count", cfg.sample_count), ("--questions", cfg.questions),
                        ("--dataset", cfg.dataset), ("--vocab", cfg.vocab),
                        ("--round", cfg.round), ("--power-server", cfg.power_server), ("--ntp", cfg.ntp_server)):
        if value is not None:
            argv += [flag, str(value)]
    if cfg.compliance_tests:
        argv += ["--compliance", ",".join(cfg.compliance_tests)]
    if cfg.sleep_before_s:
        argv += ["--sleep-before", f"{cfg.sleep_before_s:g}"]
    if cfg.hosts is not None:
        argv += ["--hosts", ",".join(cfg.hosts)]
    if not cfg.local_devices:
        argv += ["--no-local-devices"]
    for key, value in dict(cfg.extra.get("settings", {})).items():
        argv += ["--setting", f"{key}={value}"]
    return argv


def handle(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if cfg.mode == "compliance":
        from packed_bert.compliance.workflow import run_compliance

        return int(run_compliance(cfg))
    if cfg.mode == "power":
        from packed_bert.power.workflow import run_power

        return int(run_power(cfg))
    if cfg.find_peak:
        from packed_bert.harness.peak import find_peak

        result = find_peak(cfg)
    elif cfg.execution == "demo":
        from packed_bert.harness.demo import run_demo

        result = run_demo(cfg)
    else:
        from packed_bert.harness.runner import run_benchmark

        result = run_benchmark(cfg)
    print(json.dumps(result.summary, default=str), flush=True)
    return 0
