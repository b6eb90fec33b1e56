"""``run_benchmark(cfg) -> RunResult``: one LoadGen run from start to its result directory."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Any

import mlperf_loadgen as lg
import numpy as np

from packed_bert.errors import UserError
from packed_bert.harness import settings as st
from packed_bert.harness.batching import BatchBuilder
from packed_bert.harness.config import ACCURACY_TARGET_F1, RunConfig, RunResult
from packed_bert.harness.devices import make_runners
from packed_bert.harness.errors import RunError
from packed_bert.harness.plan import RunPlan, plan_run
from packed_bert.harness.qsl import SampleLibrary
from packed_bert.harness.results import parse_summary
from packed_bert.harness.run_dir import RunDir, run_name
from packed_bert.harness.sut import BenchmarkSUT
from packed_bert.progress import Progress


def run_benchmark(
    cfg: RunConfig,
    audit_config: Path | None = None,
    *,
    features: Any = None,
    runners: list[Any] | None = None,
    quiet: bool = False,
) -> RunResult:
    """Run LoadGen once as ``cfg`` says; every run gets a new directory under ``results_dir``.

    ``audit_config`` (compliance) is copied into the run directory and handed to LoadGen;
    without one LoadGen is pointed at a file that does not exist, so a stray ``audit.config``
    in the working directory never changes a run. ``features``/``runners`` let tests and
    benchmarks pass their own.
    """
    plan = plan_run(cfg)
    say = (lambda _msg: None) if quiet else (lambda msg: print(msg, flush=True))
    if features is None:
        from packed_bert.squad.features import load_features

        features = load_features(cfg.dataset, cfg.vocab)
    if cfg.questions:  # a question split: the run's samples are its features, renumbered
        from packed_bert.squad.splits import subset_features

        features = subset_features(features, cfg.questions)
    library = SampleLibrary.from_features(features, cfg.sample_count)
    rd = RunDir(cfg.results_dir, run_name(plan.system.name, cfg.model, plan.scenario, cfg.mode))
    try:
        result = _run_in(rd, plan, library, audit_config, runners, say, quiet)
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
    rd: RunDir, plan: RunPlan, library: SampleLibrary, audit_config: Path | None,
    runners: list[Any] | None, say: Any, quiet: bool,
) -> RunResult:
    cfg = plan.cfg
    rd.write_text("command.txt", shlex.join(cfg.command_line or ("packed-bert", "run")) + "\n")
    header = f"user.conf of a packed-bert run: {plan.system.name} {cfg.model} {plan.scenario} ({cfg.execution})"
    user_conf = rd.write_text("user.conf", st.render_user_conf(plan.user_conf, header))
    loaded = st.load_test_settings(user_conf, plan.scenario, plan.mode)
    # compliance: TestSettings fields LoadGen does not take from audit.config (TEST05 seeds)
    for key, value in dict(cfg.extra.get("loadgen_test_settings", {})).items():
        if not hasattr(loaded.test_settings, key):
            raise UserError(f"loadgen test setting {key!r} is not a LoadGen TestSettings field")
        setattr(loaded.test_settings, key, value)
        loaded.effective[key] = value
    if runners is None:
        runners = make_runners(plan, library)
    system_json = _system_description(plan, runners)
    rd.write_json("system.json", system_json)
    effective = {**loaded.effective, "harness": plan.describe()}
    rd.write_json("settings.json", effective)
    sim = " [SIMULATED]" if plan.system.simulated else ""
    nodes = system_json["number_of_nodes"]
    on_nodes = f" on {nodes} node{'s' if nodes != 1 else ''}" if "nodes" in system_json else ""
    say(
        f"run: {plan.system.name}{sim} {cfg.model} {plan.scenario} {cfg.mode} ({cfg.execution}); "
        f"{system_json['devices']} x {plan.backend} {plan.precision}{on_nodes}, batching {plan.batching}, "
        f"batch {plan.batch_size}, target {plan.target_qps:g} qps, weights {plan.weights}"
    )
    say("settings: " + json.dumps(loaded.effective if cfg.verbose else _short(loaded.effective)))
    audit_path = rd.path / "audit.config"
    if audit_config is not None:
        if not Path(audit_config).is_file():
            raise UserError(f"audit config {audit_config}: not found")
        audit_path.write_bytes(Path(audit_config).read_bytes())
    expected = _expected_samples(plan, library, loaded.effective)
    progress = Progress(expected, f"{plan.scenario} {cfg.mode}", enabled=not quiet)
    trim = not all(r.static_shape for r in runners)
    builder = BatchBuilder(library, plan.batching, plan.system.max_per_row, trim_rows=trim)
    sut = BenchmarkSUT(
        builder, runners, plan.scenario, plan.batch_size, plan.inflight, plan.server_max_wait_s,
        dispatch_when_idle=plan.dispatch_when_idle, progress=progress,
        server_min_batch=plan.server_min_batch,
    )
    _start_test(sut, library, loaded.test_settings, rd.path, audit_path)
    progress.close()
    if sut.pool.error is not None:
        dev = sut.pool.error_device
        exc = sut.pool.error
        raise RunError(
            f"device {dev} ({plan.backend}) failed: {type(exc).__name__}: {exc}".replace("\n", " ")
        ) from exc
    return _finish(rd, plan, library, sut, system_json, say)


class LoadGenStillRunning(KeyboardInterrupt):
    """Ctrl-C while LoadGen cannot be stopped (it has no abort): the process must end at once."""


def _start_test(sut: BenchmarkSUT, library: SampleLibrary, ts: Any, outdir: Path, audit: Path) -> None:
    """Run LoadGen in a thread so Ctrl-C reaches Python; on Ctrl-C every sample still to come is
    answered empty at once and LoadGen gets a few seconds to end (an Offline run does). If it is
    still running (Server issues until its duration is over), ``LoadGenStillRunning`` is raised:
    the SUT and QSL are left alone, since LoadGen still uses them."""
    log = lg.LogSettings()
    log.log_output.outdir = str(outdir)
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False
    sut_handle = sut.construct()
    qsl_handle = library.construct()
    errors: list[BaseException] = []
    done = threading.Event()  # not Thread.is_alive(): an interrupted join() can misreport it

    def target() -> None:
        try:
            lg.StartTestWithLogSettings(sut_handle, qsl_handle, ts, log, str(audit))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=target, name="loadgen", daemon=True)
    thread.start()
    try:
        while not done.wait(0.2):
            pass
    except KeyboardInterrupt:
        sut.pool.fail(KeyboardInterrupt("interrupted"))
        if not done.wait(5.0):
            raise LoadGenStillRunning() from None
        raise
    finally:
        if done.is_set():
            sut.close()
            lg.DestroySUT(sut_handle)
            lg.DestroyQSL(qsl_handle)
    if errors:
        raise RunError(f"LoadGen failed: {errors[0]}") from errors[0]


def _finish(rd: RunDir, plan: RunPlan, library: SampleLibrary, sut: BenchmarkSUT,
            system_json: dict[str, Any], say: Any) -> RunResult:
    cfg = plan.cfg
    summary_log = parse_summary(rd.path / "mlperf_log_summary.txt")
    stats = sut.stats.summary()
    result = RunResult(
        run_dir=rd.path, config=cfg, scenario=cfg.scenario, mode=cfg.mode,
        simulated=plan.system.simulated, batching=plan.batching,
    )
    if plan.mode == "accuracy" and not cfg.extra.get("skip_scoring"):
        _score(rd, plan, result, say)
    else:
        result.valid = summary_log.valid
        result.invalid_reasons = summary_log.invalid_reasons
        if plan.scenario == "SingleStream":
            result.latency_p90_ms = summary_log.latency_p90_ms
        else:
            result.samples_per_second = summary_log.samples_per_second
    from packed_bert.harness.report import write_report

    write_report(rd.path, plan, result, sut.stats, summary_log)
    summary = _summary(plan, result, stats, summary_log)
    final = rd.finish()
    result.run_dir = final
    summary["run_dir"] = str(final)
    result.summary = summary
    rd.write_json("summary.json", summary)
    _print_result(plan, result, stats, say)
    return result


def _score(rd: RunDir, plan: RunPlan, result: RunResult, say: Any) -> None:
    from packed_bert.squad.features import load_features
    from packed_bert.squad.scoring import score_log_by_split, split_lines

    log = rd.path / "mlperf_log_accuracy.json"
    feats = load_features(plan.cfg.dataset, plan.cfg.vocab)
    scores = score_log_by_split(log, feats, plan.cfg.questions or "all")
    acc = next(iter(scores.values()))
    result.f1_by_split = {name: s.f1 for name, s in scores.items()}
    target = ACCURACY_TARGET_F1[plan.cfg.model]
    result.exact_match, result.f1 = acc.exact_match, acc.f1
    result.accuracy_passed = acc.f1 >= target
    scope = (
        f"{acc.questions_scored} of {acc.questions_total} questions "
        f"({acc.features_scored} features)"
    )
    text = (
        f"model: {plan.cfg.model}; target F1 >= {target}\n"
        f"scored: {scope}\n" + split_lines(scores) +
        f"result: {'PASS' if result.accuracy_passed else 'FAIL'}\n"
        + json.dumps(acc.as_dict()) + "\n"
    )
    rd.write_text("accuracy.txt", text)


def _summary(plan: RunPlan, result: RunResult, stats: dict[str, Any], summary_log: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sut": plan.system.name,
        "model": plan.cfg.model,
        "scenario": plan.scenario,
        "mode": plan.cfg.mode,
        "execution": plan.cfg.execution,
        "simulated": plan.system.simulated,
        "batching": plan.batching,
        "batch_size": plan.batch_size,
        "target_qps": plan.target_qps,
        "backend": plan.backend,
        "precision": plan.precision,
        "weights": plan.weights,
        "samples_per_second": result.samples_per_second,
        "latency_p90_ms": result.latency_p90_ms,
        "latency_p99_ms": summary_log.latency_p99_ms,
        "performance_constraints_satisfied": summary_log.performance_constraints,
        "valid": result.valid,
        "invalid_reasons": result.invalid_reasons,
        "token_efficiency": stats.get("token_efficiency"),
        "gain_over_padding": stats.get("gain_over_padding"),
        "samples": stats.get("samples"),
    }
    if plan.cfg.extra.get("compliance_test"):
        out["compliance_test"] = plan.cfg.extra["compliance_test"]
    if plan.mode == "accuracy" and result.f1 is not None:
        out.update(
            exact_match=result.exact_match, f1=result.f1,
            accuracy_target_f1=ACCURACY_TARGET_F1[plan.cfg.model], accuracy=(
                "PASS" if result.accuracy_passed else "FAIL"), f1_by_split=result.f1_by_split,
        )
    return out


def _print_result(plan: RunPlan, result: RunResult, stats: dict[str, Any], say: Any) -> None:
    sim = " (SIMULATED)" if plan.system.simulated else ""
    eff = stats.get("token_efficiency")
    pack = f"; token efficiency {eff:.1%}" if eff else ""
    if plan.mode == "accuracy" and result.f1 is not None:
        say(
            f"accuracy{sim}: exact_match {result.exact_match:.3f}, f1 {result.f1:.3f} -> "
            f"{'PASS' if result.accuracy_passed else 'FAIL'} (target F1 {ACCURACY_TARGET_F1[plan.cfg.model]})"
        )
    else:
        validity = {True: "VALID", False: "INVALID", None: "no result"}[result.valid]
        if result.samples_per_second is not None:
            say(f"performance{sim}: {result.samples_per_second:,.1f} samples/s, {validity}{pack}")
        elif result.latency_p90_ms is not None:
            say(f"performance{sim}: 90th percentile latency {result.latency_p90_ms:.2f} ms, {validity}{pack}")
        for reason in result.invalid_reasons:
            say(f"  INVALID because: {reason}")
    say(f"results: {result.run_dir}")


def _expected_samples(plan: RunPlan, library: SampleLibrary, eff: dict[str, Any]) -> int:
    if plan.mode == "accuracy":
        return library.total
    seconds = eff.get("min_duration_ms", 0) / 1e3
    return max(int(plan.target_qps * seconds), int(eff.get("min_query_count", 1)))


def _short(eff: dict[str, Any]) -> dict[str, Any]:
    keep = ("scenario", "mode", "offline_expected_qps", "server_target_qps", "server_target_latency_ms",
            "single_stream_expected_latency_ms", "min_duration_ms", "min_query_count",
            "performance_sample_count_override")
    return {k: v for k, v in eff.items() if k in keep}


def _system_description(plan: RunPlan, runners: list[Any]) -> dict[str, Any]:
    from packed_bert.remote.nodes import describe_nodes

    desc = plan.system.describe()
    desc["sdk"] = plan.cfg.sdk or plan.system.sdk
    # the nodes whose devices served batches (the lead only where its own devices took part)
    nodes = describe_nodes(runners)
    devices = sum(n["devices"] for n in nodes)
    desc["devices"] = devices
    desc["number_of_nodes"] = len(nodes)
    desc["runners"] = [n["runner"] for n in nodes] + (
        [f"... {devices - len(nodes)} more alike"] if devices > len(nodes) else [])
    if len(nodes) > 1 or any(n["node"] != "lead" for n in nodes):
        desc["nodes"] = [{k: v for k, v in n.items() if k != "runner"} for n in nodes]
        desc["local_devices"] = plan.cfg.local_devices  # False: the lead only ran LoadGen
    desc["run"] = plan.describe()
    desc["host_info"] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "python": sys.version.split()[0],
        "loadgen": _version("mlcommons-loadgen"),
        "numpy": np.__version__,
        "packed_bert": _version("packed-bert"),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if plan.system.simulated:
        desc["note"] = "SIMULATED: no such accelerator is here; timing from the published per-card rates"
    return desc


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None
