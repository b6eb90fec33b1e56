"""Scoring MLPerf accuracy logs or in-memory responses, as the official MLPerf SQuAD script.

A log that answers only some features (a TEST01 sample) is scored on the questions that have
at least one answered feature; the official script would count the others as wrong.
"""

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from packed_bert.errors import UserError
from packed_bert.squad.accuracy_log import decode_payloads, read_payloads
from packed_bert.squad.evaluate import evaluate
from packed_bert.squad.features import SquadFeatures, load_features
from packed_bert.squad.postprocess import predict


@dataclass(frozen=True)
class AccuracyResult:
    exact_match: float
    f1: float
    questions_scored: int
    questions_total: int
    features_scored: int

    def as_dict(self) -> dict[str, float]:
        """The line the official script prints: ``{"exact_match": X, "f1": Y}``."""
        return {"exact_match": self.exact_match, "f1": self.f1}


def score_logits(
    responses: Mapping[int, bytes | npt.ArrayLike],
    features: SquadFeatures,
    dtype: str = "float32",
    source: str = "responses",
) -> AccuracyResult:
    """Score responses keyed by qsl_idx: raw payload bytes of ``dtype`` or arrays [tokens, 2]
    (``score_by_split`` scores a split of the questions)."""
    _check_any(responses, source)
    logits = decode_payloads(responses, features.num_features, dtype, source)
    by_example = predict(features, logits)
    squad = features.squad
    predictions = {squad.qas_ids[e]: text for e, text in by_example.items()}
    em, f1, total = evaluate(squad.qas_ids, squad.answers, predictions, list(by_example))
    return AccuracyResult(
        exact_match=em,
        f1=f1,
        questions_scored=total,
        questions_total=features.num_examples,
        features_scored=int(logits.qsl_idx.size),
    )


def _check_any(responses: Mapping[int, object], source: str) -> None:
    if not responses:
        raise UserError(
            f"{source}: holds no responses (a performance run logs none); score an accuracy run's "
            "mlperf_log_accuracy.json"
        )


def score_accuracy_log(log_path: Path, features: SquadFeatures | None = None, dtype: str = "float32") -> AccuracyResult:
    """Score an MLPerf ``mlperf_log_accuracy.json`` (features default to SQuAD dev)."""
    payloads = read_payloads(Path(log_path), dtype)
    if features is None:
        features = load_features()
    return score_logits(payloads, features, dtype, source=str(log_path))


def score_by_split(
    responses: Mapping[int, bytes | npt.ArrayLike],
    features: SquadFeatures,
    splits: Collection[str] = ("all",),
    dtype: str = "float32",
    source: str = "responses",
) -> dict[str, AccuracyResult]:
    """``score_logits`` over each question split (``splits.SPLITS``), predicting only once."""
    from packed_bert.squad.splits import split_questions

    _check_any(responses, source)
    logits = decode_payloads(responses, features.num_features, dtype, source)
    by_example = predict(features, logits)
    squad = features.squad
    predictions = {squad.qas_ids[e]: text for e, text in by_example.items()}
    out: dict[str, AccuracyResult] = {}
    for split in splits:
        wanted = set(split_questions(squad, split).tolist())
        scored = sorted(wanted.intersection(by_example))
        em, f1, total = evaluate(squad.qas_ids, squad.answers, predictions, scored)
        answered = np.isin(features.example_index[logits.qsl_idx], list(wanted))
        out[split] = AccuracyResult(em, f1, total, len(wanted), int(answered.sum()))
    return out


def score_log_by_split(
    log_path: Path, features: SquadFeatures, questions: str = "all", dtype: str = "float32"
) -> dict[str, AccuracyResult]:
    """Score a run's accuracy log: first the run's own questions (``questions``, a split whose
    features the run used, renumbered), then, for a whole-dev run, each article split."""
    from packed_bert.squad.splits import SPLITS, subset_features

    payloads = read_payloads(Path(log_path), dtype)
    feats = subset_features(features, questions)
    if questions != "all":
        return {questions: score_logits(payloads, feats, dtype, str(log_path))}
    return score_by_split(payloads, feats, SPLITS, dtype, str(log_path))


def split_lines(scores: Mapping[str, AccuracyResult]) -> str:
    """For a one-split run over a subset, which questions it ran; else one line per split after
    the first: ``f1 on <split> (N questions): X, exact_match Y``."""
    from packed_bert.squad.splits import DESCRIPTIONS

    if len(scores) == 1 and next(iter(scores)) != "all":
        return f"questions: {DESCRIPTIONS[next(iter(scores))]} only\n"
    return "".join(
        f"f1 on {DESCRIPTIONS[name]} ({s.questions_scored} questions): {s.f1:.3f}, exact_match {s.exact_match:.3f}\n"
        for name, s in list(scores.items())[1:]
    )
