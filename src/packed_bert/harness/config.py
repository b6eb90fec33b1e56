"""What one run is asked to do (``RunConfig``) and what it produced (``RunResult``).

``RunConfig`` is the whole contract between the command line and the library: every field has
one flag in ``harness/flags.py``, which also turns a config back into the command line that
makes it again (recorded in each run directory and handed to the power client). Fields left
``None`` take the system file's value. Workflows build their runs from the config they are
given with ``dataclasses.replace``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packed_bert.terms import (
    Batching,
    Execution,
    Mode,
    Model,
    Precision,
    Questions,
    Scenario,
    parse,
)

LoadGenValue = int | float | bool


@dataclass(frozen=True)
class RunConfig:
    sut: str
    model: Model = Model.BERT_99
    scenario: Scenario = Scenario.OFFLINE
    mode: Mode = Mode.PERFORMANCE
    execution: Execution = Execution.TEST
    results_dir: Path = Path("results")
    batch_size: int | None = None
    target_qps: float | None = None
    weights: str | None = None  # random | tiny | PATH
    batching: Batching | None = None
    precision: Precision | None = None
    sdk: str | None = None  # recorded in the system description
    dataset: Path | None = None
    vocab: Path | None = None
    find_peak: bool = False
    sample_count: int | None = None  # only the first N samples (quick runs); None: all
    questions: Questions | None = None  # an article split of SQuAD dev; None: every question
    verbose: bool = False
    # user.conf entries for this run's scenario (``min_duration`` -> "20000"), after the
    # system file's and the execution's
    settings: Mapping[str, str] = field(default_factory=dict)
    # scheduling, normally the system file's
    inflight_per_device: int | None = None
    server_max_wait_ms: float | None = None
    server_dispatch_when_idle: bool | None = None
    server_min_batch: int | None = None
    # compliance
    compliance_tests: tuple[str, ...] = ()
    round: str | None = None  # MLPerf round (its seeds, audit tests); None: rounds.DEFAULT_ROUND
    accuracy_dir: Path | None = None  # the reference runs to verify against
    performance_dir: Path | None = None
    audit_test: str | None = None  # set on the audit run of a compliance test (TEST01, ...)
    audit_config: Path | None = None  # the audit.config LoadGen reads on that run
    # TestSettings fields set after mlperf.conf and user.conf are read (a round's seeds, TEST05)
    loadgen_settings: Mapping[str, LoadGenValue] = field(default_factory=dict)
    # power
    power_server: str | None = None  # HOST:PORT
    ntp_server: str | None = None
    sleep_before_s: float = 0.0
    # devices on a Ray cluster: None: this host's devices, in this process; "ray": an embedded
    # one-node cluster; "auto", "HOST:PORT", "ray://HOST:PORT": join that cluster
    cluster: str | None = None
    cluster_devices: int | None = None  # how many of the cluster's devices; None: all of the kind
    command_line: tuple[str, ...] = ()  # argv as typed, recorded in the run directory

    def __post_init__(self) -> None:
        """Words given as text by library callers (``scenario="offline"``) become the enums."""
        for name, kind in (
            ("model", Model),
            ("scenario", Scenario),
            ("mode", Mode),
            ("execution", Execution),
            ("batching", Batching),
            ("precision", Precision),
            ("questions", Questions),
        ):
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                object.__setattr__(self, name, parse(kind, value, f"--{name}"))
        object.__setattr__(self, "results_dir", Path(self.results_dir))
        if self.questions == Questions.ALL:  # one spelling of "every question"
            object.__setattr__(self, "questions", None)


@dataclass
class RunResult:
    run_dir: Path
    config: RunConfig
    scenario: Scenario
    mode: Mode
    samples_per_second: float | None = None  # Offline/Server: LoadGen's result
    latency_p90_ms: float | None = None  # SingleStream
    valid: bool | None = None  # performance: LoadGen's VALID/INVALID
    invalid_reasons: list[str] = field(default_factory=list)
    loadgen_recommendations: list[str] = field(default_factory=list)
    exact_match: float | None = None  # accuracy
    f1: float | None = None
    accuracy_passed: bool | None = None
    f1_by_split: dict[str, float] = field(default_factory=dict)  # accuracy: F1 of each article split
    simulated: bool = False
    batching: str | None = None
    devices_lost: list[dict[str, Any]] = field(default_factory=list)  # devices the run lost
    devices_lost_line: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)  # the JSON summary line
