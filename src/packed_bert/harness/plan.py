"""What a run will do: the flags resolved against the system file, checked before any work."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packed_bert.errors import UserError
from packed_bert.harness import settings as st
from packed_bert.harness.config import RunConfig
from packed_bert.model.spec import check_spec
from packed_bert.rounds import Round, get_round
from packed_bert.systems import SystemSpec, load_system
from packed_bert.terms import Batching, Mode, Model, Precision, Scenario


@dataclass(frozen=True)
class RunPlan:
    cfg: RunConfig
    system: SystemSpec
    scenario: Scenario
    mode: Mode  # accuracy | performance (what LoadGen runs)
    batching: Batching
    batch_size: int
    target_qps: float
    weights: str
    precision: str
    backend: str
    inflight: int
    server_max_wait_s: float
    dispatch_when_idle: bool
    server_min_batch: int
    user_conf: dict[str, str]
    round: Round  # the MLPerf round: its seeds are set on LoadGen's TestSettings
    target_qps_from: str = "the system file"  # or --target-qps, or a probe (harness.probe)

    def cpu_note(self) -> str:
        """The system's CPU class (``SystemSpec.cpu_note``); where oneDNN's cap made it, whether
        the run's runtime ignores the cap (``cpu_class.ignores_cap``: its kernels are this CPU's);
        and a warning where the run's bf16 has no hardware in that class and its runtime leaves it to
        oneDNN, which emulates it 50-300x slower than fp32 (``cpu_class.emulates_bf16``;
        docs/performance.md). "" for a system without recipes per CPU class."""
        from packed_bert.backends.cpu_class import BF16_CLASSES, emulates_bf16, ignores_cap

        note = self.system.cpu_note()
        if note and self.system.cpu_isa_cap and ignores_cap(self.backend, self.precision):
            note += f" ({self.backend} {self.precision} ignores it: this CPU's own kernels ran)"
        bf16 = self.precision in (Precision.BF16, Precision.INT8_BF16)
        options = self.system.options_for(self.backend, self.scenario, self.precision)
        if note and bf16 and self.system.cpu_class not in BF16_CLASSES and emulates_bf16(self.backend, options):
            note += "; bf16 EMULATED: no avx512_bf16 or amx_bf16 here, far slower than fp32 (try --precision fp32)"
        return note

    def round_note(self) -> str:
        """Where the round takes this model in no category in this scenario, why the run is no
        part of that round's submission (``Round.scenario_note``); else ""."""
        return self.round.scenario_note(self.cfg.model, self.scenario)

    def describe(self) -> dict[str, Any]:
        return {
            "sut": self.system.name,
            "model": self.cfg.model,
            "scenario": self.scenario,
            "mode": self.mode,
            "execution": self.cfg.execution,
            "batching": self.batching,
            "batch_size": self.batch_size,
            "target_qps": self.target_qps,
            "target_qps_from": self.target_qps_from,
            "weights": self.weights,
            "precision": self.precision,
            "backend": self.backend,
            "simulated": self.system.simulated,
            "inflight_per_device": self.inflight,
            "server_max_wait_ms": self.server_max_wait_s * 1e3,
            "server_dispatch_when_idle": self.dispatch_when_idle,
            "server_min_batch": self.server_min_batch,
            "sample_count": self.cfg.sample_count,
            "round": self.round.name,
            "round_note": self.round_note(),
            "questions": self.cfg.questions or "all",
        }


def for_this_cpu(system: SystemSpec) -> SystemSpec:
    """``system`` with the recipes its file names for this machine's CPU class
    (``backends.cpu_class``: from the /proc/cpuinfo flags, less those oneDNN's ISA cap takes
    away), where it names any."""
    if not (
        system.precision_by_cpu or system.batching_by_cpu or system.target_qps_by_cpu or system.backend_options_by_cpu
    ):
        return system
    from packed_bert.backends.cpu_class import cpu_class, isa_cap

    return system.for_cpu(cpu_class(), isa_cap())


def check_scenario_options(system: SystemSpec) -> None:
    """Every runtime named in ``[backend_options_by_scenario]`` is one packed-bert has."""
    from packed_bert.backends import BACKENDS

    for scenario, by_backend in system.backend_options_by_scenario.items():
        unknown = sorted(k for k in by_backend if k.partition(":")[0] not in BACKENDS)
        if unknown:
            raise UserError(
                f"system file {system.source}: [backend_options_by_scenario.{scenario}] names unknown "
                f"runtime(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}"
            )


def plan_run(cfg: RunConfig) -> RunPlan:
    """Resolve ``cfg`` with its system file; raises ``UserError`` on anything impossible."""
    system = for_this_cpu(load_system(cfg.sut))
    check_scenario_options(system)
    rnd = get_round(cfg.round)
    scenario = Scenario(cfg.scenario)
    model = Model(cfg.model)
    mode = Mode.ACCURACY if cfg.mode == Mode.ACCURACY else Mode.PERFORMANCE
    batching = cfg.batching or Batching(system.batching_for(scenario, model))
    batch_size = cfg.batch_size if cfg.batch_size is not None else system.batch_size[scenario]
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    if scenario == Scenario.SINGLE_STREAM:
        batch_size = 1
    target_qps = cfg.target_qps if cfg.target_qps is not None else system.default_qps(model, scenario)
    target_qps = _target_from_settings(cfg.settings, scenario, target_qps)
    if cfg.sample_count is not None and cfg.sample_count < 1:
        raise UserError(f"--count must be >= 1, got {cfg.sample_count}")
    weights = cfg.weights or system.weights
    check_spec(weights, "--weights" if cfg.weights else f"system file {system.source}: weights")
    for flag, path in (("--dataset", cfg.dataset), ("--vocab", cfg.vocab), ("--audit-config", cfg.audit_config)):
        if path is not None and not Path(path).is_file():
            raise UserError(f"{flag} {path}: no such file; pass an existing file")
    st.check_test_settings(cfg.loadgen_settings)
    min_duration = system.test_durations_ms.get(cfg.execution)
    user_conf = st.user_conf_entries(
        scenario,
        cfg.execution,
        float(target_qps),
        cfg.sample_count,
        dict(cfg.settings),
        None if min_duration is None else int(min_duration),
    )
    inflight = cfg.inflight_per_device if cfg.inflight_per_device is not None else system.inflight_per_device
    max_wait_ms = cfg.server_max_wait_ms if cfg.server_max_wait_ms is not None else system.server_max_wait_ms
    if inflight < 1 or max_wait_ms < 0:
        raise UserError("inflight per device must be >= 1 and the server max wait >= 0")
    idle = cfg.server_dispatch_when_idle
    min_batch = cfg.server_min_batch
    return RunPlan(
        cfg=cfg,
        system=system,
        scenario=scenario,
        mode=mode,
        batching=batching,
        batch_size=int(batch_size),
        target_qps=float(target_qps),
        weights=weights,
        precision=str(cfg.precision or system.precision_for(model)),
        backend=system.backend_for(model),
        inflight=int(inflight),
        server_max_wait_s=float(max_wait_ms) / 1e3,
        dispatch_when_idle=system.server_dispatch_when_idle if idle is None else idle,
        server_min_batch=system.server_min_batch if min_batch is None else min_batch,
        user_conf=user_conf,
        round=rnd,
        target_qps_from=(
            "--target-qps"
            if cfg.target_qps is not None
            else "--setting"
            if _setting_sets_target(cfg)
            else "the system file"
        ),
    )


def _setting_sets_target(cfg: RunConfig) -> bool:
    return any(k.rpartition(".")[2] in ("target_qps", "target_latency") for k in cfg.settings)


def _target_from_settings(settings: Mapping[str, str], scenario: Scenario, target_qps: float) -> float:
    """``--setting target_qps=Q`` (``target_latency=MS`` in SingleStream) is the run's target:
    the plan, and so every record of the run, says what LoadGen is told."""
    for key, value in settings.items():
        name = key.rpartition(".")[2]
        try:
            number = float(value)
        except ValueError:
            continue  # user_conf_entries names the bad value
        if not math.isfinite(number):
            continue
        if name == "target_qps" and scenario != Scenario.SINGLE_STREAM and number > 0:
            target_qps = number
        elif name == "target_latency" and scenario == Scenario.SINGLE_STREAM and number > 0:
            target_qps = 1000.0 / number
    return target_qps


def scaled_for_devices(plan: RunPlan, devices: int) -> RunPlan:
    """The plan for the ``devices`` the run got: the system file's target QPS is for its own
    devices (``nodes`` x ``devices``), so a run on more or fewer (a cluster's) expects
    proportionally more or less, unless the user set the target."""
    system_devices = plan.system.total_devices
    if plan.target_qps_from != "the system file" or system_devices is None or devices == system_devices or devices < 1:
        return plan
    if plan.scenario == Scenario.SINGLE_STREAM:
        return plan  # one sample at a time: more devices do not shorten its latency
    target = plan.target_qps * devices / system_devices
    user_conf = st.user_conf_entries(
        plan.scenario,
        plan.cfg.execution,
        target,
        plan.cfg.sample_count,
        dict(plan.cfg.settings),
        _min_duration(plan.system, plan.cfg.execution),
    )
    return dataclasses.replace(
        plan,
        target_qps=target,
        user_conf=user_conf,
        target_qps_from=f"the system file x {devices}/{system_devices} devices",
    )


def _min_duration(system: SystemSpec, execution: str) -> int | None:
    value = system.test_durations_ms.get(execution)
    return None if value is None else int(value)
