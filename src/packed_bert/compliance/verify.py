"""Verification of the audit runs, with MLPerf's pass rules and output files.

- TEST01 accuracy: every response logged by the audit run must equal the accuracy run's response
  for the same ``qsl_idx`` (``verify_accuracy.txt``). Where some differ, the same subset is scored
  from both logs (``baseline_accuracy.txt``, ``compliance_accuracy.txt``) and passes when
  ``|1 - baseline/compliance| * 100`` is at most 1 (bert-99) or 0.1 (bert-99.9).
- TEST01 performance: within 10% of the performance run (20% for SingleStream at <= 200 us).
- TEST05 performance: Offline/Server no more than 5% below; streams no more than 5% above.
Invalid (LoadGen INVALID) reference or test runs fail, as in MLPerf's scripts.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from packed_bert.results.loadgen_logs import (
    LoadGenSummary,
    read_accuracy_log,
    read_summary,
    write_accuracy_log,
)

# A scorer takes an accuracy log and returns (exact_match, f1) over the questions it holds.
Scorer = Callable[[Path], tuple[float, float]]

F1_DELTA_PERCENT = {"bert-99": 1.0, "bert-99.9": 0.1}


@dataclass
class AccuracyCheck:
    num_acc_log_entries: int = 0
    num_acc_log_duplicate_keys: int = 0
    num_acc_log_data_mismatch: int = 0
    num_perf_log_entries: int = 0
    num_perf_log_qsl_idx_match: int = 0
    num_perf_log_data_mismatch: int = 0
    num_missing_qsl_idxs: int = 0
    mismatched_qsl_idx: list[int] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.num_perf_log_data_mismatch == 0 and self.num_perf_log_qsl_idx_match > 0

    def text(self) -> str:
        counts = [
            f"{name} = {getattr(self, name)}"
            for name in (
                "num_acc_log_entries",
                "num_acc_log_duplicate_keys",
                "num_acc_log_data_mismatch",
                "num_perf_log_entries",
                "num_perf_log_qsl_idx_match",
                "num_perf_log_data_mismatch",
                "num_missing_qsl_idxs",
            )
        ]
        verdict = "TEST PASS" if self.passed else "TEST FAIL"
        return (
            "TEST01 accuracy: audit-run responses against the accuracy run, by qsl_idx\n"
            + "\n".join(counts)
            + f"\n{verdict}\n"
        )


def compare_accuracy_logs(reference: Path, test: Path) -> AccuracyCheck:
    """Compare the audit run's logged responses with the accuracy run's (whole payloads)."""
    out = AccuracyCheck()
    by_idx: dict[int, str] = {}
    ref = read_accuracy_log(reference)
    out.num_acc_log_entries = len(ref)
    for entry in ref:
        idx, data = entry.qsl_idx, entry.data.upper()
        if idx in by_idx:
            out.num_acc_log_duplicate_keys += 1
            out.num_acc_log_data_mismatch += by_idx[idx] != data
        else:
            by_idx[idx] = data
    perf = read_accuracy_log(test)
    out.num_perf_log_entries = len(perf)
    for entry in perf:
        idx, data = entry.qsl_idx, entry.data.upper()
        if idx not in by_idx:
            out.num_missing_qsl_idxs += 1
            continue
        out.num_perf_log_qsl_idx_match += 1
        if by_idx[idx] != data:
            out.num_perf_log_data_mismatch += 1
            out.mismatched_qsl_idx.append(idx)
    return out


@dataclass
class FallbackCheck:
    baseline_f1: float
    compliance_f1: float
    delta_percent: float
    allowed_percent: float

    @property
    def passed(self) -> bool:
        return self.baseline_f1 > 0 and self.compliance_f1 > 0 and self.delta_percent <= self.allowed_percent


def accuracy_line(exact_match: float, f1: float) -> str:
    return json.dumps({"exact_match": exact_match, "f1": f1})


def score_subsets(reference: Path, test: Path, out_dir: Path, model: str, scorer: Scorer) -> FallbackCheck:
    """Score the audit run's logged samples and the same samples from the accuracy run.

    Writes ``baseline_accuracy.txt`` and ``compliance_accuracy.txt`` (each ending in the
    ``{"exact_match": X, "f1": Y}`` line) into ``out_dir``.
    """
    test_entries = read_accuracy_log(test)
    wanted = {e.qsl_idx for e in test_entries}
    seen: set[int] = set()
    baseline_entries = []
    for entry in read_accuracy_log(reference):
        idx = entry.qsl_idx
        if idx in wanted and idx not in seen:
            seen.add(idx)
            baseline_entries.append(entry)
    out_dir.mkdir(parents=True, exist_ok=True)
    baseline_log = out_dir / "baseline_mlperf_log_accuracy.json"
    write_accuracy_log(baseline_log, baseline_entries)
    b_em, b_f1 = scorer(baseline_log)
    c_em, c_f1 = scorer(test)
    baseline_log.unlink()
    n = len(seen)
    (out_dir / "baseline_accuracy.txt").write_text(
        f"accuracy run, the {n} samples the audit run logged\n{accuracy_line(b_em, b_f1)}\n"
    )
    (out_dir / "compliance_accuracy.txt").write_text(
        f"TEST01 audit run, {len(test_entries)} logged responses\n{accuracy_line(c_em, c_f1)}\n"
    )
    delta = abs(1 - b_f1 / c_f1) * 100 if c_f1 else float("inf")
    return FallbackCheck(b_f1, c_f1, delta, F1_DELTA_PERCENT.get(model, 1.0))


@dataclass
class PerformanceCheck:
    test: str
    reference: LoadGenSummary
    audit: LoadGenSummary
    passed: bool
    lines: list[str]

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def compare_performance(reference: Path, test: Path, which: str) -> PerformanceCheck:
    """``which`` is TEST01 (two-sided 10%) or TEST05 (one-sided 5%)."""
    ref, aud = read_summary(reference), read_summary(test)
    lines = [f"{which} performance: audit run against the performance run"]
    for name, s in (("reference", ref), ("test", aud)):
        if s.errors:
            lines.append(f"WARNING: {s.errors} ERROR reported in {name} results")

    def done(ok: bool, why: str = "") -> PerformanceCheck:
        lines.append("TEST PASS" if ok else f"TEST FAIL: {why}")
        return PerformanceCheck(which, ref, aud, ok, lines)

    if ref.valid is False:
        return done(False, "Reference results are invalid")
    if aud.valid is False:
        return done(False, "Test results are invalid")
    if ref.scenario != aud.scenario:
        return done(False, f"scenarios differ (reference {ref.scenario}, test {aud.scenario})")
    if ref.scenario == "Server" and ref.target_latency_ns != aud.target_latency_ns:
        return done(False, "Server target latency mismatch")
    if ref.score is None or aud.score is None:
        return done(False, "score missing from a summary")
    lines += [f"reference score = {ref.score:g}", f"test score = {aud.score:g}"]
    stream = "Stream" in ref.scenario
    threshold = 0.10 if which == "TEST01" else 0.05
    if (ref.scenario == "SingleStream" and ref.score <= 200_000) or (
        ref.scenario == "MultiStream" and ref.score <= 1_600_000
    ):
        threshold = 0.20
    if which == "TEST01":
        ok = ref.score * (1 - threshold) < aud.score < ref.score * (1 + threshold)
    elif stream:
        ok = aud.score < ref.score * (1 + threshold)
    else:
        ok = aud.score > ref.score * (1 - threshold)
    return done(ok, "Test score invalid")


def default_scorer(dataset: Path | None = None, vocab: Path | None = None, questions: str | None = None) -> Scorer:
    """SQuAD EM/F1 of an accuracy log over the questions it covers (features of ``dataset``;
    ``questions``: the split the runs used, whose features they numbered from 0)."""
    from packed_bert.squad.features import load_features
    from packed_bert.squad.scoring import score_accuracy_log
    from packed_bert.squad.splits import subset_features

    features: list[object] = []

    def score(log: Path) -> tuple[float, float]:
        if not features:
            features.append(subset_features(load_features(dataset, vocab), questions or "all"))
        result = score_accuracy_log(log, features[0])  # type: ignore[arg-type]
        return float(result.exact_match), float(result.f1)

    return score
