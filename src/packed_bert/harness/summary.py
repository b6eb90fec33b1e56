"""What a run tells its user: the result lines it prints and its JSON summary (``summary.json``
and the last line on stdout)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from packed_bert.harness.config import RunResult
from packed_bert.harness.plan import RunPlan
from packed_bert.results.loadgen_logs import LoadGenSummary
from packed_bert.terms import Mode, Model, Scenario

Say = Callable[[str], None]


MIN_DURATION_NOT_MET = "Min duration satisfied: NO"
TARGET_MARGIN = 1.25  # how far past the rate the run reached a suggested target goes


def _round_up(x: float) -> float:
    """``x`` rounded up to two significant digits."""
    step = 10.0 ** (math.floor(math.log10(x)) - 1)
    return math.ceil(x / step - 1e-9) * step


def advised_target(scenario: Scenario, log: LoadGenSummary) -> tuple[float, str] | None:
    """The --target-qps that would have kept an INVALID Offline or SingleStream run past
    min_duration, and what it comes from: Offline issues target x min_duration x 1.1 samples
    and runs them all; SingleStream schedules twice min_duration at the expected latency (1 /
    target) and stops once min_duration has passed. None where that is not why it was INVALID."""
    if log.valid is not False or MIN_DURATION_NOT_MET not in log.invalid_reasons:
        return None
    mean_s = float(log.fields.get("Mean latency (ns)") or 0) / 1e9
    if scenario == Scenario.OFFLINE and log.samples_per_second:
        qps, why = log.samples_per_second, f"it ran {log.samples_per_second:,.4g} samples/s"
    elif scenario == Scenario.SINGLE_STREAM and mean_s > 0:
        qps, why = 1.0 / mean_s, f"a sample took {mean_s * 1e3:.3g} ms on average"
    else:
        return None
    return _round_up(qps * TARGET_MARGIN), why


def advice_line(advised: tuple[float, str] | None) -> str | None:
    """``advised_target``'s result as the line a run prints under ``fix:``."""
    if advised is None:
        return None
    return f"rerun with --target-qps {advised[0]:g} ({advised[1]}; the run ended short of min_duration)"


def run_summary(plan: RunPlan, result: RunResult, stats: dict[str, Any], log: LoadGenSummary) -> dict[str, Any]:
    advised = advised_target(plan.scenario, log)
    out: dict[str, Any] = {
        "sut": plan.system.name,
        "model": plan.cfg.model,
        "scenario": plan.scenario,
        "mode": plan.cfg.mode,
        "execution": plan.cfg.execution,
        "round": plan.round.name,
        "simulated": plan.system.simulated,
        "batching": plan.batching,
        "batch_size": plan.batch_size,
        "target_qps": plan.target_qps,
        "backend": plan.backend,
        "precision": plan.precision,
        "weights": plan.weights,
        "samples_per_second": result.samples_per_second,
        "latency_p90_ms": result.latency_p90_ms,
        "latency_p99_ms": log.latency_p99_ms,
        "performance_constraints_satisfied": log.performance_constraints,
        "valid": result.valid,
        "devices_lost": result.devices_lost,
        "invalid_reasons": result.invalid_reasons,
        "loadgen_recommendations": result.loadgen_recommendations,
        "target_advice": advice_line(advised),
        "advised_target_qps": advised[0] if advised else None,
        "token_efficiency": stats.get("token_efficiency"),
        "gain_over_padding": stats.get("gain_over_padding"),
        "samples": stats.get("samples"),
        "sample_tokens": stats.get("sample_tokens"),
    }
    if plan.cfg.audit_test:
        out["compliance_test"] = plan.cfg.audit_test
    if plan.mode == Mode.ACCURACY and result.f1 is not None:
        out.update(
            exact_match=result.exact_match,
            f1=result.f1,
            accuracy_target_f1=Model(plan.cfg.model).target_f1,
            accuracy="PASS" if result.accuracy_passed else "FAIL",
            f1_by_split=result.f1_by_split,
        )
    return out


def print_result(plan: RunPlan, result: RunResult, stats: dict[str, Any], say: Say) -> None:
    sim = " (SIMULATED)" if plan.system.simulated else ""
    eff = stats.get("token_efficiency")
    pack = f"; token efficiency {eff:.1%}" if eff else ""
    if plan.mode == Mode.ACCURACY:
        if result.f1 is not None:
            say(
                f"accuracy{sim}: exact_match {result.exact_match:.3f}, f1 {result.f1:.3f} -> "
                f"{'PASS' if result.accuracy_passed else 'FAIL'} (target F1 {Model(plan.cfg.model).target_f1})"
            )
        else:
            say(f"accuracy{sim}: not scored (the run's features carry no SQuAD text)")
    else:
        validity = {True: "VALID", False: "INVALID", None: "no result"}[result.valid]
        if result.devices_lost and result.valid:
            validity = f"VALID, with {len(result.devices_lost)} device(s) lost during the run"
        if result.samples_per_second is not None:
            say(f"performance{sim}: {result.samples_per_second:,.1f} samples/s, {validity}{pack}")
        elif result.latency_p90_ms is not None:
            say(f"performance{sim}: 90th percentile latency {result.latency_p90_ms:.2f} ms, {validity}{pack}")
        for reason in result.invalid_reasons:
            say(f"  INVALID because: {reason}")
        for advice in result.loadgen_recommendations:
            say(f"  LoadGen suggests: {advice}")
        if result.summary.get("target_advice"):
            say(f"  fix: {result.summary['target_advice']}")
    if result.devices_lost_line:
        say(f"  DEVICES LOST: {result.devices_lost_line}")
    say(f"results: {result.run_dir}")


def expected_samples(plan: RunPlan, total: int, effective: dict[str, Any]) -> int:
    """What the progress line counts to: every sample (accuracy), what LoadGen will issue (Offline,
    Server), or a SingleStream run's least count (it ends by time: ``ends_by_time``)."""
    if plan.mode == Mode.ACCURACY:
        return total
    queries = int(effective.get("min_query_count", 1))
    if ends_by_time(plan, effective):
        return queries
    return max(int(plan.target_qps * effective.get("min_duration_ms", 0) / 1e3), queries)


def ends_by_time(plan: RunPlan, effective: dict[str, Any]) -> float:
    """Seconds after which a run ends once it has also done min_query_count, or 0 where LoadGen
    sets the count in advance. LoadGen's SingleStream issues one query after another until both
    are met, whatever the expected latency (a valid MiniLM run: 222,332 queries in 600.6 s,
    against 448,731 at the expected latency)."""
    if plan.mode == Mode.ACCURACY or plan.scenario != Scenario.SINGLE_STREAM:
        return 0.0
    return float(effective.get("min_duration_ms", 0)) / 1e3


def short_settings(effective: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "scenario",
        "mode",
        "offline_expected_qps",
        "server_target_qps",
        "server_target_latency_ms",
        "single_stream_expected_latency_ms",
        "min_duration_ms",
        "min_query_count",
        "performance_sample_count_override",
    )
    return {k: v for k, v in effective.items() if k in keep}
