"""A target QPS that fits the model actually run, from a short timed probe.

A system file's ``target_qps`` was measured with its own ``weights`` (BERT-Large shaped, random
or a checkpoint). A performance run with other weights (``--weights tiny``, another checkpoint)
and no ``--target-qps`` would size LoadGen's run from a rate that is not this model's: a much
faster model ends an Offline run before ``min_duration`` (INVALID), a much slower one makes it
run for ages. So the run times a few batches first, as the demo does, and says so. A Server
accuracy run does too: LoadGen issues its queries at the target QPS, so the target sets how long
it takes (``can_probe``). The targets:

- Offline: 1.25x the probe's samples/s (LoadGen issues target x min_duration x 1.1 samples and
  runs them all, so only a run faster than 1.375x the probe ends before min_duration; the headroom
  covers a machine that gets quieter, or a run's batches that pack better, than during the probe.
  Eighteen MiniLM runs on the cpu system ran 0.87-1.004x their probe, which counts each batch's
  fastest call. Every second of headroom is run: a valid run at 2x lasted 1,314 s for its 600 s.
  A plan runs a run that still ends short once more at the rate it reached, ``plan_runner``);
- Server: half the probe's rate (queries must not queue past the latency bound);
- SingleStream: 1.5x the rate of the probe's median one-sample latency (LoadGen generates
  min_duration / expected latency queries, so a latency read too high, say in a moment when
  another job held the cores, ends the run before min_duration; the median ignores such stalls,
  and a rate read too high costs nothing: the run stops once min_duration and min_query_count
  are met, 600.6 s for a valid MiniLM run that had 448,731 queries and used 222,332).

Simulated and null systems never probe (their rate does not depend on the weights).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from packed_bert.backends.base import Runner
from packed_bert.harness.batching import BatchBuilder
from packed_bert.harness.plan import RunPlan
from packed_bert.harness.qsl import SampleLibrary
from packed_bert.terms import Batching, Mode, Scenario

PROBE_SAMPLES = 64  # samples in the probe's batches (at least one batch)
MAX_BATCH = 32  # samples per probe batch at most (the run's batch size when smaller)
TIME_BUDGET_S = 6.0  # stop timing after this long (at least one batch is timed)
REPEATS = 2  # each batch is timed this often; the fastest counts
HEADROOM = {Scenario.OFFLINE: 1.25, Scenario.SERVER: 0.5, Scenario.SINGLE_STREAM: 1.5}


def can_probe(plan: RunPlan) -> bool:
    """Whether this run's target QPS may come from a probe: a run on real devices (not simulated,
    not null) whose target is the system file's, not the user's, and sets how it runs: a
    performance run, or a Server accuracy run, whose queries LoadGen issues at the target QPS (the
    cpu system's 6 QPS for BERT-Large held MiniLM's 10,833 samples for half an hour)."""
    timed = plan.mode == Mode.PERFORMANCE or (plan.mode == Mode.ACCURACY and plan.scenario == Scenario.SERVER)
    if not plan.target_qps_from.startswith("the system file") or not timed:
        return False
    return not plan.system.simulated and plan.backend not in ("sim", "null")


def probe_reason(plan: RunPlan) -> str | None:
    """Why this run's target QPS must come from a probe, or None when the system file's fits."""
    if not can_probe(plan) or plan.weights == plan.system.weights:
        return None
    return (
        f"the system file's {plan.target_qps:g} QPS was measured with --weights {plan.system.weights}, "
        f"this run uses --weights {plan.weights}"
    )


def probe_samples_per_s(plan: RunPlan, library: SampleLibrary, runners: Sequence[Runner]) -> float:
    """Samples per second of the run's batching and batch size on its devices (SingleStream:
    one sample at a time): batches like a run's (``_probe_batches``), timed on the first device
    after one warm-up batch, each batch's fastest of ``REPEATS`` calls (overestimating the rate
    only makes a run longer; underestimating it makes a run end before min_duration)."""
    per_batch = 1 if plan.scenario == Scenario.SINGLE_STREAM else min(plan.batch_size, MAX_BATCH)
    chunks = _probe_batches(np.asarray(library.lengths), per_batch, plan.batching)
    trim = not all(r.static_shape for r in runners)
    builder = BatchBuilder(library, plan.batching, plan.system.max_per_row, trim_rows=trim)
    runner = runners[0]
    runner.infer(builder.build(chunks[len(chunks) // 2]))  # warm-up: sessions, graphs, caches
    done, elapsed = 0, 0.0
    fastest: list[float] = []  # each batch's fastest call
    for chunk in np.random.default_rng(1).permutation(len(chunks)):
        batch = builder.build(chunks[chunk])
        times = []
        for _ in range(REPEATS):  # the fastest: a busy machine slows a probe more than a long run
            t0 = time.perf_counter()
            runner.infer(batch)
            times.append(time.perf_counter() - t0)
        fastest.append(min(times))
        elapsed += sum(times)
        done += chunks[chunk].size
        if elapsed >= TIME_BUDGET_S:
            break
    if plan.scenario == Scenario.SINGLE_STREAM:  # one sample a call: its median latency
        return 1.0 / max(float(np.median(fastest)), 1e-6)
    return done * len(runners) / max(sum(fastest), 1e-6)


def _probe_batches(lengths: np.ndarray, per_batch: int, batching: Batching) -> list[np.ndarray]:
    """Batches like a run's. Sorted: runs of like lengths (a whole query sorted by length pads
    little), from spread points of the length order. Packed and padded: a seeded random draw cut
    in length order (packing mixes lengths; padding costs 384 tokens whatever the mix)."""
    n = lengths.size
    count = max(1, min(n, PROBE_SAMPLES) // per_batch)
    if batching == Batching.SORTED:
        order = np.argsort(lengths, kind="stable")
        starts = np.linspace(0, max(0, n - per_batch), count + 2)[1:-1].astype(np.int64)
        return [order[s : s + per_batch] for s in starts]
    draw = np.random.default_rng(0).choice(n, min(n, count * per_batch), replace=False)
    draw = draw[np.argsort(lengths[draw], kind="stable")]
    return [draw[i : i + per_batch] for i in range(0, draw.size, per_batch)]


def target_from_probe(plan: RunPlan, samples_per_s: float) -> float:
    return round(max(0.05, HEADROOM[plan.scenario] * samples_per_s), 3)
