"""``packed-bert run --mode compliance``: audit runs, then their verification, laid out as MLPerf's.

Output: a ``...-compliance`` run directory holding ``TEST01/{verify_accuracy.txt,
verify_performance.txt, accuracy/, performance/run_1/}`` and ``TEST05/{verify_performance.txt,
performance/run_1/}`` (the shape of MLPerf's compliance folders), plus ``summary.json``. Each
audit run is a harness run directory of its own, with its ``audit.config``.
"""

import dataclasses
import json
import multiprocessing
import shutil
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from packed_bert.compliance import tests as rules
from packed_bert.compliance.logs import ACCURACY_LOG, DETAIL, SUMMARY, read_detail
from packed_bert.compliance.rundirs import find_run, new_run_dir
from packed_bert.compliance.verify import (
    Scorer,
    compare_accuracy_logs,
    compare_performance,
    default_scorer,
    score_subsets,
)
from packed_bert.errors import UserError
from packed_bert.harness.config import RunConfig

# Runs one benchmark and returns its run directory (the harness in production, a stub in tests).
Runner = Callable[[RunConfig, Path | None], Path]


def run_in_process(cfg: RunConfig, audit_config: Path | None) -> Path:
    from packed_bert.harness.runner import run_benchmark

    return Path(run_benchmark(cfg, audit_config=audit_config).run_dir)


def harness_runner(cfg: RunConfig, audit_config: Path | None) -> Path:
    """One harness run in a fresh process. LoadGen takes one user.conf per process: a second one
    logs the ERROR "Multiple conf files are used" into the run's detail log, and MLPerf's
    submission checker rejects a log with an ERROR."""
    sys.stdout.flush()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_in_process, cfg, audit_config).result()


def _plan_mismatch(run_dir: Path, cfg: RunConfig) -> str | None:
    """Why a run found in the results directory is not the reference for ``cfg`` (or None)."""
    try:
        plan = json.loads((run_dir / "settings.json").read_text()).get("harness", {})
    except (OSError, json.JSONDecodeError, AttributeError):
        return None
    if not isinstance(plan, dict):
        return None
    if "sample_count" in plan and plan["sample_count"] != cfg.sample_count:
        return f"it used --count {plan['sample_count'] or 'all'}, this run --count {cfg.sample_count or 'all'}"
    if plan.get("questions", "all") != (cfg.questions or "all"):
        return f"it used --questions {plan.get('questions', 'all')}, this run --questions {cfg.questions or 'all'}"
    if cfg.weights is not None and plan.get("weights") not in (None, cfg.weights):
        return f"it used --weights {plan['weights']}, this run --weights {cfg.weights}"
    return None


def _reference_run(cfg: RunConfig, mode: str, runner: Runner) -> Path:
    given = cfg.extra.get(f"{mode}_dir")
    if given:
        path = Path(given)
        need = ACCURACY_LOG if mode == "accuracy" else SUMMARY
        if not (path / need).is_file():
            raise UserError(f"--{mode}-dir {path}: no {need} there")
        return path
    found = find_run(cfg.results_dir, cfg.sut, cfg.model, cfg.scenario, mode)
    why = _plan_mismatch(found, cfg) if found is not None else None
    if found is not None and why is None:
        print(f"compliance: using the {mode} run {found}")
        return found
    if found is not None:
        print(f"compliance: not using the {mode} run {found} ({why}); running one")
    else:
        print(f"compliance: no {mode} run of {cfg.sut}/{cfg.model}/{cfg.scenario} in {cfg.results_dir}; running one")
    from packed_bert.commands.run import command_for

    ref = dataclasses.replace(cfg, mode=mode, compliance_tests=(), round=None)  # type: ignore[arg-type]
    return runner(dataclasses.replace(ref, command_line=tuple(command_for(ref))), None)


def _check_audit_applied(test: str, audit_dir: Path) -> str | None:
    detail = read_detail(audit_dir / DETAIL)
    for key, want in rules.expected_effective_settings(test).items():
        got = (detail.get(key) or [None])[-1]
        if got != want:
            return f"the audit run did not take {test}'s settings ({key} = {got}, expected {want})"
    return None


def _copy(src: Path, dst_dir: Path) -> None:
    if src.is_file():
        dst_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst_dir / src.name)


def run_test(
    cfg: RunConfig, test: str, rnd: rules.Round, out: Path, acc_dir: Path, perf_dir: Path, runner: Runner, scorer: Scorer | None
) -> dict[str, Any]:
    staging = out / "audit" / test
    staging.mkdir(parents=True, exist_ok=True)
    audit_config = staging / "audit.config"
    audit_config.write_text(rules.audit_config_text(test, rnd))
    extra = {**cfg.extra, "compliance_test": test, "loadgen_test_settings": rules.test_settings_overrides(test)}
    audit_cfg = dataclasses.replace(cfg, mode="performance", compliance_tests=(), extra=extra)
    print(f"compliance {test}: audit run ({rnd.name} audit.config)", flush=True)
    audit_dir = runner(audit_cfg, audit_config)
    if not (audit_dir / "audit.config").exists():
        shutil.copy2(audit_config, audit_dir / "audit.config")

    test_dir = out / test
    test_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"audit_run": str(audit_dir)}
    problem = _check_audit_applied(test, audit_dir)
    perf = compare_performance(perf_dir / SUMMARY, audit_dir / SUMMARY, test)
    if problem:
        perf.lines.insert(-1, f"WARNING: {problem}")
        perf.lines[-1] = f"TEST FAIL: {problem}"
        perf.passed = False
    (test_dir / "verify_performance.txt").write_text(perf.text())
    _copy(audit_dir / SUMMARY, test_dir / "performance" / "run_1")
    _copy(audit_dir / DETAIL, test_dir / "performance" / "run_1")
    result["performance"] = {"passed": perf.passed, "reference": perf.reference.score, "test": perf.audit.score}
    unit = "ns" if "Stream" in perf.reference.scenario else "samples/s"
    scores = ", ".join(f"{name} {'none' if v is None else f'{v:,.1f}'}" for name, v in (
        ("performance run", perf.reference.score), ("audit run", perf.audit.score)))
    print(f"{test} performance: {perf.lines[-1]} ({scores} {unit})")

    if test == "TEST01":
        acc = compare_accuracy_logs(acc_dir / ACCURACY_LOG, audit_dir / ACCURACY_LOG)
        (test_dir / "verify_accuracy.txt").write_text(acc.text())
        _copy(audit_dir / ACCURACY_LOG, test_dir / "accuracy")
        entry: dict[str, Any] = {
            "identical": acc.passed,
            "compared": acc.num_perf_log_qsl_idx_match,
            "mismatched": acc.num_perf_log_data_mismatch,
        }
        if acc.passed:
            entry["passed"] = True
            print(f"TEST01 accuracy: TEST PASS (all {acc.num_perf_log_qsl_idx_match} logged responses are bit-identical "
                  "to the accuracy run's: identical answers, F1 delta 0.000%, no tolerance used)")
        elif acc.num_perf_log_qsl_idx_match == 0:
            entry["passed"] = False
            print("TEST01 accuracy: TEST FAIL (the audit run logged no response the accuracy run has)")
        else:
            fb = score_subsets(acc_dir / ACCURACY_LOG, audit_dir / ACCURACY_LOG, test_dir / "accuracy", cfg.model, scorer or default_scorer(cfg.dataset, cfg.vocab, cfg.questions))
            entry.update(passed=fb.passed, baseline_f1=fb.baseline_f1, compliance_f1=fb.compliance_f1, delta_percent=fb.delta_percent)
            print(
                f"TEST01 accuracy: {'TEST PASS' if fb.passed else 'TEST FAIL'} ({acc.num_perf_log_data_mismatch} of "
                f"{acc.num_perf_log_qsl_idx_match} logged responses differ bit-wise; F1 on those samples {fb.baseline_f1:.3f} "
                f"(accuracy run) vs {fb.compliance_f1:.3f} (audit run): {fb.delta_percent:.3f}% <= {fb.allowed_percent}% "
                f"{'holds' if fb.passed else 'fails'})"
            )
        result["accuracy"] = entry
    result["passed"] = bool(perf.passed and result.get("accuracy", {}).get("passed", True))
    return result


def run_compliance(cfg: RunConfig, runner: Runner | None = None, scorer: Scorer | None = None) -> int:
    """Run and verify the audit tests ``cfg.compliance_tests`` (default: all of the round's)."""
    rnd = rules.get_round(cfg.round)
    tests = rules.parse_tests(cfg.compliance_tests) if cfg.compliance_tests else rnd.tests
    rules.check_tests_in_round(tests, rnd)
    run = runner or harness_runner
    acc_dir = _reference_run(cfg, "accuracy", run) if "TEST01" in tests else None
    perf_dir = _reference_run(cfg, "performance", run)
    out = new_run_dir(cfg.results_dir, cfg.sut, cfg.model, cfg.scenario, "compliance")
    results = {}
    for test in tests:
        results[test] = run_test(cfg, test, rnd, out, acc_dir or perf_dir, perf_dir, run, scorer)
    shutil.rmtree(out / "audit", ignore_errors=True)
    passed = all(r["passed"] for r in results.values())
    summary = {
        "mode": "compliance",
        "sut": cfg.sut,
        "model": cfg.model,
        "scenario": cfg.scenario,
        "round": rnd.name,
        "tests": results,
        "accuracy_run": str(acc_dir) if acc_dir else None,
        "performance_run": str(perf_dir),
        "valid": passed,
        "run_dir": str(out),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "command.txt").write_text(" ".join(cfg.command_line) + "\n")
    print(f"compliance {rnd.name}: {'TEST PASS' if passed else 'TEST FAIL'} ({', '.join(tests)}) -> {out}")
    print(json.dumps({k: summary[k] for k in ("mode", "sut", "model", "scenario", "round", "valid", "run_dir")}))
    return 0 if passed else 1
