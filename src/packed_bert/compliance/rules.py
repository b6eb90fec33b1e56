"""Which audit tests each MLPerf Inference round has, and what each test's audit.config holds.

Facts (mlcommons/inference, compliance/nvidia/ and loadgen/mlperf.conf):
- TEST01 for BERT: performance mode with sampled accuracy logging; the seed and sampling target
  never change between rounds.
- TEST05 ran up to v4.1. From v3.0 its audit.config sets ``*.*.test05 = 1`` and LoadGen takes the
  ``test05_*`` seeds (the values below, as in mlperf.conf of those rounds). It was dropped in v5.0.
- v6.0 consolidates ``compliance/`` and ``measurements/`` under ``results/`` (submission layout).
"""

from dataclasses import dataclass
from typing import Literal

from packed_bert.errors import UserError

Layout = Literal["legacy", "consolidated"]

TEST01_ACCURACY_LOG_RNG_SEED = 720381539243781796
TEST01_ACCURACY_LOG_SAMPLING_TARGET = 4096
TEST05_QSL_RNG_SEED = 7975553102935885558
TEST05_SAMPLE_INDEX_RNG_SEED = 11403566307062068064
TEST05_SCHEDULE_RNG_SEED = 15816800565822761601

KNOWN_TESTS = ("TEST01", "TEST05")


@dataclass(frozen=True)
class Round:
    name: str
    tests: tuple[str, ...]  # the audit tests BERT must pass in this round
    layout: Layout  # submission tree: legacy (v4.x, v5.x) or consolidated (v6.0 on)


ROUNDS: dict[str, Round] = {
    "v4.0": Round("v4.0", ("TEST01", "TEST05"), "legacy"),
    "v4.1": Round("v4.1", ("TEST01", "TEST05"), "legacy"),
    "v5.0": Round("v5.0", ("TEST01",), "legacy"),
    "v5.1": Round("v5.1", ("TEST01",), "legacy"),
    "v6.0": Round("v6.0", ("TEST01",), "consolidated"),
}
NEWEST_ROUND = "v6.0"
LAST_ROUND_WITH_TEST05 = "v4.1"


def get_round(name: str | None) -> Round:
    """The round's rules; ``None`` means the newest round supported."""
    key = NEWEST_ROUND if name is None else name.strip().lower()
    if key and not key.startswith("v"):
        key = "v" + key
    if key not in ROUNDS:
        raise UserError(f"unknown MLPerf round {name!r}; supported rounds: {', '.join(ROUNDS)}")
    return ROUNDS[key]


def parse_tests(spec: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"TEST05,TEST01"`` (or a list) -> ``("TEST01", "TEST05")``; unknown names are an error."""
    items = spec.split(",") if isinstance(spec, str) else [p for s in spec for p in s.split(",")]
    tests: list[str] = []
    for raw in items:
        name = raw.strip().upper().lstrip(",=")
        if not name:
            continue
        if name not in KNOWN_TESTS:
            raise UserError(f"unknown compliance test {raw.strip()!r}; BERT has {', '.join(KNOWN_TESTS)}")
        if name not in tests:
            tests.append(name)
    if not tests:
        raise UserError("no compliance test named; pass --compliance TEST01[,TEST05]")
    return tuple(sorted(tests))


def check_tests_in_round(tests: tuple[str, ...], rnd: Round) -> None:
    for test in tests:
        if test not in rnd.tests:
            raise UserError(
                f"{test} is not part of MLPerf Inference {rnd.name} (TEST05 ended with "
                f"{LAST_ROUND_WITH_TEST05}); use --round {LAST_ROUND_WITH_TEST05} or drop {test}"
            )


def audit_config_text(test: str, rnd: Round) -> str:
    """The audit.config LoadGen reads for ``test`` in round ``rnd``."""
    check_tests_in_round((test,), rnd)
    head = (
        f"# {test} audit.config for BERT, MLPerf Inference {rnd.name} (written by packed-bert)\n"
        "# key = value; model.scenario.key, '*' matches any model or scenario\n"
    )
    if test == "TEST01":
        return head + (
            "*.*.mode = 2\n"
            f"*.*.accuracy_log_rng_seed = {TEST01_ACCURACY_LOG_RNG_SEED}\n"
            f"*.*.accuracy_log_sampling_target = {TEST01_ACCURACY_LOG_SAMPLING_TARGET}\n"
        )
    return head + (
        "*.*.test05 = 1\n"
        f"*.*.test05_qsl_rng_seed = {TEST05_QSL_RNG_SEED}\n"
        f"*.*.test05_sample_index_rng_seed = {TEST05_SAMPLE_INDEX_RNG_SEED}\n"
        f"*.*.test05_schedule_rng_seed = {TEST05_SCHEDULE_RNG_SEED}\n"
    )


def test_settings_overrides(test: str) -> dict[str, int | bool]:
    """TestSettings fields the harness must set itself for ``test``.

    LoadGen 5.0+ ignores ``test05`` and seed keys in audit.config (they are read from its built-in
    mlperf.conf only), so TEST05 is switched on through TestSettings; TEST01 needs nothing here.
    """
    if test == "TEST05":
        return {
            "test05": True,
            "test05_qsl_rng_seed": TEST05_QSL_RNG_SEED,
            "test05_sample_index_rng_seed": TEST05_SAMPLE_INDEX_RNG_SEED,
            "test05_schedule_rng_seed": TEST05_SCHEDULE_RNG_SEED,
        }
    return {}


def expected_effective_settings(test: str) -> dict[str, int]:
    """What mlperf_log_detail.txt must show (``effective_*``) when the audit run took the test."""
    if test == "TEST01":
        return {
            "effective_accuracy_log_rng_seed": TEST01_ACCURACY_LOG_RNG_SEED,
            "effective_accuracy_log_sampling_target": TEST01_ACCURACY_LOG_SAMPLING_TARGET,
        }
    return {
        "effective_qsl_rng_seed": TEST05_QSL_RNG_SEED,
        "effective_sample_index_rng_seed": TEST05_SAMPLE_INDEX_RNG_SEED,
        "effective_schedule_rng_seed": TEST05_SCHEDULE_RNG_SEED,
    }
