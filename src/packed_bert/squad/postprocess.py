"""From logits to answer texts, exactly as the reference ``write_predictions`` does it.

The reference ranks, per feature, the top-20 start and end positions, keeps the valid pairs
(inside the context, start with max context, end >= start, at most 30 tokens), and takes the
best score over all the example's features, earlier candidates winning ties. The first of its
n-best list is the prediction, so only that one is computed here, with numpy.
"""

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from packed_bert.squad.accuracy_log import FeatureLogits
from packed_bert.squad.features import SquadFeatures
from packed_bert.squad.tokenization import basic_tokenize

N_BEST = 20
MAX_ANSWER_LENGTH = 30
NO_ANSWER = "empty"


@dataclass
class BestSpans:
    """Per answered feature (rows of :class:`FeatureLogits`): its best valid span."""

    score: npt.NDArray[np.float64]
    """[M] start + end logit of the best span; -inf where no span is valid."""
    start: npt.NDArray[np.int64]
    end: npt.NDArray[np.int64]
    valid: npt.NDArray[np.bool_]


def top_indexes(logits: npt.NDArray[np.float64], n: int = N_BEST) -> npt.NDArray[np.int64]:
    """Per row the ``n`` largest positions, descending, lower index first among equals.

    Rows whose n-th largest value is not tied are ranked from a partition (only n values
    sorted); rows with ties at that value take the full stable sort.
    """
    m, width = logits.shape
    if n >= width:
        return np.argsort(-logits, axis=1, kind="stable")
    kth = -np.partition(-logits, n - 1, axis=1)[:, n - 1 : n]
    above = logits >= kth
    simple = above.sum(axis=1) == n
    out = np.empty((m, n), dtype=np.int64)
    if simple.any():
        pos = np.nonzero(above[simple])[1].reshape(-1, n)  # ascending index per row
        vals = np.take_along_axis(logits[simple], pos, axis=1)
        out[simple] = np.take_along_axis(pos, np.argsort(-vals, axis=1, kind="stable"), axis=1)
    if not simple.all():
        rest = ~simple
        out[rest] = np.argsort(-logits[rest], axis=1, kind="stable")[:, :n]
    return out


def best_spans(features: SquadFeatures, logits: FeatureLogits) -> BestSpans:
    """The best span of each answered feature, in the reference's candidate order."""
    rows = logits.qsl_idx
    m = rows.size
    context = features.token_to_orig[rows] >= 0
    start_ok = context & features.max_context[rows]
    ts = top_indexes(logits.start)
    te = top_indexes(logits.end)
    sv = np.take_along_axis(logits.start, ts, axis=1)
    ev = np.take_along_axis(logits.end, te, axis=1)
    vs = np.take_along_axis(start_ok, ts, axis=1)
    ve = np.take_along_axis(context, te, axis=1)
    span = te[:, None, :] - ts[:, :, None]
    ok = vs[:, :, None] & ve[:, None, :] & (span >= 0) & (span < MAX_ANSWER_LENGTH)
    score = np.where(ok, sv[:, :, None] + ev[:, None, :], -np.inf).reshape(m, -1)
    ok = ok.reshape(m, -1)
    pick = np.argmax(score, axis=1)
    # A valid pair can only score -inf with -inf logits; then the first valid pair is it.
    lost = ~ok[np.arange(m), pick] & ok.any(axis=1)
    pick[lost] = np.argmax(ok[lost], axis=1)
    r = np.arange(m)
    return BestSpans(
        score=score[r, pick],
        start=ts[r, pick // N_BEST],
        end=te[r, pick % N_BEST],
        valid=ok[r, pick],
    )


def predict(features: SquadFeatures, logits: FeatureLogits) -> dict[int, str]:
    """Predicted answer text per example that has at least one answered feature."""
    best = best_spans(features, logits)
    ex = features.example_index[logits.qsl_idx]
    rows = np.arange(ex.size)
    score = np.where(best.valid, best.score, -np.inf)
    order = np.lexsort((rows, ~best.valid, -score, ex))
    first = np.ones(order.size, dtype=bool)
    first[1:] = ex[order][1:] != ex[order][:-1]
    out: dict[int, str] = {}
    for r in order[first].tolist():
        e = int(ex[r])
        if not best.valid[r]:
            out[e] = NO_ANSWER
            continue
        out[e] = span_text(features, int(logits.qsl_idx[r]), int(best.start[r]), int(best.end[r]))
    return out


def span_text(features: SquadFeatures, feature: int, start: int, end: int) -> str:
    """The reference's final text of tokens ``start..end`` of ``feature``."""
    tok_tokens = [features.vocab_tokens[t] for t in features.input_ids[feature, start : end + 1].tolist()]
    tok_text = " ".join(tok_tokens).replace(" ##", "").replace("##", "")
    tok_text = " ".join(tok_text.strip().split())
    words = features.doc_words(feature)
    a = int(features.token_to_orig[feature, start])
    b = int(features.token_to_orig[feature, end])
    orig_text = " ".join(words[a : b + 1])
    return final_text(tok_text, orig_text)


def _strip_spaces(text: str) -> tuple[str, list[int]]:
    """``text`` without ' ' and, per kept char, its index in ``text``."""
    kept = [i for i, c in enumerate(text) if c != " "]
    return "".join(text[i] for i in kept), kept


def final_text(pred_text: str, orig_text: str) -> str:
    """Reference ``get_final_text`` (lower case): project ``pred_text`` back onto ``orig_text``."""
    tok_text = " ".join(basic_tokenize(orig_text))
    start = tok_text.find(pred_text)
    if start == -1:
        return orig_text
    end = start + len(pred_text) - 1
    orig_ns, orig_ns_to_s = _strip_spaces(orig_text)
    tok_ns, tok_ns_to_s = _strip_spaces(tok_text)
    if len(orig_ns) != len(tok_ns):
        return orig_text
    tok_s_to_ns = {s: ns for ns, s in enumerate(tok_ns_to_s)}
    if start not in tok_s_to_ns or end not in tok_s_to_ns:
        return orig_text
    # Equal lengths, so every ns index maps back into orig_text.
    a = orig_ns_to_s[tok_s_to_ns[start]]
    b = orig_ns_to_s[tok_s_to_ns[end]]
    return orig_text[a : b + 1]
