"""Where each part goes, per round layout.

legacy (v4.x, v5.x): ``results/<sut>/<model>/<Scenario>/{accuracy,performance/run_1}``,
``measurements/<sut>/<model>/<Scenario>/{<sut>_<impl>_<Scenario>.json,user.conf,mlperf.conf,README.md}``,
``compliance/<sut>/<model>/<Scenario>/TEST0X/``, the implementation under ``code/<model>/<impl>/``.
consolidated (v6.0 on): all of it under ``results/<sut>/<model>/<Scenario>/`` with
``measurements.json`` beside ``user.conf``; the implementation under ``src/``.
"""

from dataclasses import dataclass
from pathlib import Path

from packed_bert.rounds import Round
from packed_bert.terms import Scenario

IMPLEMENTATION = "packed-bert"
SCENARIOS = {s.value.lower(): s.value for s in Scenario} | {"multistream": "MultiStream"}


def scenario_name(s: str) -> str:
    return SCENARIOS.get(s.lower(), s)


@dataclass(frozen=True)
class Places:
    results: Path  # holds accuracy/ and performance/
    measurements: Path  # holds user.conf, README.md and the implementation JSON
    measurements_json: str
    compliance: Path  # holds TEST01/, TEST05/


def places(root: Path, rnd: Round, sut: str, model: str, scenario: str) -> Places:
    scen = scenario_name(scenario)
    results = root / "results" / sut / model / scen
    if rnd.layout == "consolidated":
        return Places(results, results, "measurements.json", results)
    return Places(
        results,
        root / "measurements" / sut / model / scen,
        f"{sut}_{IMPLEMENTATION}_{scen}.json",
        root / "compliance" / sut / model / scen,
    )


def code_dir(root: Path, rnd: Round, model: str) -> Path:
    """Where the implementation's README goes: ``code/<model>/packed-bert`` (to v5.1, where the
    checker looks for the implementation named in the measurements file), ``src/...`` from v6.0."""
    return root / rnd.code_dir / model / IMPLEMENTATION
