"""``--find-peak``: the highest Server QPS whose runs meet the 99th-percentile latency bound
(``terms.SERVER_LATENCY_BOUND_MS``).

A trial passes when LoadGen reports "Performance constraints satisfied" (99th percentile
latency <= 130 ms and the schedule kept; with --execution valid also VALID). A short search: from
a start, step up by 25% while runs stay VALID (or down by a third until one is), then bisect
between the best VALID and the lowest INVALID QPS. Every trial is a full run directory inside the
search's own directory.

The start is ``--target-qps`` where given. Otherwise, on real devices, half the rate of a timed
probe of the run's batches (``harness.probe``): a system file's Server target is a safe rate for
one run with its own weights, not an estimate of the peak (the cpu system's 0.5 QPS for
BERT-Large left a search on MiniLM, whose peak is about 340 QPS, at 2.4 after eight trials), and a
search only climbs 1.25^(trials - 1) from where it starts. Simulated systems start from the system
file's target.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from packed_bert.backends.base import Runner
from packed_bert.errors import UserError
from packed_bert.harness.benchmark import run_benchmark
from packed_bert.harness.config import RunConfig, RunResult
from packed_bert.harness.devices import RunDevices, open_devices
from packed_bert.harness.plan import RunPlan, plan_run
from packed_bert.harness.probe import can_probe, probe_samples_per_s, target_from_probe
from packed_bert.harness.qsl import SampleLibrary
from packed_bert.results.run_dirs import RunDir, run_name
from packed_bert.terms import SERVER_LATENCY_BOUND_MS, Mode, Scenario

MAX_TRIALS = 8


class QpsSearch:
    """The QPS steps of the search, apart from running them (benchmarks drive several in
    lock-step): ``next_qps`` is the QPS to try (None: done), ``record(ok)`` its outcome."""

    def __init__(
        self, start_qps: float, max_trials: int = MAX_TRIALS, rel_tol: float = 0.03, up: float = 1.25, down: float = 1.5
    ) -> None:
        if start_qps <= 0 or max_trials < 1 or up <= 1 or down <= 1:
            raise ValueError("QpsSearch needs start_qps > 0, max_trials >= 1, up and down > 1")
        self.lo, self.hi = 0.0, float("inf")
        self.next_qps: float | None = float(start_qps)
        self.trials = 0
        self.max_trials, self.rel_tol, self.up, self.down = max_trials, rel_tol, up, down

    def record(self, ok: bool) -> None:
        qps = self.next_qps
        if qps is None:
            raise RuntimeError("QpsSearch.record: the search is over")
        self.trials += 1
        if ok:
            self.lo = max(self.lo, qps)
        else:
            self.hi = min(self.hi, qps)
        if self.trials >= self.max_trials:
            self.next_qps = None
        elif self.hi == float("inf"):
            self.next_qps = self.lo * self.up
        elif self.lo == 0.0:
            self.next_qps = self.hi / self.down
        elif (self.hi - self.lo) / self.hi <= self.rel_tol:
            self.next_qps = None
        else:
            self.next_qps = (self.lo + self.hi) / 2

    @property
    def peak(self) -> float | None:
        """The highest QPS that passed (None: none did)."""
        return self.lo if self.lo > 0 else None

    @property
    def lowest_failing(self) -> float | None:
        return None if self.hi == float("inf") else self.hi


def find_peak(
    cfg: RunConfig,
    *,
    features: Any = None,
    runners: Sequence[Runner] | None = None,
    max_trials: int = MAX_TRIALS,
    rel_tol: float = 0.03,
) -> RunResult:
    if cfg.scenario != Scenario.SERVER:
        raise UserError("--find-peak searches the Server scenario; add --scenario server")
    if cfg.mode != Mode.PERFORMANCE:
        raise UserError("--find-peak runs in performance mode")
    plan = plan_run(cfg)
    if features is None:
        from packed_bert.squad.features import load_features

        features = load_features(cfg.dataset, cfg.vocab)
    library = SampleLibrary.from_features(features, cfg.sample_count)
    # one set of devices (and one cluster connection) for every trial
    devices = RunDevices(list(runners)) if runners is not None else open_devices(plan, library)
    try:
        start, start_from = plan.target_qps, plan.target_qps_from
        if can_probe(plan):
            rate = probe_samples_per_s(plan, library, devices.runners)
            start, start_from = target_from_probe(plan, rate), f"a probe: {rate:,.4g} samples/s"
        print(f"find-peak: starting at {start:,.4g} qps ({start_from})", flush=True)
        return _search(cfg, plan, features, devices.runners, max_trials, rel_tol, start, start_from)
    finally:
        devices.release()


def _search(
    cfg: RunConfig,
    plan: RunPlan,
    features: Any,
    runners: Sequence[Runner],
    max_trials: int,
    rel_tol: float,
    start: float,
    start_from: str,
) -> RunResult:
    rd = RunDir(cfg.results_dir, run_name(plan.system.name, cfg.model, Scenario.SERVER, "find-peak"))
    trials: list[dict[str, Any]] = []
    best: RunResult | None = None

    def trial(qps: float) -> bool:
        nonlocal best
        sub = dataclasses.replace(cfg, target_qps=qps, find_peak=False, results_dir=rd.path)
        res = run_benchmark(sub, features=features, runners=runners, quiet=True)
        # test-duration runs are too short for LoadGen's minimums and early stopping, so a
        # trial passes when the latency bound and the schedule held (valid runs: VALID too)
        p99 = res.summary.get("latency_p99_ms")
        ok = bool(res.summary.get("performance_constraints_satisfied")) and (
            cfg.execution != "valid" or bool(res.valid)
        )
        trials.append(
            {
                "target_qps": qps,
                "valid": ok,
                "samples_per_second": res.samples_per_second,
                "latency_p99_ms": p99,
                "run_dir": Path(res.run_dir).name,
            }
        )
        print(
            f"find-peak: {qps:,.1f} qps -> {'VALID' if ok else 'INVALID'}"
            f" (p99 {p99 if p99 is None else round(p99, 1)} ms)",
            flush=True,
        )
        if ok and (best is None or qps > (best.config.target_qps or 0)):
            best = res
        return ok

    try:
        search = QpsSearch(start, max_trials, rel_tol)
        while search.next_qps is not None:
            search.record(trial(search.next_qps))
        peak = {
            "start_qps": start,
            "start_from": start_from,
            "peak_qps": search.peak,
            "lowest_invalid_qps": search.lowest_failing,
            "trials": trials,
            "bound_ms": SERVER_LATENCY_BOUND_MS,
        }
        rd.write_json("peak.json", peak)
        final = rd.finish()
    except BaseException as exc:
        rd.abandon(f"find-peak stopped: {exc}")
        raise
    if best is not None:
        best.run_dir = final / Path(best.run_dir).name
    result = best or RunResult(
        run_dir=final,
        config=cfg,
        scenario=Scenario.SERVER,
        mode=Mode.PERFORMANCE,
        simulated=plan.system.simulated,
        batching=plan.batching,
    )
    summary = dict(result.summary) if best else {"sut": plan.system.name, "valid": False}
    summary.update(find_peak=peak, run_dir=str(final), peak_qps=peak["peak_qps"])
    result.summary = summary
    shown = "none" if peak["peak_qps"] is None else f"{peak['peak_qps']:,.1f}"
    print(
        f"find-peak: highest VALID Server QPS {shown} "
        f"({'SIMULATED' if plan.system.simulated else plan.backend}); search in {final}",
        flush=True,
    )
    return result
