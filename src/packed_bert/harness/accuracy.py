"""An accuracy run's score: SQuAD EM/F1 of its accuracy log against the model's F1 target,
as the text of ``accuracy.txt`` (last line ``{"exact_match": X, "f1": Y}``, as MLPerf's script)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packed_bert.terms import Model, Questions

NOT_SCORED = "not scored: the run's features carry no SQuAD questions and answers\n"


@dataclass(frozen=True)
class RunAccuracy:
    exact_match: float
    f1: float
    target_f1: float
    passed: bool
    scope: str  # which questions were scored
    f1_by_split: dict[str, float] = field(default_factory=dict)  # a whole-set run: F1 of each article split
    split_lines: str = ""  # what accuracy.txt says of the splits

    def text(self, model: Model) -> str:
        return (
            f"model: {model}; target F1 >= {self.target_f1}\n"
            f"scored: {self.scope}\n"
            + self.split_lines
            + f"result: {'PASS' if self.passed else 'FAIL'}\n"
            + json.dumps({"exact_match": self.exact_match, "f1": self.f1})
            + "\n"
        )


def score_log(log: Path, model: Model, features: Any, questions: Questions | None = None) -> RunAccuracy | None:
    """Score an accuracy log with the SQuAD ``features`` the run used (those of ``questions``,
    renumbered, for a one-split run); ``None`` for features that carry no SQuAD text to score
    against (synthetic ones). A whole-set run is also scored on each article split."""
    if getattr(features, "squad", None) is None:
        return None
    from packed_bert.squad.scoring import score_log_by_split, split_lines

    scores = score_log_by_split(log, features, str(questions or Questions.ALL))
    acc = next(iter(scores.values()))
    target = Model(model).target_f1
    scope = f"{acc.questions_scored} of {acc.questions_total} questions ({acc.features_scored} features)"
    return RunAccuracy(
        acc.exact_match,
        acc.f1,
        target,
        acc.f1 >= target,
        scope,
        {name: s.f1 for name, s in scores.items()},
        split_lines(scores),
    )
