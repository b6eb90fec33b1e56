"""``packed-bert run --mode compliance``: audit runs, then their verification, laid out as MLPerf's.

Output: a ``...-compliance`` run directory holding ``TEST01/{verify_accuracy.txt,
verify_performance.txt, accuracy/, performance/run_1/}`` and ``TEST05/{verify_performance.txt,
performance/run_1/}`` (the shape of MLPerf's compliance folders), plus ``summary.json``. Each
audit run is a harness run directory of its own, with its ``audit.config``; each run starts in
a fresh process (``harness.process``).
"""

import dataclasses
import json
import shlex
import shutil
from pathlib import Path
from typing import Any

from packed_bert.compliance import rules
from packed_bert.compliance.verify import (
    Scorer,
    compare_accuracy_logs,
    compare_performance,
    default_scorer,
    score_subsets,
)
from packed_bert.errors import UserError
from packed_bert.harness.config import RunConfig
from packed_bert.harness.flags import replace, to_argv
from packed_bert.harness.plan import plan_run
from packed_bert.harness.process import Launcher, run_in_fresh_process
from packed_bert.results.loadgen_logs import ACCURACY_LOG, DETAIL, SUMMARY, read_detail
from packed_bert.results.run_dirs import RunDir, find_run, is_audit_run, read_summary_json, run_name
from packed_bert.rounds import Round, get_round
from packed_bert.systems import load_system
from packed_bert.terms import Mode

AUDIT_CONFIGS = ".audit-configs"  # under the results directory: <round>/<test>/audit.config


def _recorded_plan(run_dir: Path) -> dict[str, Any]:
    """The harness plan a run recorded (``settings.json``'s ``harness``); empty if none."""
    try:
        plan = json.loads((run_dir / "settings.json").read_text()).get("harness", {})
    except (OSError, json.JSONDecodeError, AttributeError):
        return {}
    return plan if isinstance(plan, dict) else {}


def _plan_mismatch(run_dir: Path, cfg: RunConfig, mode: Mode) -> str | None:
    """Why ``run_dir`` is not the ``mode`` reference run for ``cfg``'s compliance tests, or None.

    The same system, model, scenario, precision, weights and round, a run of that mode (not an
    audit run), and the same samples: TEST01 compares responses by ``qsl_idx``, so the accuracy
    run must cover every sample the audit run can log (all of them, or the same ``--count``)."""
    summary = read_summary_json(run_dir)
    plan = _recorded_plan(run_dir)
    if not summary or not plan:
        return "it is not a finished packed-bert run (no summary.json or settings.json)"
    if is_audit_run(run_dir, summary):
        return "it is an audit run"
    want = plan_run(dataclasses.replace(cfg, mode=mode, compliance_tests=()))
    checks = (
        ("mode", summary.get("mode"), str(mode)),
        ("system", summary.get("sut"), want.system.name),
        ("model", summary.get("model"), str(want.cfg.model)),
        ("scenario", summary.get("scenario"), str(want.scenario)),
        ("precision", plan.get("precision"), want.precision),
        ("weights", plan.get("weights"), want.weights),
        ("round", plan.get("round", want.round.name), want.round.name),
    )
    for what, got, expected in checks:
        if str(got).lower() != str(expected).lower():
            return f"it is a run of {what} {got}, this compliance run needs {expected}"
    if plan.get("sample_count") != cfg.sample_count:
        return (
            f"it covered --count {plan.get('sample_count') or 'all'} samples, this run --count "
            f"{cfg.sample_count or 'all'} (TEST01 compares every sample it logs)"
        )
    if plan.get("questions", "all") != str(cfg.questions or "all"):
        return f"it answered --questions {plan.get('questions', 'all')}, this run --questions {cfg.questions or 'all'}"
    return None


def _given_reference(cfg: RunConfig, mode: Mode) -> Path | None:
    """``--accuracy-dir`` / ``--performance-dir``, checked against this run (one-line error)."""
    given = cfg.accuracy_dir if mode == Mode.ACCURACY else cfg.performance_dir
    if not given:
        return None
    path = Path(given)
    need = ACCURACY_LOG if mode == Mode.ACCURACY else SUMMARY
    if not (path / need).is_file():
        raise UserError(f"--{mode}-dir {path}: no {need} there; give a {mode} run's directory")
    why = _plan_mismatch(path, cfg, mode)
    if why:
        raise UserError(f"--{mode}-dir {path}: {why}")
    return path


def _reference_run(cfg: RunConfig, mode: Mode, launch: Launcher) -> Path:
    given = _given_reference(cfg, mode)
    if given is not None:
        return given
    sut = load_system(cfg.sut).name
    found = find_run(cfg.results_dir, sut, cfg.model, cfg.scenario, mode)
    why = _plan_mismatch(found, cfg, mode) if found is not None else None
    if found is not None and why is None:
        print(f"compliance: using the {mode} run {found}")
        return found
    if found is not None:
        print(f"compliance: not using the {mode} run {found} ({why}); running one")
    else:
        print(f"compliance: no {mode} run of {sut}/{cfg.model}/{cfg.scenario} in {cfg.results_dir}; running one")
    return launch(replace(cfg, mode=mode, compliance_tests=(), accuracy_dir=None, performance_dir=None))


def _check_audit_applied(test: str, rnd: Round, audit_dir: Path) -> str | None:
    detail = read_detail(audit_dir / DETAIL)
    for key, want in rules.expected_effective_settings(test, rnd).items():
        got = (detail.get(key) or [None])[-1]
        if got != want:
            return f"the audit run did not take {test}'s settings ({key} = {got}, expected {want})"
    return None


def _copy(src: Path, dst_dir: Path) -> None:
    if src.is_file():
        dst_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst_dir / src.name)


def run_test(
    cfg: RunConfig,
    test: str,
    rnd: Round,
    out: Path,
    acc_dir: Path,
    perf_dir: Path,
    launch: Launcher,
    scorer: Scorer | None,
) -> dict[str, Any]:
    # kept where the audit run's command.txt can find it again
    staging = cfg.results_dir / AUDIT_CONFIGS / rnd.name / test
    staging.mkdir(parents=True, exist_ok=True)
    audit_config = staging / "audit.config"
    audit_config.write_text(rules.audit_config_text(test, rnd))
    # the performance run's target QPS: an audit run compares with it, so it runs the same load
    target = cfg.target_qps if cfg.target_qps is not None else _recorded_plan(perf_dir).get("target_qps")
    audit_cfg = replace(
        cfg,
        mode=Mode.PERFORMANCE,
        compliance_tests=(),
        accuracy_dir=None,
        performance_dir=None,
        audit_test=test,
        audit_config=audit_config.resolve(),
        round=rnd.name,
        target_qps=float(target) if isinstance(target, int | float) and target > 0 else None,
        loadgen_settings={**cfg.loadgen_settings, **rules.test_settings_overrides(test, rnd)},
    )
    print(f"compliance {test}: audit run ({rnd.name} audit.config)", flush=True)
    audit_dir = launch(audit_cfg)
    if not (audit_dir / "audit.config").exists():
        shutil.copy2(audit_config, audit_dir / "audit.config")

    test_dir = out / test
    test_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"audit_run": str(audit_dir)}
    problem = _check_audit_applied(test, rnd, audit_dir)
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
    scores = ", ".join(
        f"{name} {'none' if v is None else f'{v:,.1f}'}"
        for name, v in (("performance run", perf.reference.score), ("audit run", perf.audit.score))
    )
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
            print(
                f"TEST01 accuracy: TEST PASS (all {acc.num_perf_log_qsl_idx_match} logged responses are bit-identical "
                "to the accuracy run's: identical answers, F1 delta 0.000%, no tolerance used)"
            )
        elif acc.num_perf_log_qsl_idx_match == 0:
            entry["passed"] = False
            print("TEST01 accuracy: TEST FAIL (the audit run logged no response the accuracy run has)")
        else:
            fb = score_subsets(
                acc_dir / ACCURACY_LOG,
                audit_dir / ACCURACY_LOG,
                test_dir / "accuracy",
                cfg.model,
                scorer or default_scorer(cfg.dataset, cfg.vocab, cfg.questions),
            )
            entry.update(
                passed=fb.passed,
                baseline_f1=fb.baseline_f1,
                compliance_f1=fb.compliance_f1,
                delta_percent=fb.delta_percent,
            )
            print(
                f"TEST01 accuracy: {'TEST PASS' if fb.passed else 'TEST FAIL'} ({acc.num_perf_log_data_mismatch} of "
                f"{acc.num_perf_log_qsl_idx_match} logged responses differ bit-wise; F1 on those samples {fb.baseline_f1:.3f} "
                f"(accuracy run) vs {fb.compliance_f1:.3f} (audit run): {fb.delta_percent:.3f}% <= {fb.allowed_percent}% "
                f"{'holds' if fb.passed else 'fails'})"
            )
        result["accuracy"] = entry
    result["passed"] = bool(perf.passed and result.get("accuracy", {}).get("passed", True))
    return result


def run_compliance(cfg: RunConfig, launch: Launcher | None = None, scorer: Scorer | None = None) -> int:
    """Run and verify the audit tests ``cfg.compliance_tests`` (default: all of the round's)."""
    rnd = get_round(cfg.round)
    cfg = dataclasses.replace(cfg, round=rnd.name)  # recorded by every run it makes
    tests = rules.parse_tests(cfg.compliance_tests) if cfg.compliance_tests else rnd.tests
    rules.check_tests_in_round(tests, rnd)
    for mode in (Mode.ACCURACY, Mode.PERFORMANCE):  # the user's reference runs, before any work
        _given_reference(cfg, mode)
    run = launch or run_in_fresh_process
    acc_dir = _reference_run(cfg, Mode.ACCURACY, run) if "TEST01" in tests else None
    perf_dir = _reference_run(cfg, Mode.PERFORMANCE, run)
    sut = load_system(cfg.sut).name
    rd = RunDir(cfg.results_dir, run_name(sut, cfg.model, cfg.scenario, Mode.COMPLIANCE))
    try:
        results = {
            test: run_test(cfg, test, rnd, rd.path, acc_dir or perf_dir, perf_dir, run, scorer) for test in tests
        }
    except BaseException as exc:
        rd.abandon(f"compliance stopped: {exc or type(exc).__name__}")
        raise
    passed = all(r["passed"] for r in results.values())
    summary = {
        "mode": "compliance",
        "sut": sut,
        "model": cfg.model,
        "scenario": cfg.scenario,
        "round": rnd.name,
        "execution": cfg.execution,
        "weights": cfg.weights,
        "sample_count": cfg.sample_count,
        "questions": str(cfg.questions or "all"),
        "tests": results,
        "accuracy_run": str(acc_dir) if acc_dir else None,
        "performance_run": str(perf_dir),
        "valid": passed,
    }
    rd.write_text("command.txt", shlex.join(cfg.command_line or to_argv(cfg)) + "\n")
    out = rd.finish_with_summary(summary)
    print(f"compliance {rnd.name}: {'TEST PASS' if passed else 'TEST FAIL'} ({', '.join(tests)}) -> {out}")
    print(json.dumps({k: summary[k] for k in ("mode", "sut", "model", "scenario", "round", "valid", "run_dir")}))
    return 0 if passed else 1
