"""What one run is asked to do (``RunConfig``) and what it produced (``RunResult``).

The CLI builds a ``RunConfig`` from the flags; compliance and power build their own from the
one they are given (``dataclasses.replace``) and call the harness with it.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

Model = Literal["bert-99", "bert-99.9"]
Scenario = Literal["Offline", "Server", "SingleStream"]
Mode = Literal["accuracy", "performance", "compliance", "power"]
Execution = Literal["test", "valid", "demo"]
Batching = Literal["packed", "sorted", "padded"]

ACCURACY_TARGET_F1: dict[str, float] = {"bert-99": 89.965, "bert-99.9": 90.783}


@dataclass(frozen=True)
class RunConfig:
    sut: str
    model: Model = "bert-99"
    scenario: Scenario = "Offline"
    mode: Mode = "performance"
    execution: Execution = "test"
    results_dir: Path = Path("results")
    batch_size: int | None = None  # None: the system file's default
    target_qps: float | None = None  # None: the system file's default
    weights: str | None = None  # random | tiny | PATH; None: the system file's default
    batching: Batching | None = None  # None: the system file's default
    sdk: str | None = None  # recorded in the system description
    dataset: Path | None = None
    vocab: Path | None = None
    find_peak: bool = False
    sample_count: int | None = None  # limit the QSL (quick tests); None: all 10,833
    questions: str | None = None  # a question split (squad.splits.SPLITS); None: all of SQuAD dev
    verbose: bool = False
    # compliance
    compliance_tests: tuple[str, ...] = ()
    round: str | None = None  # None: the newest round supported
    # power
    power_server: str | None = None  # HOST:PORT
    ntp_server: str | None = None
    sleep_before_s: float = 0.0
    # multi-host: workers (``packed-bert serve``) whose devices this run uses too
    hosts: tuple[str, ...] | None = None  # HOST:PORT each; None: the system file's (if any)
    local_devices: bool = True  # False: only the hosts' devices (--no-local-devices)
    command_line: tuple[str, ...] = ()  # argv as typed, recorded in the run directory
    extra: dict[str, Any] = field(default_factory=dict)


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
    exact_match: float | None = None  # accuracy
    f1: float | None = None
    accuracy_passed: bool | None = None
    f1_by_split: dict[str, float] = field(default_factory=dict)  # accuracy: F1 of each article split
    simulated: bool = False
    batching: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)  # the JSON summary line
