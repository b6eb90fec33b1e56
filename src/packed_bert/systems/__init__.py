"""Systems under test: one TOML file per SUT in this folder, read into a typed ``SystemSpec``.

A file names the devices, the backend, the precision per model, the default batching
strategy, batch sizes and target QPS per scenario, and the MLPerf categories (edge,
datacenter) the system may claim (default: both). ``load_system(name)`` also takes a path to
a TOML file of the same shape, so a user can describe a new system without editing the package.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from packed_bert.address import check_cluster_address
from packed_bert.errors import UserError
from packed_bert.terms import Batching, Category, Model, Scenario, parse

MODELS = tuple(Model)
V = TypeVar("V")
SCENARIOS = tuple(Scenario)
BATCHINGS = tuple(Batching)
_KNOWN_KEYS = {
    "name",
    "description",
    "host",
    "accelerator",
    "devices",
    "backend",
    "simulated",
    "weights",
    "sdk",
    "batching",
    "inflight_per_device",
    "server_max_wait_ms",
    "max_per_row",
    "precision",
    "batch_size",
    "target_qps",
    "sim_samples_per_s",
    "backend_options",
    "backend_options_by_scenario",
    "backend_options_by_cpu",
    "notes",
    "min_duration_ms",
    "server_dispatch_when_idle",
    "server_min_batch",
    "nodes",
    "cluster",
    "categories",
    "f1_ratio",
    "precision_by_cpu",
    "f1_ratio_by_cpu",
    "batching_by_cpu",
    "target_qps_by_cpu",
}


@dataclass(frozen=True)
class SystemSpec:
    """One system under test, as its file describes it."""

    name: str
    description: str
    host: str
    accelerator: str
    devices: int | None  # None: all visible devices ("auto")
    backend: str
    simulated: bool
    weights: str
    batching: str  # default strategy (Offline's when batching_per_scenario says otherwise)
    precision: dict[str, str]
    batch_size: dict[str, int]
    target_qps: dict[str, dict[str, float]]
    inflight_per_device: int = 1
    server_max_wait_ms: float = 50.0
    server_dispatch_when_idle: bool = True  # a Server batch also goes when a device is idle...
    server_min_batch: int = 1  # ...and at least this many samples wait
    max_per_row: int = 3
    sdk: str | None = None
    sim_samples_per_s: dict[str, float] = field(default_factory=dict)
    backend_options: dict[str, Any] = field(default_factory=dict)
    # scenario -> runtime or "runtime:precision" -> options over ``backend_options`` for that scenario's runs
    backend_options_by_scenario: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    test_durations_ms: dict[str, int] = field(default_factory=dict)  # execution -> min_duration
    batching_per_scenario: dict[str, str] = field(default_factory=dict)
    batching_per_model: dict[str, dict[str, str]] = field(default_factory=dict)
    notes: str = ""
    source: str = ""
    nodes: int = 1  # hosts of the system; ``devices`` is per node
    cluster: str | None = None  # its Ray cluster (the default for --cluster); None: one host
    # MLPerf categories the system may claim, first the one it is submitted in by default
    categories: tuple[Category, ...] = (Category.DATACENTER, Category.EDGE)

    @property
    def total_devices(self) -> int | None:
        """Devices of the whole system (``None``: every visible GPU of each node)."""
        return None if self.devices is None else self.devices * self.nodes

    # measured F1 of each model's default recipe, percent of the fp32 F1 (benchmarks/recipe_accuracy.py)
    f1_ratio: dict[str, float] = field(default_factory=dict)
    # CPU class (backends.cpu_class: amx, avx512-bf16, ...) -> model -> recipe, overriding
    # ``precision`` on a CPU of that class (``for_cpu``); and the F1 ratios of those recipes
    precision_by_cpu: dict[str, dict[str, str]] = field(default_factory=dict)
    f1_ratio_by_cpu: dict[str, dict[str, float]] = field(default_factory=dict)
    batching_by_cpu: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)  # class -> model -> scenario
    # class -> model -> scenario -> QPS: a class whose recipe runs at another rate sizes its runs anew
    target_qps_by_cpu: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    # class -> runtime or "runtime:precision" -> options: a class's recipe may need its own graph
    # (``[backend_options_by_cpu.avx2."onnxruntime:int8"]``); a scenario's own options win over them
    backend_options_by_cpu: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    cpu_class: str = ""  # the class ``for_cpu`` resolved the recipes for ("" before)
    cpu_isa_cap: str = ""  # oneDNN's ISA cap the class was read under: an emulated class ("" none)

    def for_cpu(self, cpu_class: str, isa_cap: str = "") -> SystemSpec:
        """This system with the recipes its file names for CPUs of ``cpu_class`` (unchanged
        where the file names none for that class); ``isa_cap``: oneDNN's cap that made the CPU
        that class (``backends.cpu_class.isa_cap``), recorded with the run."""
        own = self.precision_by_cpu.get(cpu_class, {})
        # a ratio measured for [precision]'s recipe holds where the class runs that same recipe
        ratios = {m: v for m, v in self.f1_ratio.items() if own.get(m, self.precision.get(m)) == self.precision.get(m)}
        ratios.update(self.f1_ratio_by_cpu.get(cpu_class, {}))
        return replace(
            self,
            precision={**self.precision, **own},
            f1_ratio=ratios,
            batching_per_model=_per_scenario(self.batching_per_model, self.batching_by_cpu.get(cpu_class, {})),
            target_qps=_per_scenario(self.target_qps, self.target_qps_by_cpu.get(cpu_class, {})),
            backend_options_by_scenario=_class_options_under_scenarios(
                self.backend_options_by_scenario, self.backend_options_by_cpu.get(cpu_class, {})
            ),
            cpu_class=cpu_class,
            cpu_isa_cap=isa_cap,
        )

    def cpu_note(self) -> str:
        """``CPU class amx``, with ``, EMULATED: oneDNN capped at ...`` where oneDNN's ISA cap made
        the CPU that class; "" for a system without recipes per CPU class."""
        if not self.cpu_class:
            return ""
        cap = f", EMULATED: oneDNN capped at {self.cpu_isa_cap}" if self.cpu_isa_cap else ""
        return f"CPU class {self.cpu_class}{cap}"

    def batching_for(self, scenario: str, model: str | None = None) -> str:
        """The default strategy: a model's own entry (``[batching."bert-99.9"]``) first."""
        own = self.batching_per_model.get(model or "", {})
        return own.get(scenario) or self.batching_per_scenario.get(scenario, self.batching)

    def precision_for(self, model: str) -> str:
        return self.precision[model].rpartition(":")[2]

    def backend_for(self, model: str) -> str:
        """A precision entry may name its own runtime (``"torch:bf16"``); else the system's."""
        runtime, _, _ = self.precision[model].rpartition(":")
        return runtime or self.backend

    def options_for(self, backend: str, scenario: str, precision: str = "") -> dict[str, Any]:
        """The runtime's options in ``scenario``: ``backend_options``, then the scenario's own for
        that runtime (``[backend_options_by_scenario.SingleStream.openvino]``), then for that
        runtime at ``precision`` (``[backend_options_by_scenario.SingleStream."openvino:int8"]``)."""
        own = self.backend_options_by_scenario.get(scenario, {})
        return {**self.backend_options, **own.get(backend, {}), **own.get(f"{backend}:{precision}", {})}

    def default_qps(self, model: str, scenario: str) -> float:
        return float(self.target_qps[model][scenario])

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (``system.json`` starts from it)."""
        return {
            "name": self.name,
            "description": self.description,
            "host": self.host,
            "accelerator": self.accelerator,
            "devices": self.devices if self.devices is not None else "auto",
            "backend": self.backend,
            "simulated": self.simulated,
            "default_weights": self.weights,
            "default_batching": {m: {sc: self.batching_for(sc, m) for sc in SCENARIOS} for m in MODELS},
            "precision": dict(self.precision),
            "backend_by_model": {m: self.backend_for(m) for m in self.precision},
            "batch_size": dict(self.batch_size),
            "target_qps": {m: dict(v) for m, v in self.target_qps.items()},
            "inflight_per_device": self.inflight_per_device,
            "server_max_wait_ms": self.server_max_wait_ms,
            "server_dispatch_when_idle": self.server_dispatch_when_idle,
            "server_min_batch": self.server_min_batch,
            "max_per_row": self.max_per_row,
            "sdk": self.sdk,
            "sim_samples_per_s": dict(self.sim_samples_per_s),
            **(
                {"backend_options_by_scenario": {sc: dict(v) for sc, v in self.backend_options_by_scenario.items()}}
                if self.backend_options_by_scenario
                else {}
            ),
            "min_duration_ms": dict(self.test_durations_ms),
            "source": self.source,
            "categories": list(self.categories),
            "node_count": self.nodes,
            **({"cluster": self.cluster} if self.cluster else {}),
            "f1_ratio_percent": dict(self.f1_ratio),
            **({"cpu_class": self.cpu_class} if self.cpu_class else {}),
            **({"cpu_isa_cap": self.cpu_isa_cap} if self.cpu_isa_cap else {}),
            **(
                {"precision_by_cpu": {c: dict(v) for c, v in self.precision_by_cpu.items()}}
                if self.precision_by_cpu
                else {}
            ),
        }


def system_names() -> list[str]:
    """Names of the systems shipped with packed-bert, sorted."""
    folder = resources.files(__name__)
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_system(name_or_path: str) -> SystemSpec:
    """The system named ``name_or_path`` (case-insensitive), or the TOML file at that path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        return parse_system(path.read_text(encoding="utf-8"), str(path))
    key = name_or_path.strip().lower()
    if key in system_names():
        text = resources.files(__name__).joinpath(f"{key}.toml").read_text(encoding="utf-8")
        return parse_system(text, f"packed_bert/systems/{key}.toml")
    raise UserError(
        f"--sut {name_or_path!r}: unknown system; choose one of {', '.join(system_names())} "
        "or pass the path of a system .toml file"
    )


def all_systems() -> list[SystemSpec]:
    return [load_system(n) for n in system_names()]


def parse_system(text: str, source: str) -> SystemSpec:
    """Read and check one system file; any unknown key or impossible value is a ``UserError``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"system file {source}: not valid TOML ({exc})") from exc
    where = f"system file {source}"
    unknown = sorted(set(raw) - _KNOWN_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}")
    for key in ("name", "backend", "precision", "batch_size", "target_qps"):
        if key not in raw:
            raise UserError(f"{where}: missing key {key!r}")
    devices_raw = raw.get("devices", 1)
    devices: int | None
    if devices_raw == "auto":
        devices = None
    elif isinstance(devices_raw, int) and devices_raw >= 1:
        devices = devices_raw
    else:
        raise UserError(f'{where}: devices must be a positive integer or "auto", got {devices_raw!r}')
    batching_raw = raw.get("batching", "packed")
    table = dict(batching_raw) if isinstance(batching_raw, dict) else {}
    per_model = {str(k): {str(s): str(b) for s, b in v.items()} for k, v in table.items() if isinstance(v, dict)}
    per_scenario = {k: v for k, v in table.items() if not isinstance(v, dict)}
    batching = str(per_scenario.get("Offline", batching_raw if isinstance(batching_raw, str) else "packed"))
    unknown_sc = sorted(set(per_scenario).union(*per_model.values()) - set(SCENARIOS))
    if unknown_sc:
        raise UserError(f"{where}: batching table has unknown scenario(s) {', '.join(unknown_sc)}")
    unknown_models = sorted(set(per_model) - set(MODELS))
    if unknown_models:
        raise UserError(f"{where}: batching table has unknown model(s) {', '.join(unknown_models)}")
    for value in [batching, *per_scenario.values(), *(b for m in per_model.values() for b in m.values())]:
        if value not in BATCHINGS:
            raise UserError(f"{where}: batching must be one of {', '.join(BATCHINGS)}, got {value!r}")
    precision = {str(k): str(v) for k, v in raw["precision"].items()}
    batch_size = {str(k): int(v) for k, v in raw["batch_size"].items()}
    target_qps = {str(m): {str(s): float(q) for s, q in v.items()} for m, v in raw["target_qps"].items()}
    for model in MODELS:
        if model not in precision:
            raise UserError(f"{where}: [precision] has no entry for {model}")
        if model not in target_qps:
            raise UserError(f'{where}: [target_qps."{model}"] is missing')
        for scenario in SCENARIOS:
            qps = target_qps[model].get(scenario)
            if qps is None or qps <= 0:
                raise UserError(f"{where}: target_qps for {model} {scenario} must be > 0")
    for scenario in SCENARIOS:
        if batch_size.get(scenario, 0) < 1:
            raise UserError(f"{where}: batch_size.{scenario} must be >= 1")
    sim_rates = {str(k): float(v) for k, v in raw.get("sim_samples_per_s", {}).items()}
    if raw["backend"] == "sim" and any(sim_rates.get(m, 0) <= 0 for m in MODELS):
        raise UserError(f"{where}: a sim system needs sim_samples_per_s > 0 for each model")
    durations = {str(k): int(v) for k, v in raw.get("min_duration_ms", {}).items()}
    if any(k not in ("test", "demo") or v < 0 for k, v in durations.items()):
        raise UserError(f"{where}: [min_duration_ms] takes test and demo, in ms >= 0")
    nodes = raw.get("nodes", 1)
    if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1:
        raise UserError(f"{where}: nodes must be a positive integer (hosts of the system), got {nodes!r}")
    cluster = raw.get("cluster")
    if cluster is not None and not isinstance(cluster, str):
        raise UserError(f"{where}: cluster must be a Ray address (auto, HOST:PORT or ray://HOST:PORT)")
    if cluster is not None:
        cluster = check_cluster_address(cluster, f"{where}: cluster")
    categories = _categories(raw.get("categories", ["datacenter", "edge"]), where)
    f1_ratio = {str(k): float(v) for k, v in raw.get("f1_ratio", {}).items()}
    if any(m not in MODELS or not 0 < v <= 100.5 for m, v in f1_ratio.items()):
        raise UserError(f"{where}: [f1_ratio] takes bert-99 / bert-99.9 = percent of the fp32 F1 (0-100)")
    by_cpu = _by_cpu(raw.get("precision_by_cpu", {}), where, "precision_by_cpu", str)
    ratios_by_cpu = _by_cpu(raw.get("f1_ratio_by_cpu", {}), where, "f1_ratio_by_cpu", float)
    batching_by_cpu = _by_cpu(raw.get("batching_by_cpu", {}), where, "batching_by_cpu", dict)
    qps_by_cpu = _by_cpu(raw.get("target_qps_by_cpu", {}), where, "target_qps_by_cpu", dict)
    for cls, models in qps_by_cpu.items():
        for name, rates in models.items():
            if not set(rates) <= set(SCENARIOS) or not all(
                isinstance(q, int | float) and not isinstance(q, bool) and 0 < q < float("inf") for q in rates.values()
            ):
                raise UserError(f'{where}: [target_qps_by_cpu.{cls}."{name}"] takes scenario = QPS > 0')
            qps_by_cpu[cls][name] = {str(s): float(q) for s, q in rates.items()}
    for cls, models in batching_by_cpu.items():
        for name, scenarios in models.items():
            if not set(scenarios) <= set(SCENARIOS) or not set(scenarios.values()) <= set(BATCHINGS):
                raise UserError(f'{where}: [batching_by_cpu.{cls}."{name}"] takes scenario = packed | sorted | padded')
    inflight = int(raw.get("inflight_per_device", 1))
    max_wait = float(raw.get("server_max_wait_ms", 50.0))
    max_per_row = int(raw.get("max_per_row", 3))
    if inflight < 1 or max_wait < 0 or not 1 <= max_per_row <= 16:
        raise UserError(f"{where}: inflight_per_device >= 1, server_max_wait_ms >= 0, max_per_row 1..16")
    return SystemSpec(
        name=str(raw["name"]),
        description=str(raw.get("description", raw["name"])),
        host=str(raw.get("host", "")),
        accelerator=str(raw.get("accelerator", "")),
        devices=devices,
        backend=str(raw["backend"]),
        simulated=bool(raw.get("simulated", raw["backend"] == "sim")),
        weights=str(raw.get("weights", "random")),
        batching=batching,
        precision=precision,
        batch_size=batch_size,
        target_qps=target_qps,
        inflight_per_device=inflight,
        server_max_wait_ms=max_wait,
        max_per_row=max_per_row,
        server_dispatch_when_idle=bool(raw.get("server_dispatch_when_idle", True)),
        server_min_batch=max(1, int(raw.get("server_min_batch", 1))),
        sdk=raw.get("sdk"),
        sim_samples_per_s=sim_rates,
        backend_options=dict(raw.get("backend_options", {})),
        backend_options_by_scenario=_runtime_options(
            raw.get("backend_options_by_scenario", {}), where, "backend_options_by_scenario", SCENARIOS
        ),
        test_durations_ms=durations,
        batching_per_scenario={str(k): str(v) for k, v in per_scenario.items()},
        batching_per_model=per_model,
        notes=str(raw.get("notes", "")),
        source=source,
        nodes=nodes,
        cluster=cluster,
        categories=categories,
        f1_ratio=f1_ratio,
        precision_by_cpu=by_cpu,  # type: ignore[arg-type]
        f1_ratio_by_cpu=ratios_by_cpu,  # type: ignore[arg-type]
        batching_by_cpu=batching_by_cpu,  # type: ignore[arg-type]
        target_qps_by_cpu=qps_by_cpu,  # type: ignore[arg-type]
        backend_options_by_cpu=_runtime_options(raw.get("backend_options_by_cpu", {}), where, "backend_options_by_cpu"),
    )


def _runtime_options(
    raw: object, where: str, key: str, names: Sequence[str] | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """``[KEY.NAME.RUNTIME]`` (or ``."RUNTIME:PRECISION"``) tables of options, NAME a scenario
    (``names``: the ones allowed) or a CPU class (any); the runtime names are checked when a run is
    planned (``harness.plan``)."""
    shape = f"{where}: [{key}] takes {'SCENARIO' if names else 'CLASS'}.RUNTIME = {{ option = value }}"
    if not isinstance(raw, dict):
        raise UserError(shape)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, by_backend in raw.items():
        if names is not None and name not in names:
            raise UserError(f"{shape}; {name!r} is not one of {', '.join(names)}")
        if not isinstance(by_backend, dict):
            raise UserError(f"{shape}; {name} is not a table")
        for backend, options in by_backend.items():
            if not isinstance(options, dict):
                raise UserError(f"{shape}; {name}.{backend} is not a table")
            out.setdefault(str(name), {})[str(backend)] = dict(options)
    return out


def _class_options_under_scenarios(
    by_scenario: dict[str, dict[str, dict[str, Any]]], by_class: dict[str, dict[str, Any]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """Every scenario's runtime options with a CPU class's options under them (the scenario's win)."""
    if not by_class:
        return by_scenario
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for scenario in SCENARIOS:
        own = by_scenario.get(scenario, {})
        out[scenario] = {k: {**by_class.get(k, {}), **own.get(k, {})} for k in {**by_class, **own}}
    return out


def _per_scenario(base: dict[str, dict[str, V]], overrides: dict[str, dict[str, V]]) -> dict[str, dict[str, V]]:
    """model -> scenario -> value tables of ``base``, with a CPU class's entries over them."""
    return {m: {**base.get(m, {}), **overrides.get(m, {})} for m in {**base, **overrides}}


def _by_cpu(value: Any, where: str, key: str, kind: type) -> dict[str, dict[str, Any]]:
    """``[KEY.CLASS]`` tables of model -> value (a recipe, or an F1 ratio)."""
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise UserError(f"{where}: [{key}] takes one table per CPU class, e.g. [{key}.amx]")
    out: dict[str, dict[str, Any]] = {}
    for cls, table in value.items():
        unknown = sorted(set(table) - set(MODELS))
        if unknown:
            raise UserError(f"{where}: [{key}.{cls}] has unknown model(s) {', '.join(unknown)}")
        try:
            out[str(cls)] = {str(m): kind(v) for m, v in table.items()}
        except (TypeError, ValueError) as exc:
            raise UserError(f"{where}: [{key}.{cls}] has a bad value ({exc})") from exc
    return out


def _categories(value: Any, where: str) -> tuple[Category, ...]:
    """``categories = ["edge", "datacenter"]``: what the system may claim, in order of preference."""
    if not isinstance(value, list) or not value or not all(isinstance(c, str) for c in value):
        raise UserError(f'{where}: categories must be a non-empty list of "edge" and/or "datacenter"')
    return tuple(dict.fromkeys(parse(Category, c, f"{where}: categories entry") for c in value))
