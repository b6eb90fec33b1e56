"""The systems JSON's ``hw_notes`` and ``sw_notes``: what a reader of the results table needs
beyond the fixed fields (the checker's results table and the final report show them joined as
"Notes"). ``hw_notes``: the CPU's generation and the instruction class its recipe was chosen for;
``sw_notes``: each model's recipe as the run's device described it, and how the runs batched."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from packed_bert.terms import Scenario


def hardware_note(run_system: Mapping[str, Any]) -> str | None:
    """The host CPU's generation (``host_info.cpu_generation``) and its CPU class, or None."""
    info = run_system.get("host_info")
    generation = info.get("cpu_generation") if isinstance(info, dict) else None
    cpu_class = run_system.get("cpu_class")
    parts = [f"CPU {generation}"] if generation else []
    if cpu_class:
        parts.append(f"packed-bert CPU class {cpu_class}")
    return "; ".join(parts) or None


def _batching(run: Mapping[str, Any]) -> str | None:
    scenario, batching, size = run.get("scenario"), run.get("batching"), run.get("batch_size")
    if not scenario or not batching:
        return None
    if scenario == Scenario.SINGLE_STREAM:
        return f"{scenario} one sample at a time"
    return f"{scenario} {batching} batches of {size}" if size else f"{scenario} {batching} batches"


def software_note(run_systems: Sequence[Mapping[str, Any]]) -> str | None:
    """Per model: its device's recipe (the first runner's ``detail``) and each scenario's
    batching, from the ``system.json`` of the runs the submission takes; None without either."""
    recipes: dict[str, str] = {}
    batching: dict[str, list[str]] = {}
    for system in run_systems:
        run = system.get("run")
        run = run if isinstance(run, dict) else {}
        model = run.get("model")
        if not model:
            continue
        runners = system.get("runners")
        first = runners[0] if isinstance(runners, list) and runners and isinstance(runners[0], dict) else {}
        if first.get("detail") and model not in recipes:
            recipes[str(model)] = str(first["detail"])
        if (line := _batching(run)) is not None and line not in batching.setdefault(str(model), []):
            batching[str(model)].append(line)
    parts = []
    for model in sorted(set(recipes) | set(batching)):
        said = [recipes[model]] if model in recipes else []
        said += batching.get(model, [])
        parts.append(f"{model}: " + "; ".join(said))
    return " | ".join(parts) or None
