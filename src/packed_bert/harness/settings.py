"""LoadGen settings: the built-in mlperf.conf, a validated per-run user.conf, the effective values.

LoadGen (>= 4.1) carries mlperf.conf inside itself. Each run writes a ``user.conf`` from the
flags and the system file (only ``bert.<Scenario>.<key>`` lines), checks every key and value
before LoadGen sees it (LoadGen ignores an unknown key silently), then reads both into a
``TestSettings``. LoadGen only applies its built-in mlperf.conf on the first ``FromConfig`` call
of a process, so it is loaded explicitly (``FromConfig("", model, scenario, 0)``) every time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlperf_loadgen as lg

from packed_bert.errors import UserError
from packed_bert.terms import CONF_MODEL, DATASET_FEATURES, Execution, Mode, Scenario

# LoadGen keeps durations in nanoseconds and pre-generates every query of a run, so values far
# past a real run wrap or exhaust memory: durations up to a day, counts up to 100 million.
MAX_DURATION_MS = 86_400_000
MAX_COUNT = 100_000_000
MAX_SEED = 2**64 - 1


def _int_min(lo: int, hi: int = 2**63 - 1) -> Callable[[str], bool]:
    return lambda v: v.lstrip("-").isdigit() and lo <= int(v) <= hi


def _float_check(pred: Callable[[float], bool]) -> Callable[[str], bool]:
    def check(v: str) -> bool:
        try:
            x = float(v)
        except ValueError:
            return False
        return math.isfinite(x) and pred(x)

    return check


_BOOL = _int_min(0)
# key -> (check, what the value must be)
USER_CONF_KEYS: dict[str, tuple[Callable[[str], bool], str]] = {
    "target_qps": (_float_check(lambda x: 0 < x <= 1e9), "a finite number > 0 (at most 1e9)"),
    "target_latency": (_float_check(lambda x: 0 < x <= MAX_DURATION_MS), "milliseconds > 0 (at most a day)"),
    "target_latency_percentile": (_float_check(lambda x: 0 < x < 100), "a percentile in (0, 100)"),
    "min_duration": (_int_min(0, MAX_DURATION_MS), f"milliseconds from 0 to {MAX_DURATION_MS} (an integer)"),
    "max_duration": (_int_min(0, MAX_DURATION_MS), f"milliseconds from 0 to {MAX_DURATION_MS} (an integer, 0 = none)"),
    "min_query_count": (_int_min(1, MAX_COUNT), f"an integer from 1 to {MAX_COUNT}"),
    "max_query_count": (_int_min(0, MAX_COUNT), f"an integer from 0 to {MAX_COUNT} (0 = none)"),
    "performance_sample_count_override": (_int_min(0, MAX_COUNT), f"an integer from 0 to {MAX_COUNT}"),
    "qsl_rng_seed": (_int_min(0, MAX_SEED), "an integer from 0 to 2^64-1"),
    "sample_index_rng_seed": (_int_min(0, MAX_SEED), "an integer from 0 to 2^64-1"),
    "schedule_rng_seed": (_int_min(0, MAX_SEED), "an integer from 0 to 2^64-1"),
    "accuracy_log_rng_seed": (_int_min(0, MAX_SEED), "an integer from 0 to 2^64-1"),
    "accuracy_log_probability": (_float_check(lambda x: 0 <= x <= 1), "a probability in [0, 1]"),
    "accuracy_log_sampling_target": (_int_min(0, MAX_COUNT), f"an integer from 0 to {MAX_COUNT}"),
    "print_timestamps": (_BOOL, "0 or 1"),
    "performance_issue_unique": (_BOOL, "0 or 1"),
    "performance_issue_same": (_BOOL, "0 or 1"),
    "performance_issue_same_index": (_int_min(0), "an integer >= 0"),
    "max_async_queries": (_int_min(0), "an integer >= 0"),
    "coalesce_queries": (_BOOL, "0 or 1"),
    "test05": (_BOOL, "0 or 1"),
    "test05_qsl_rng_seed": (_int_min(0, MAX_SEED), "an integer from 0 to 2^64-1"),
    "test05_sample_index_rng_seed": (_int_min(0, MAX_SEED), "an integer from 0 to 2^64-1"),
    "test05_schedule_rng_seed": (_int_min(0, MAX_SEED), "an integer from 0 to 2^64-1"),
}

# Shorter runs for --execution test and demo (milliseconds); valid uses mlperf.conf's minimums.
EXECUTION_MIN_DURATION_MS = {Execution.TEST: 10_000, Execution.DEMO: 5_000}

_SCENARIOS = {
    Scenario.OFFLINE: lg.TestScenario.Offline,
    Scenario.SERVER: lg.TestScenario.Server,
    Scenario.SINGLE_STREAM: lg.TestScenario.SingleStream,
}
_MODES = {Mode.ACCURACY: lg.TestMode.AccuracyOnly, Mode.PERFORMANCE: lg.TestMode.PerformanceOnly}


def conf_key(scenario: str, key: str) -> str:
    return f"{CONF_MODEL}.{scenario}.{key}"


def parse_setting(text: str) -> tuple[str, str]:
    """``key=value`` from ``--setting`` (the key is a user.conf key such as ``min_duration``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise UserError(f"--setting {text!r}: expected KEY=VALUE, e.g. --setting min_duration=20000")
    return key.strip(), value.strip()


def validate_entries(entries: Mapping[str, str]) -> None:
    """Every ``bert.<Scenario>.<key>`` entry must name a known key with a possible value."""
    for full, value in entries.items():
        parts = full.split(".")
        if len(parts) != 3 or parts[0] not in (CONF_MODEL, "*") or parts[1] not in (*_SCENARIOS, "*"):
            raise UserError(f"user.conf entry {full!r}: expected bert.<Scenario>.<key>")
        key = parts[2]
        if key not in USER_CONF_KEYS:
            raise UserError(
                f"user.conf key {key!r} is not a LoadGen setting; known keys: " + ", ".join(sorted(USER_CONF_KEYS))
            )
        check, what = USER_CONF_KEYS[key]
        if not check(str(value)):
            raise UserError(f"user.conf {full} = {value!r}: must be {what}")
    for scenario in _SCENARIOS:
        lo = entries.get(conf_key(scenario, "min_duration"))
        hi = entries.get(conf_key(scenario, "max_duration"))
        if lo is not None and hi is not None and int(hi) and int(hi) < int(lo):
            raise UserError(f"user.conf {scenario}: max_duration {hi} is below min_duration {lo}")


def user_conf_entries(
    scenario: Scenario,
    execution: Execution,
    target_qps: float,
    sample_count: int | None,
    overrides: Mapping[str, str] | None = None,
    min_duration_ms: int | None = None,
) -> dict[str, str]:
    """The user.conf of one run, as ``{"bert.Offline.target_qps": "670", ...}``."""
    if target_qps <= 0:
        raise UserError(f"--target-qps must be > 0, got {target_qps}")
    entries: dict[str, str] = {}
    if scenario == "SingleStream":
        entries[conf_key(scenario, "target_latency")] = _fmt(1000.0 / target_qps)
    else:
        entries[conf_key(scenario, "target_qps")] = _fmt(target_qps)
    if execution in EXECUTION_MIN_DURATION_MS:
        duration = min_duration_ms if min_duration_ms is not None else EXECUTION_MIN_DURATION_MS[execution]
        entries[conf_key(scenario, "min_duration")] = str(int(duration))
        entries[conf_key(scenario, "min_query_count")] = "1"
    elif execution != Execution.VALID:
        raise UserError(f"--execution must be test, valid or demo, got {execution!r}")
    if sample_count is not None:
        entries[conf_key(scenario, "performance_sample_count_override")] = str(min(sample_count, DATASET_FEATURES))
    for key, value in (overrides or {}).items():
        entries[key if key.count(".") == 2 else conf_key(scenario, key)] = str(value)
    validate_entries(entries)
    return entries


def render_user_conf(entries: Mapping[str, str], header: str = "") -> str:
    lines = [f"# {line}" for line in header.splitlines()] if header else []
    lines += [f"{k} = {v}" for k, v in entries.items()]
    return "\n".join(lines) + "\n"


def check_test_settings(values: Mapping[str, object]) -> None:
    """Every key a LoadGen ``TestSettings`` field of a fitting type (``--loadgen-setting``)."""
    blank = lg.TestSettings()
    for key, value in values.items():
        current = getattr(blank, key, None) if not key.startswith("_") else None
        if current is None or callable(current):
            raise UserError(f"--loadgen-setting {key!r}: not a LoadGen TestSettings field")
        try:
            setattr(blank, key, value)
        except (TypeError, ValueError, OverflowError):
            raise UserError(f"--loadgen-setting {key}={value!r}: not a value LoadGen takes there") from None


@dataclass(frozen=True)
class LoadedSettings:
    test_settings: Any  # mlperf_loadgen.TestSettings
    effective: dict[str, Any]


def load_test_settings(user_conf: Path, scenario: Scenario, mode: Mode) -> LoadedSettings:
    """mlperf.conf (built in) + ``user_conf`` -> a ``TestSettings`` for ``scenario``/``mode``."""
    ts = lg.TestSettings()
    ts.scenario = _SCENARIOS[scenario]
    if ts.FromConfig("", CONF_MODEL, scenario, 0) != 0:
        raise UserError("LoadGen could not read its built-in mlperf.conf")
    if ts.FromConfig(str(user_conf), CONF_MODEL, scenario, 1) != 0:
        raise UserError(f"LoadGen could not read {user_conf}")
    ts.scenario = _SCENARIOS[scenario]
    ts.mode = _MODES[Mode.ACCURACY if mode == Mode.ACCURACY else Mode.PERFORMANCE]
    return LoadedSettings(ts, effective_settings(ts, scenario, mode))


def effective_settings(ts: Any, scenario: str, mode: str) -> dict[str, Any]:
    """The values LoadGen will run with (saved as settings.json, printed with --verbose)."""
    out: dict[str, Any] = {"scenario": scenario, "mode": mode}
    if scenario == "Offline":
        out["offline_expected_qps"] = ts.offline_expected_qps
    elif scenario == "Server":
        out["server_target_qps"] = ts.server_target_qps
        out["server_target_latency_ms"] = ts.server_target_latency_ns / 1e6
        out["server_target_latency_percentile"] = ts.server_target_latency_percentile
    else:
        out["single_stream_expected_latency_ms"] = ts.single_stream_expected_latency_ns / 1e6
        out["single_stream_target_latency_percentile"] = ts.single_stream_target_latency_percentile
    for name in (
        "min_duration_ms",
        "max_duration_ms",
        "min_query_count",
        "max_query_count",
        "performance_sample_count_override",
        "qsl_rng_seed",
        "sample_index_rng_seed",
        "schedule_rng_seed",
        "accuracy_log_rng_seed",
        "accuracy_log_probability",
        "accuracy_log_sampling_target",
        "test05",
    ):
        out[name] = getattr(ts, name)
    return out


def _fmt(x: float) -> str:
    return f"{x:.6g}" if x != int(x) else str(int(x))
