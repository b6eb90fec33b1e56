"""``--find-peak``: the highest Server QPS whose runs meet the 130 ms 99th-percentile bound.

A trial passes when LoadGen reports "Performance constraints satisfied" (99th percentile
latency <= 130 ms and the schedule kept; with --execution valid also VALID). A short search: from the target QPS, step up by 25% while runs stay
VALID (or down by a third until one is), then bisect between the best VALID and the lowest
INVALID QPS. Every trial is a full run directory inside the search's own directory.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from packed_bert.errors import UserError
from packed_bert.harness.config import RunConfig, RunResult
from packed_bert.harness.plan import plan_run
from packed_bert.harness.run_dir import RunDir, run_name

MAX_TRIALS = 8


def find_peak(cfg: RunConfig, *, features: Any = None, runners: list[Any] | None = None,
              max_trials: int = MAX_TRIALS, rel_tol: float = 0.03) -> RunResult:
    if cfg.scenario != "Server":
        raise UserError("--find-peak searches the Server scenario; add --scenario server")
    if cfg.mode != "performance":
        raise UserError("--find-peak runs in performance mode")
    plan = plan_run(cfg)
    from packed_bert.harness.runner import run_benchmark

    if features is None:
        from packed_bert.squad.features import load_features

        features = load_features(cfg.dataset, cfg.vocab)
    if runners is None:
        from packed_bert.harness.devices import make_runners
        from packed_bert.harness.qsl import SampleLibrary

        runners = make_runners(plan, SampleLibrary.from_features(features, cfg.sample_count))
    rd = RunDir(cfg.results_dir, run_name(plan.system.name, cfg.model, "server", "find-peak"))
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
            cfg.execution != "valid" or bool(res.valid))
        trials.append({"target_qps": qps, "valid": ok, "samples_per_second": res.samples_per_second,
                       "latency_p99_ms": p99, "run_dir": Path(res.run_dir).name})
        print(f"find-peak: {qps:,.1f} qps -> {'VALID' if ok else 'INVALID'}"
              f" (p99 {p99 if p99 is None else round(p99, 1)} ms)", flush=True)
        if ok and (best is None or qps > (best.config.target_qps or 0)):
            best = res
        return ok

    try:
        lo, hi = 0.0, float("inf")
        qps = plan.target_qps
        while len(trials) < max_trials:
            if trial(qps):
                lo = qps
            else:
                hi = qps
            if hi == float("inf"):
                qps = lo * 1.25
            elif lo == 0.0:
                qps = hi / 1.5
            elif (hi - lo) / hi <= rel_tol:
                break
            else:
                qps = (lo + hi) / 2
        peak = {"peak_qps": lo if lo > 0 else None, "lowest_invalid_qps": None if hi == float("inf") else hi,
                "trials": trials, "bound_ms": 130.0}
        rd.write_json("peak.json", peak)
        final = rd.finish()
    except BaseException as exc:
        rd.abandon(f"find-peak stopped: {exc}")
        raise
    if best is not None:
        best.run_dir = final / Path(best.run_dir).name
    result = best or RunResult(run_dir=final, config=cfg, scenario="Server", mode="performance",
                               simulated=plan.system.simulated, batching=plan.batching)
    summary = dict(result.summary) if best else {"sut": plan.system.name, "valid": False}
    summary.update(find_peak=peak, run_dir=str(final), peak_qps=peak["peak_qps"])
    result.summary = summary
    shown = "none" if peak["peak_qps"] is None else f"{peak['peak_qps']:,.1f}"
    print(f"find-peak: highest VALID Server QPS {shown} "
          f"({'SIMULATED' if plan.system.simulated else plan.backend}); search in {final}", flush=True)
    return result
