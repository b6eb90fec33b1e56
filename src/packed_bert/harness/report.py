"""A short ``report.md`` per run, with PNG plots: how rows were filled, latencies, throughput."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from packed_bert.harness.config import RunResult
from packed_bert.harness.plan import RunPlan
from packed_bert.terms import SEQ_LEN, SERVER_LATENCY_BOUND_MS, Scenario


def write_report(run_dir: Path, plan: RunPlan, result: RunResult, stats: Any, summary_log: Any) -> Path:
    s = stats.summary()
    plots = _plots(run_dir, stats, plan.scenario, plan.system.simulated)
    sim = " — SIMULATED accelerator" if plan.system.simulated else ""
    cpu = f" ({note})" if (note := plan.cpu_note()) else ""
    lines = [
        f"# {plan.system.name} {plan.cfg.model} {plan.scenario} {plan.cfg.mode}{sim}",
        "",
        f"- system: {plan.system.description}{cpu}; backend {plan.backend} {plan.precision}; weights {plan.weights}",
        f"- batching: {plan.batching}, batch size {plan.batch_size}, target QPS {plan.target_qps:g}, "
        f"execution {plan.cfg.execution}",
    ]
    if result.samples_per_second is not None:
        lines.append(
            f"- result: **{result.samples_per_second:,.1f} samples/s**, {'VALID' if result.valid else 'INVALID'}"
        )
    if result.latency_p90_ms is not None:
        lines.append(
            f"- result: **90th percentile latency {result.latency_p90_ms:.2f} ms**, "
            f"{'VALID' if result.valid else 'INVALID'}"
        )
    for reason in result.invalid_reasons:
        lines.append(f"  - INVALID because: {reason}")
    for advice in result.loadgen_recommendations:
        lines.append(f"  - LoadGen suggests: {advice}")
    if result.f1 is not None:
        lines.append(
            f"- accuracy: exact_match {result.exact_match:.3f}, f1 {result.f1:.3f} "
            f"({'PASS' if result.accuracy_passed else 'FAIL'})"
        )
    if s.get("token_efficiency") is not None:
        lines.append(
            f"- {s['samples']:,} samples in {s['batches']:,} batches, {s['rows']:,} rows; token "
            f"efficiency {s['token_efficiency']:.1%} (padding every sample to {SEQ_LEN}: "
            f"{s['padded_token_efficiency']:.1%}; {s['gain_over_padding']:.2f}x less work)"
        )
    if "sample_tokens" in s:
        toks = s["sample_tokens"]
        lines.append(f"- real tokens a sample: p50 {toks['p50']}, p90 {toks['p90']}, longest {toks['max']}")
    if "sut_latency_ms" in s:
        lat = s["sut_latency_ms"]
        lines.append(
            f"- latency in the SUT (issue to answer): p50 {lat['p50']:.1f} ms, "
            f"p90 {lat['p90']:.1f} ms, p99 {lat['p99']:.1f} ms"
        )
    lines.append("")
    for title, name in plots:
        lines += [f"## {title}", "", f"![{title}]({name})", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class _Figures:
    """The run's PNGs: each drawn on a fresh axis, labelled, saved under ``run_dir`` and listed
    (report heading, file name) in ``made``."""

    def __init__(self, run_dir: Path, simulated: bool) -> None:
        import matplotlib

        matplotlib.use("Agg")
        self.run_dir = run_dir
        self.made: list[tuple[str, str]] = []
        self.tag = " (SIMULATED accelerator)" if simulated else ""

    @contextmanager
    def figure(self, heading: str, name: str, xlabel: str, ylabel: str, title: str | None = None) -> Iterator[Any]:
        """A fresh axis for the plot ``name``, titled ``title`` (the report's heading unless given)."""
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.2))
        try:
            yield ax
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(f"{title or heading}{self.tag}", fontsize=10)
            fig.tight_layout()
            fig.savefig(self.run_dir / name, dpi=90)
            self.made.append((heading, name))
        finally:
            plt.close(fig)


def _plots(run_dir: Path, stats: Any, scenario: Scenario, simulated: bool) -> list[tuple[str, str]]:
    if not stats.batch_samples:
        return []
    from matplotlib.ticker import MaxNLocator

    figures = _Figures(run_dir, simulated)
    per_row = np.concatenate(stats.batch_per_row) if stats.batch_per_row else np.zeros(0, np.int8)
    if per_row.size:
        counts = np.bincount(per_row, minlength=int(per_row.max()) + 1)[1:]
        with figures.figure(
            "Packing histogram", "packing.png", "sequences per row", "rows", title="Packing: sequences per row"
        ) as ax:
            ax.bar(np.arange(1, counts.size + 1), counts)
    lat = np.concatenate(stats.latencies) * 1e3 if stats.latencies else np.zeros(0)
    if lat.size:
        with figures.figure("Latency distribution", "latency.png", "latency in the SUT (ms)", "samples") as ax:
            ax.hist(lat, bins=50)
            if scenario == Scenario.SERVER:  # the bound is the Server scenario's only
                bound = f"{SERVER_LATENCY_BOUND_MS:g} ms (Server bound)"
                ax.axvline(SERVER_LATENCY_BOUND_MS, color="red", linestyle="--", label=bound)
                ax.legend()
    if lat.size and scenario == Scenario.SINGLE_STREAM:  # one sample a query: its latency against its length
        with figures.figure(
            "Latency against length", "latency_by_length.png", "real tokens of the sample", "latency in the SUT (ms)"
        ) as ax:
            ax.scatter(np.concatenate(stats.sample_tokens), lat, s=4, alpha=0.5)
    busy = np.asarray(stats.batch_busy)
    ran = busy > 0
    size = np.asarray(stats.batch_samples)[ran]  # of the batches the device ran
    sizes = np.unique(size)
    if sizes.size > 1:  # batches of several sizes (Server, a run's tail): the device's rate by size
        rate = size / busy[ran]
        axes = ("samples in the batch", "samples/s while the device ran it")
        with figures.figure("Throughput against batch size", "batch_throughput.png", *axes) as ax:
            ax.scatter(size, rate, s=6, alpha=0.4, label="one batch")
            ax.plot(sizes, [np.median(rate[size == s]) for s in sizes], color="C1", label="median")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend()
    done = np.asarray(stats.batch_done)
    if done.size > 1:
        order = np.argsort(done)
        t = done[order]
        n = np.cumsum(np.asarray(stats.batch_samples)[order])
        title = f"Throughput (mean {n[-1] / max(t[-1], 1e-9):,.0f} samples/s)"
        with figures.figure(
            "Throughput", "throughput.png", "seconds since the SUT started", "samples answered", title
        ) as ax:
            ax.plot(t, n)
    return figures.made
