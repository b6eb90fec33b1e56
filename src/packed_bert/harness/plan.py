"""What a run will do: the flags resolved against the system file, checked before any work."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from packed_bert.errors import UserError
from packed_bert.harness import settings as st
from packed_bert.harness.config import RunConfig
from packed_bert.systems import SystemSpec, load_system


@dataclass(frozen=True)
class RunPlan:
    cfg: RunConfig
    system: SystemSpec
    scenario: str
    mode: str  # accuracy | performance (what LoadGen runs)
    batching: str
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
            "weights": self.weights,
            "precision": self.precision,
            "backend": self.backend,
            "simulated": self.system.simulated,
            "inflight_per_device": self.inflight,
            "server_max_wait_ms": self.server_max_wait_s * 1e3,
            "server_dispatch_when_idle": self.dispatch_when_idle,
            "server_min_batch": self.server_min_batch,
            "sample_count": self.cfg.sample_count,
            "questions": self.cfg.questions or "all",
        }


def plan_run(cfg: RunConfig) -> RunPlan:
    """Resolve ``cfg`` with its system file; raises ``UserError`` on anything impossible."""
    system = load_system(cfg.sut)
    scenario = cfg.scenario
    if scenario not in ("Offline", "Server", "SingleStream"):
        raise UserError(f"--scenario {scenario!r}: choose offline, server or singlestream")
    if cfg.model not in system.precision:
        raise UserError(f"--model {cfg.model!r}: choose bert-99 or bert-99.9")
    mode = "accuracy" if cfg.mode == "accuracy" else "performance"
    batching = cfg.batching or system.batching_for(scenario, cfg.model)
    if batching not in ("packed", "sorted", "padded"):
        raise UserError(f"--batching {batching!r}: choose packed, sorted or padded")
    batch_size = cfg.batch_size if cfg.batch_size is not None else system.batch_size[scenario]
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    if scenario == "SingleStream":
        batch_size = 1
    target_qps = cfg.target_qps if cfg.target_qps is not None else system.default_qps(cfg.model, scenario)
    if cfg.sample_count is not None and cfg.sample_count < 1:
        raise UserError(f"--count must be >= 1, got {cfg.sample_count}")
    extra = cfg.extra or {}
    settings_overrides = dict(extra.get("settings", {}))
    min_duration = extra.get("min_duration_ms")
    if min_duration is None and cfg.execution in ("test", "demo"):
        min_duration = _system_duration(system, cfg.execution)
    user_conf = st.user_conf_entries(
        scenario, cfg.execution, float(target_qps), cfg.sample_count, settings_overrides,
        None if min_duration is None else int(min_duration),
    )
    inflight = int(extra.get("inflight_per_device", system.inflight_per_device))
    max_wait_ms = float(extra.get("server_max_wait_ms", system.server_max_wait_ms))
    if inflight < 1 or max_wait_ms < 0:
        raise UserError("inflight per device must be >= 1 and the server max wait >= 0")
    return RunPlan(
        cfg=cfg,
        system=system,
        scenario=scenario,
        mode=mode,
        batching=batching,
        batch_size=int(batch_size),
        target_qps=float(target_qps),
        weights=cfg.weights or system.weights,
        precision=str(extra.get("precision", system.precision_for(cfg.model))),
        backend=system.backend_for(cfg.model),
        inflight=inflight,
        server_max_wait_s=max_wait_ms / 1e3,
        dispatch_when_idle=bool(extra.get("dispatch_when_idle", system.server_dispatch_when_idle)),
        server_min_batch=int(extra.get("server_min_batch", system.server_min_batch)),
        user_conf=user_conf,
    )


def _system_duration(system: SystemSpec, execution: str) -> int | None:
    value = system.test_durations_ms.get(execution)
    return None if value is None else int(value)
