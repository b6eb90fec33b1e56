"""``run_benchmark(cfg) -> RunResult``: one LoadGen run from start to its result directory."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from packed_bert import signals
from packed_bert.backends.base import Runner
from packed_bert.errors import UserError
from packed_bert.harness import settings as st
from packed_bert.harness.accuracy import NOT_SCORED, score_log
from packed_bert.harness.batching import BatchBuilder
from packed_bert.harness.config import RunConfig, RunResult
from packed_bert.harness.devices import RunDevices, check_local_devices, open_devices
from packed_bert.harness.errors import RunError
from packed_bert.harness.flags import to_argv
from packed_bert.harness.loadgen_run import NO_AUDIT_CONFIG, LoadGenStillRunning, run_loadgen
from packed_bert.harness.plan import RunPlan, plan_run, scaled_for_devices
from packed_bert.harness.probe import probe_reason, probe_samples_per_s, target_from_probe
from packed_bert.harness.qsl import SampleLibrary
from packed_bert.harness.summary import (
    Say,
    ends_by_time,
    expected_samples,
    print_result,
    run_summary,
    short_settings,
)
from packed_bert.harness.sut import BenchmarkSUT
from packed_bert.harness.system_description import describe_system
from packed_bert.harness.workers import NoDevicesLeft
from packed_bert.progress import Progress
from packed_bert.results.loadgen_logs import ACCURACY_LOG, SUMMARY, read_summary
from packed_bert.results.run_dirs import RunDir, check_results_dir, run_name
from packed_bert.terms import Mode, Scenario


def run_benchmark(
    cfg: RunConfig,
    *,
    features: Any = None,
    runners: Sequence[Runner] | None = None,
    quiet: bool = False,
) -> RunResult:
    """Run LoadGen once as ``cfg`` says; every run gets a new directory under ``results_dir``.

    ``cfg.audit_config`` (a compliance test's) is copied into the run directory, where LoadGen
    reads it. ``features``/``runners`` let workflows, tests and benchmarks pass their own.
    """
    plan = plan_run(cfg)
    say: Say = (lambda _msg: None) if quiet else (lambda msg: print(msg, flush=True))
    check_results_dir(cfg.results_dir)
    if runners is None:
        check_local_devices(plan)
    if features is None:
        from packed_bert.squad.features import load_features

        features = load_features(cfg.dataset, cfg.vocab)
    if cfg.questions is not None:  # an article split: the run's samples are its features, renumbered
        from packed_bert.squad.splits import subset_features

        features = subset_features(features, cfg.questions)
    library = SampleLibrary.from_features(features, cfg.sample_count)
    provenance = getattr(features, "provenance", None)
    for warning in provenance.warnings() if provenance is not None else []:
        print(f"WARNING: {warning}", file=sys.stderr, flush=True)
    # everything that can fail on the user's input (weights, devices) fails before a directory
    devices = RunDevices(list(runners)) if runners is not None else open_devices(plan, library)
    try:
        plan = scaled_for_devices(plan, len(devices.runners))
        reason = probe_reason(plan)
        if reason is not None:  # the system file's rate is another model's: time this one
            rate = probe_samples_per_s(plan, library, devices.runners)
            qps = target_from_probe(plan, rate)
            say(f"target QPS {qps:g} from a probe ({rate:,.1f} samples/s on {plan.batching} batches): {reason}")
            plan = dataclasses.replace(
                plan_run(dataclasses.replace(cfg, target_qps=qps)), target_qps_from=f"a probe ({rate:.4g} samples/s)"
            )
        rd = RunDir(cfg.results_dir, run_name(plan.system.name, cfg.model, plan.scenario, cfg.mode))
        try:
            return _run_in(rd, plan, library, features, devices, say, quiet)
        except KeyboardInterrupt as exc:
            where = rd.abandon(signals.describe(exc))
            print(f"{signals.describe(exc)}; partial logs kept in {where}", file=sys.stderr, flush=True)
            if isinstance(exc, LoadGenStillRunning):
                # LoadGen has no abort and would crash the interpreter's exit: leave now
                devices.release()
                print(
                    f"packed-bert: {signals.describe(exc)}; earlier results are left as they were",
                    file=sys.stderr,
                    flush=True,
                )
                sys.stdout.flush()
                os._exit(signals.exit_code(exc))
            raise
        except BaseException as exc:
            rd.abandon(f"failed: {exc}")
            raise
    finally:
        devices.release()


def _run_in(
    rd: RunDir,
    plan: RunPlan,
    library: SampleLibrary,
    features: Any,
    devices: RunDevices,
    say: Say,
    quiet: bool,
) -> RunResult:
    cfg = plan.cfg
    rd.write_text("command.txt", shlex.join(cfg.command_line or to_argv(cfg)) + "\n")
    header = f"user.conf of a packed-bert run: {plan.system.name} {cfg.model} {plan.scenario} ({cfg.execution})"
    user_conf = rd.write_text("user.conf", st.render_user_conf(plan.user_conf, header))
    loaded = st.load_test_settings(user_conf, plan.scenario, plan.mode)
    # TestSettings fields LoadGen does not take from the conf files: the round's seeds (LoadGen
    # carries one round's mlperf.conf), then the run's own (TEST05); checked by plan_run
    for key, value in {**plan.round.seed_settings(), **cfg.loadgen_settings}.items():
        setattr(loaded.test_settings, key, value)
        loaded.effective[key] = value
    if cfg.audit_config is not None:
        if not Path(cfg.audit_config).is_file():
            raise UserError(f"audit config {cfg.audit_config}: not found")
        rd.write_text(NO_AUDIT_CONFIG, Path(cfg.audit_config).read_text())
    runners = devices.runners
    system_json = describe_system(plan, runners, devices.cluster)
    provenance = getattr(features, "provenance", None)
    if provenance is not None:
        system_json["data"] = provenance.as_dict()
    rd.write_json("system.json", system_json)
    rd.write_json("settings.json", {**loaded.effective, "harness": plan.describe()})
    sim = " [SIMULATED]" if plan.system.simulated else ""
    cpu = f"; {note}" if (note := plan.cpu_note()) else ""
    nodes = system_json["number_of_nodes"]
    on_nodes = f" on {nodes} node{'s' if nodes != 1 else ''}" if "nodes" in system_json else ""
    say(
        f"run: {plan.system.name}{sim} {cfg.model} {plan.scenario} {cfg.mode} ({cfg.execution}); "
        f"{system_json['devices']} x {plan.backend} {plan.precision}{on_nodes}, batching {plan.batching}, "
        f"batch {plan.batch_size}, target {plan.target_qps:g} qps, weights {plan.weights}{cpu}"
    )
    if round_note := plan.round_note():
        say(f"note: {round_note}")
    say("settings: " + json.dumps(loaded.effective if cfg.verbose else short_settings(loaded.effective)))
    # one sample at a time every call could be a new length; a compiled runner compiles at its first call,
    # a graphed one captures a CUDA graph per call size
    if plan.scenario == Scenario.SINGLE_STREAM or any(getattr(r, "prepares_per_shape", False) for r in runners):
        warm_up(runners, plan.batch_size, say)
    progress = Progress(
        expected_samples(plan, library.total, loaded.effective),
        f"{plan.scenario} {cfg.mode}",
        enabled=not quiet,
        min_seconds=ends_by_time(plan, loaded.effective),
    )
    trim = not all(r.static_shape for r in runners)
    call_rows = {getattr(r, "call_rows", None) for r in runners}  # fixed call shapes: cut batches to fill calls
    rows = call_rows.pop() if len(call_rows) == 1 else None
    builder = BatchBuilder(library, plan.batching, plan.system.max_per_row, trim_rows=trim, call_rows=rows)
    sut = BenchmarkSUT(
        builder,
        runners,
        plan.scenario,
        plan.batch_size,
        plan.inflight,
        plan.server_max_wait_s,
        dispatch_when_idle=plan.dispatch_when_idle,
        progress=progress,
        server_min_batch=plan.server_min_batch,
        serve_inline=True,  # one device, one thread: this thread runs it (``workers``: OpenMP's pools)
    )
    run_loadgen(sut, library, loaded.test_settings, rd.path)
    progress.close()
    if sut.pool.error is not None:
        exc = sut.pool.error
        if isinstance(exc, NoDevicesLeft):
            raise RunError(str(exc).replace("\n", " ")) from exc
        raise RunError(
            f"device {sut.pool.error_device} ({plan.backend}) failed: {type(exc).__name__}: {exc}".replace("\n", " ")
        ) from exc
    return _finish(rd, plan, features, sut, say)


def warm_up(runners: Sequence[Runner], rows: int, say: Say) -> None:
    """Untimed, before LoadGen starts: a runner that prepares its kernels per input shape
    (``warm``: OpenVINO's runs each length a batch of ``rows`` rows can have, a compiled PyTorch
    model compiles, a CUDA one captures its graphs) runs on blank rows."""
    for index, runner in enumerate(runners):
        warm = getattr(runner, "warm", None)
        if callable(warm):
            start = time.perf_counter()
            try:
                count = warm(rows)
            except Exception as exc:  # a device that cannot hold the graphs (out of memory) or compile
                device = getattr(runner, "device", index)
                raise RunError(
                    f"device {device} ({runner.name}) failed while warming up: {type(exc).__name__}: {exc}".replace(
                        "\n", " "
                    )
                ) from exc
            if count:
                fixed = getattr(runner, "call_rows", None)
                graphs = getattr(runner, "graph_rows", ())
                if graphs:
                    shape = f"CUDA graphs captured, for calls of {', '.join(map(str, graphs))} rows"
                elif fixed:
                    shape = f"calls of {fixed} rows, one per length step"
                else:
                    shape = f"blank batches of up to {rows} rows"
                say(f"warm-up: {count} {shape}, {time.perf_counter() - start:.1f} s")


def _finish(rd: RunDir, plan: RunPlan, features: Any, sut: BenchmarkSUT, say: Say) -> RunResult:
    cfg = plan.cfg
    log = read_summary(rd.path / SUMMARY, missing_ok=True)
    stats = sut.stats.summary()
    result = RunResult(
        run_dir=rd.path,
        config=cfg,
        scenario=plan.scenario,
        mode=cfg.mode,
        simulated=plan.system.simulated,
        batching=plan.batching,
    )
    if plan.mode == Mode.ACCURACY:
        acc = score_log(rd.path / ACCURACY_LOG, cfg.model, features, cfg.questions)
        rd.write_text("accuracy.txt", acc.text(cfg.model) if acc is not None else NOT_SCORED)
        if acc is not None:
            result.exact_match, result.f1, result.accuracy_passed = acc.exact_match, acc.f1, acc.passed
            result.f1_by_split = acc.f1_by_split
    else:
        result.valid = log.valid
        result.invalid_reasons = log.invalid_reasons
        result.loadgen_recommendations = log.recommendations
        if plan.scenario == Scenario.SINGLE_STREAM:
            result.latency_p90_ms = log.latency_p90_ms
        else:
            result.samples_per_second = log.samples_per_second
    from packed_bert.harness.report import write_report

    write_report(rd.path, plan, result, sut.stats, log)
    result.devices_lost = [dataclasses.asdict(d) for d in sut.pool.lost]
    result.devices_lost_line = sut.pool.lost_line()
    summary = run_summary(plan, result, stats, log)
    provenance = getattr(features, "provenance", None)
    summary["official_data"] = None if provenance is None else provenance.official
    result.run_dir = rd.finish_with_summary(summary)
    result.summary = summary
    print_result(plan, result, stats, say)
    return result
