"""An accuracy run's score: SQuAD EM/F1 of its accuracy log against the model's F1 target,
as the text of ``accuracy.txt`` (last line ``{"exact_match": X, "f1": Y}``, as MLPerf's script)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packed_bert.terms import Model

NOT_SCORED = "not scored: the run's features carry no SQuAD questions and answers\n"


@dataclass(frozen=True)
class RunAccuracy:
    exact_match: float
    f1: float
    target_f1: float
    passed: bool
    scope: str  # which questions were scored

    def text(self, model: Model) -> str:
        return (
            f"model: {model}; target F1 >= {self.target_f1}\n"
            f"scored: {self.scope}\n"
            f"result: {'PASS' if self.passed else 'FAIL'}\n"
            + json.dumps({"exact_match": self.exact_match, "f1": self.f1}) + "\n"
        )


def score_log(log: Path, model: Model, features: Any) -> RunAccuracy | None:
    """Score an accuracy log with the SQuAD ``features`` the run used; ``None`` for features
    that carry no SQuAD text to score against (synthetic ones)."""
    if getattr(features, "squad", None) is None:
        return None
    from packed_bert.squad.scoring import score_accuracy_log

    acc = score_accuracy_log(log, features)
    target = Model(model).target_f1
    scope = f"{acc.questions_scored} of {acc.questions_total} questions ({acc.features_scored} features)"
    return RunAccuracy(acc.exact_match, acc.f1, target, acc.f1 >= target, scope)
