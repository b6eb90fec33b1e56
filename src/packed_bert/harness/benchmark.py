"""``run_benchmark(cfg) -> RunResult``: one LoadGen run from start to its result directory."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from packed_bert.backends.base import Runner
from packed_bert.errors import UserError
from packed_bert.harness import settings as st
from packed_bert.harness.accuracy import NOT_SCORED, score_log
from packed_bert.harness.batching import BatchBuilder
from packed_bert.harness.config import RunConfig, RunResult
from packed_bert.harness.devices import make_runners
from packed_bert.harness.errors import RunError
from packed_bert.harness.flags import to_argv
from packed_bert.harness.loadgen_run import NO_AUDIT_CONFIG, LoadGenStillRunning, run_loadgen
from packed_bert.harness.plan import RunPlan, plan_run
from packed_bert.harness.probe import probe_reason, probe_samples_per_s, target_from_probe
from packed_bert.harness.qsl import SampleLibrary
from packed_bert.harness.summary import (
    Say,
    expected_samples,
    print_result,
    run_summary,
    short_settings,
)
from packed_bert.harness.sut import BenchmarkSUT
from packed_bert.harness.system_description import describe_system
from packed_bert.progress import Progress
from packed_bert.results.loadgen_logs import ACCURACY_LOG, SUMMARY, read_summary
from packed_bert.results.run_dirs import RunDir, run_name
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
    if features is None:
        from packed_bert.squad.features import load_features

        features = load_features(cfg.dataset, cfg.vocab)
    library = SampleLibrary.from_features(features, cfg.sample_count)
    reason = probe_reason(plan)
    if reason is not None:  # the system file's rate is another model's: time this one
        runners = runners if runners is not None else make_runners(plan, library)
        rate = probe_samples_per_s(plan, library, runners)
        qps = target_from_probe(plan, rate)
        say(f"target QPS {qps:g} from a probe ({rate:,.1f} samples/s on {plan.batching} batches): {reason}")
        plan = dataclasses.replace(plan_run(dataclasses.replace(cfg, target_qps=qps)),
                                   target_qps_from=f"a probe ({rate:.4g} samples/s)")
    rd = RunDir(cfg.results_dir, run_name(plan.system.name, cfg.model, plan.scenario, cfg.mode))
    try:
        result = _run_in(rd, plan, library, features, runners, say, quiet)
    except KeyboardInterrupt as exc:
        where = rd.abandon("interrupted (Ctrl-C)")
        print(f"interrupted; partial logs kept in {where}", file=sys.stderr, flush=True)
        if isinstance(exc, LoadGenStillRunning):
            # LoadGen has no abort and would crash the interpreter's exit: leave now
            print("packed-bert: interrupted; earlier results are left as they were",
                  file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(130)
        raise
    except BaseException as exc:
        rd.abandon(f"failed: {exc}")
        raise
    return result


def _run_in(
    rd: RunDir, plan: RunPlan, library: SampleLibrary, features: Any,
    runners: Sequence[Runner] | None, say: Say, quiet: bool,
) -> RunResult:
    cfg = plan.cfg
    rd.write_text("command.txt", shlex.join(cfg.command_line or to_argv(cfg)) + "\n")
    header = f"user.conf of a packed-bert run: {plan.system.name} {cfg.model} {plan.scenario} ({cfg.execution})"
    user_conf = rd.write_text("user.conf", st.render_user_conf(plan.user_conf, header))
    loaded = st.load_test_settings(user_conf, plan.scenario, plan.mode)
    # TestSettings fields LoadGen does not take from the conf files: the round's seeds (LoadGen
    # carries one round's mlperf.conf), then the run's own (TEST05)
    for key, value in {**plan.round.seed_settings(), **cfg.loadgen_settings}.items():
        if not hasattr(loaded.test_settings, key):
            raise UserError(f"loadgen setting {key!r} is not a LoadGen TestSettings field")
        setattr(loaded.test_settings, key, value)
        loaded.effective[key] = value
    if cfg.audit_config is not None:
        if not Path(cfg.audit_config).is_file():
            raise UserError(f"audit config {cfg.audit_config}: not found")
        rd.write_text(NO_AUDIT_CONFIG, Path(cfg.audit_config).read_text())
    if runners is None:
        runners = make_runners(plan, library)
    system_json = describe_system(plan, runners)
    rd.write_json("system.json", system_json)
    rd.write_json("settings.json", {**loaded.effective, "harness": plan.describe()})
    sim = " [SIMULATED]" if plan.system.simulated else ""
    nodes = system_json["number_of_nodes"]
    on_nodes = f" on {nodes} node{'s' if nodes != 1 else ''}" if "nodes" in system_json else ""
    say(
        f"run: {plan.system.name}{sim} {cfg.model} {plan.scenario} {cfg.mode} ({cfg.execution}); "
        f"{system_json['devices']} x {plan.backend} {plan.precision}{on_nodes}, batching {plan.batching}, "
        f"batch {plan.batch_size}, target {plan.target_qps:g} qps, weights {plan.weights}"
    )
    say("settings: " + json.dumps(loaded.effective if cfg.verbose else short_settings(loaded.effective)))
    progress = Progress(expected_samples(plan, library.total, loaded.effective),
                        f"{plan.scenario} {cfg.mode}", enabled=not quiet)
    trim = not all(r.static_shape for r in runners)
    builder = BatchBuilder(library, plan.batching, plan.system.max_per_row, trim_rows=trim)
    sut = BenchmarkSUT(
        builder, runners, plan.scenario, plan.batch_size, plan.inflight, plan.server_max_wait_s,
        dispatch_when_idle=plan.dispatch_when_idle, progress=progress,
        server_min_batch=plan.server_min_batch,
    )
    run_loadgen(sut, library, loaded.test_settings, rd.path)
    progress.close()
    if sut.pool.error is not None:
        exc = sut.pool.error
        raise RunError(
            f"device {sut.pool.error_device} ({plan.backend}) failed: {type(exc).__name__}: {exc}".replace("\n", " ")
        ) from exc
    return _finish(rd, plan, features, sut, say)


def _finish(rd: RunDir, plan: RunPlan, features: Any, sut: BenchmarkSUT, say: Say) -> RunResult:
    cfg = plan.cfg
    log = read_summary(rd.path / SUMMARY, missing_ok=True)
    stats = sut.stats.summary()
    result = RunResult(
        run_dir=rd.path, config=cfg, scenario=plan.scenario, mode=cfg.mode,
        simulated=plan.system.simulated, batching=plan.batching,
    )
    if plan.mode == Mode.ACCURACY:
        acc = score_log(rd.path / ACCURACY_LOG, cfg.model, features)
        rd.write_text("accuracy.txt", acc.text(cfg.model) if acc is not None else NOT_SCORED)
        if acc is not None:
            result.exact_match, result.f1, result.accuracy_passed = acc.exact_match, acc.f1, acc.passed
    else:
        result.valid = log.valid
        result.invalid_reasons = log.invalid_reasons
        if plan.scenario == Scenario.SINGLE_STREAM:
            result.latency_p90_ms = log.latency_p90_ms
        else:
            result.samples_per_second = log.samples_per_second
    from packed_bert.harness.report import write_report

    write_report(rd.path, plan, result, sut.stats, log)
    summary = run_summary(plan, result, stats, log)
    final = rd.finish()
    result.run_dir = final
    summary["run_dir"] = str(final)
    result.summary = summary
    rd.write_json("summary.json", summary)
    print_result(plan, result, stats, say)
    return result
