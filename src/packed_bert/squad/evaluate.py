"""The official SQuAD v1.1 evaluation (``evaluate-v1.1.py``): EM and F1."""

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation and articles, collapse whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def f1_score(prediction: str, truth: str) -> float:
    pred = normalize_answer(prediction).split()
    gold = normalize_answer(truth).split()
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0
    return _f1(same, len(pred), len(gold))


def _f1(same: int, n_pred: int, n_gold: int) -> float:
    precision = 1.0 * same / n_pred
    recall = 1.0 * same / n_gold
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction: str, truth: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(truth)


def evaluate(
    qas_ids: Sequence[str],
    answers: Sequence[Sequence[str]],
    predictions: Mapping[str, str],
    questions: Sequence[int] | None = None,
) -> tuple[float, float, int]:
    """(exact_match, f1, total) in percent over ``questions`` (indices; default: all).

    Sums run in dataset order with plain float addition, as the official script does; a
    question without a prediction scores 0 but still counts.
    """
    gold_cache: dict[str, tuple[str, Counter[str], int]] = {}
    order = range(len(qas_ids)) if questions is None else sorted(questions)
    em: float = 0
    f1: float = 0
    total = 0
    for q in order:
        total += 1
        qid = qas_ids[q]
        if qid not in predictions:
            continue
        pred = normalize_answer(predictions[qid])
        pred_counts = Counter(pred.split())
        pred_len = sum(pred_counts.values())
        best_em = False
        best_f1: float = 0
        for k, g in enumerate(answers[q]):
            if g not in gold_cache:
                norm = normalize_answer(g)
                gold_cache[g] = (norm, Counter(norm.split()), len(norm.split()))
            norm, counts, n = gold_cache[g]
            best_em = best_em or pred == norm
            same = sum((pred_counts & counts).values())
            score = 0 if same == 0 else _f1(same, pred_len, n)
            best_f1 = score if k == 0 else max(best_f1, score)
        em += best_em
        f1 += best_f1
    if total == 0:
        return 0.0, 0.0, 0
    return 100.0 * em / total, 100.0 * f1 / total, total
