"""Scoring MLPerf accuracy logs or in-memory responses, as the official MLPerf SQuAD script.

A log that answers only some features (a TEST01 sample) is scored on the questions that have
at least one answered feature; the official script would count the others as wrong.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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
    """Score responses keyed by qsl_idx: raw payload bytes of ``dtype`` or arrays [tokens, 2]."""
    if not responses:
        raise UserError(f"{source}: holds no responses (a performance run logs none); score an accuracy run's "
                        "mlperf_log_accuracy.json")
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


def score_accuracy_log(
    log_path: Path, features: SquadFeatures | None = None, dtype: str = "float32"
) -> AccuracyResult:
    """Score an MLPerf ``mlperf_log_accuracy.json`` (features default to SQuAD dev)."""
    payloads = read_payloads(Path(log_path), dtype)
    if features is None:
        features = load_features()
    return score_logits(payloads, features, dtype, source=str(log_path))

