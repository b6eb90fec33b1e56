"""A power run's ``report.md`` and its plot: the analyzer's watts through the ranging and the
testing run, LoadGen's ``power_begin``..``power_end`` window marked, and what the analyzer said it
is (the reply to PTDaemon's ``Identify`` that power-dev's server records in ``power/server.json``;
an analyzer that calls itself simulated makes every line of the report say SIMULATED)."""

from __future__ import annotations

import json
from pathlib import Path

from packed_bert.power.analysis import PowerResult, power_window, read_spl
from packed_bert.results.loadgen_logs import DETAIL

PLOT = "power.png"


def analyzer_identity(power_dir: Path) -> str | None:
    """The analyzer's answer to ``Identify`` in ``power_dir/server.json``, if recorded."""
    try:
        messages = json.loads((power_dir / "server.json").read_text()).get("ptd_messages", [])
    except (OSError, ValueError, AttributeError):
        return None
    replies = [m.get("reply") for m in messages if isinstance(m, dict) and m.get("cmd") == "Identify"]
    return str(replies[0]) if replies and replies[0] else None


def simulated(identity: str | None) -> bool:
    return identity is not None and "SIMULATED" in identity.upper()


def _plot(run_dir: Path, result: PowerResult, tag: str) -> bool:
    """Watts against seconds since each run's ``power_begin``; False when no phase has samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    drawn = False
    try:
        for phase, label in (("ranging", "ranging run"), ("run_1", "testing run")):
            spl, detail = run_dir / phase / "spl.txt", run_dir / phase / DETAIL
            if not (spl.is_file() and detail.is_file()):
                continue
            begin, _ = power_window(detail)
            samples = read_spl(spl)
            if samples:
                ax.plot([(t - begin).total_seconds() for t, _ in samples], [w for _, w in samples], label=label)
                drawn = True
        if not drawn:
            return False
        ax.axvspan(0, result.duration_s, color="tab:green", alpha=0.12, label="power_begin..power_end")
        ax.axhline(result.average_watts, color="gray", linestyle="--", linewidth=1, label="average in the window")
        ax.set_xlabel("seconds since the run's power_begin")
        ax.set_ylabel("watts")
        ax.set_title(f"Power through the runs{tag}", fontsize=10)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(run_dir / PLOT, dpi=90)
        return True
    finally:
        plt.close(fig)


def write_power_report(
    run_dir: Path, title: str, result: PowerResult, identity: str | None, valid: bool | None
) -> Path:
    sim = simulated(identity)
    tag = " (SIMULATED analyzer)" if sim else ""
    spj = "".join(f", **{m}**" for m in result.metrics())
    lines = [
        f"# {title} power{' — SIMULATED analyzer' if sim else ''}",
        "",
        f"- analyzer: {identity or 'not recorded'}{' — its watts are made up, not measured' if sim else ''}",
        f"- **{result.average_watts:.1f} W** average{tag} over {result.duration_s:.1f} s, "
        f"{result.samples_in_window} analyzer samples between power_begin {result.begin} and power_end {result.end}{spj}",
        f"- testing run: {'VALID' if valid else 'INVALID' if valid is False else 'validity not in its log'}"
        + (f", {result.samples_per_second:,.1f} samples/s" if result.samples_per_second else ""),
        "",
    ]
    if _plot(run_dir, result, tag):
        lines += ["## Power through the runs", "", f"![Power through the runs]({PLOT})", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
