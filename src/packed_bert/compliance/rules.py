"""What each audit test's audit.config holds, and what its audit run must show.

Facts (mlcommons/inference, compliance/nvidia/ and mlperf.conf; the rounds in ``rounds``):
- TEST01 for BERT: performance mode with sampled accuracy logging; the seed and sampling target
  never change between rounds.
- TEST05 ran up to v4.1. Its audit.config sets ``*.*.test05 = 1`` and LoadGen takes the round's
  ``test05_*`` seeds from mlperf.conf (``Round.test05_seeds``). It was dropped in v5.0.
"""

from packed_bert.errors import UserError
from packed_bert.rounds import KNOWN_TESTS, LAST_ROUND_WITH_TEST05, Round

TEST01_ACCURACY_LOG_RNG_SEED = 720381539243781796
TEST01_ACCURACY_LOG_SAMPLING_TARGET = 4096


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
    return head + "*.*.test05 = 1\n" + "".join(f"*.*.{k} = {v}\n" for k, v in _test05_seeds(rnd).items())


def _test05_seeds(rnd: Round) -> dict[str, int]:
    if rnd.test05_seeds is None:
        raise UserError(f"TEST05 is not part of MLPerf Inference {rnd.name}; use --round {LAST_ROUND_WITH_TEST05}")
    return rnd.test05_seeds.settings("test05_")


def test_settings_overrides(test: str, rnd: Round) -> dict[str, int | bool]:
    """TestSettings fields the harness must set itself for ``test``.

    LoadGen 5.0+ ignores ``test05`` and seed keys in audit.config (they are read from its built-in
    mlperf.conf only), so TEST05 is switched on through TestSettings, with the round's TEST05
    seeds; TEST01 needs nothing here.
    """
    if test == "TEST05":
        return {"test05": True, **_test05_seeds(rnd)}
    return {}


def expected_effective_settings(test: str, rnd: Round) -> dict[str, int]:
    """What mlperf_log_detail.txt must show (``effective_*``) when the audit run took the test."""
    if test == "TEST01":
        return {
            "effective_accuracy_log_rng_seed": TEST01_ACCURACY_LOG_RNG_SEED,
            "effective_accuracy_log_sampling_target": TEST01_ACCURACY_LOG_SAMPLING_TARGET,
        }
    return {f"effective_{k.removeprefix('test05_')}": v for k, v in _test05_seeds(rnd).items()}
