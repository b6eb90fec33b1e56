"""A slow, line-by-line pure-Python replica of the MLPerf reference SQuAD path.

It follows ``create_squad_data.py`` and ``accuracy-squad.py`` step by step (per word, per
candidate), with no caching and no numpy in the logic, so tests can check the fast path
against it and the benchmark can time the fast path against it. Not for production use.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from packed_bert.squad.evaluate import exact_match_score, f1_score
from packed_bert.squad.tokenization import basic_tokenize_exact, wordpiece


@dataclass
class RefExample:
    qas_id: str
    question: str
    doc_tokens: list[str]
    answers: list[str]


@dataclass
class RefFeature:
    example_index: int
    tokens: list[str]
    input_ids: list[int]
    segment_ids: list[int]
    length: int
    token_to_orig_map: dict[int, int] = field(default_factory=dict)
    token_is_max_context: dict[int, bool] = field(default_factory=dict)


def full_tokenize(text: str, vocab: dict[str, int]) -> list[str]:
    return [p for t in basic_tokenize_exact(text) for p in wordpiece(t, vocab)]


def get_final_text(pred_text: str, orig_text: str) -> str:
    """Reference ``get_final_text`` with do_lower_case=True."""

    def strip_spaces(text: str) -> tuple[str, dict[int, int]]:
        chars: list[str] = []
        ns_to_s: dict[int, int] = {}
        for i, c in enumerate(text):
            if c == " ":
                continue
            ns_to_s[len(chars)] = i
            chars.append(c)
        return "".join(chars), ns_to_s

    tok_text = " ".join(basic_tokenize_exact(orig_text))
    start = tok_text.find(pred_text)
    if start == -1:
        return orig_text
    end = start + len(pred_text) - 1
    orig_ns, orig_ns_to_s = strip_spaces(orig_text)
    tok_ns, tok_ns_to_s = strip_spaces(tok_text)
    if len(orig_ns) != len(tok_ns):
        return orig_text
    tok_s_to_ns = {s: ns for ns, s in tok_ns_to_s.items()}
    a = orig_ns_to_s.get(tok_s_to_ns[start]) if start in tok_s_to_ns else None
    if a is None:
        return orig_text
    b = orig_ns_to_s.get(tok_s_to_ns[end]) if end in tok_s_to_ns else None
    if b is None:
        return orig_text
    return orig_text[a : b + 1]


def _is_ws(c: str) -> bool:
    return c in (" ", "\t", "\r", "\n") or ord(c) == 0x202F


def read_examples(path: Path) -> list[RefExample]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    out: list[RefExample] = []
    for article in data:
        for par in article["paragraphs"]:
            doc_tokens: list[str] = []
            prev_ws = True
            for c in par["context"]:
                if _is_ws(c):
                    prev_ws = True
                else:
                    if prev_ws:
                        doc_tokens.append(c)
                    else:
                        doc_tokens[-1] += c
                    prev_ws = False
            for qa in par["qas"]:
                out.append(RefExample(qa["id"], qa["question"], doc_tokens, [a["text"] for a in qa["answers"]]))
    return out


def _check_is_max_context(spans: list[tuple[int, int]], cur: int, position: int) -> bool:
    best_score = None
    best = None
    for i, (start, length) in enumerate(spans):
        end = start + length - 1
        if position < start or position > end:
            continue
        score = min(position - start, end - position) + 0.01 * length
        if best_score is None or score > best_score:
            best_score = score
            best = i
    return cur == best


def convert_examples(
    examples: list[RefExample],
    vocab: dict[str, int],
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
) -> list[RefFeature]:
    feats: list[RefFeature] = []
    for ex_i, ex in enumerate(examples):
        query = full_tokenize(ex.question, vocab)[:max_query_length]
        tok_to_orig: list[int] = []
        all_doc: list[str] = []
        for i, word in enumerate(ex.doc_tokens):
            for sub in full_tokenize(word, vocab):
                tok_to_orig.append(i)
                all_doc.append(sub)
        max_doc = max_seq_length - len(query) - 3
        spans: list[tuple[int, int]] = []
        start = 0
        while start < len(all_doc):
            length = min(len(all_doc) - start, max_doc)
            spans.append((start, length))
            if start + length == len(all_doc):
                break
            start += min(length, doc_stride)
        for si, (s, ln) in enumerate(spans):
            f = RefFeature(ex_i, [], [], [], 0)
            f.tokens = ["[CLS]", *query, "[SEP]"]
            f.segment_ids = [0] * len(f.tokens)
            for i in range(ln):
                pos = s + i
                f.token_to_orig_map[len(f.tokens)] = tok_to_orig[pos]
                f.token_is_max_context[len(f.tokens)] = _check_is_max_context(spans, si, pos)
                f.tokens.append(all_doc[pos])
                f.segment_ids.append(1)
            f.tokens.append("[SEP]")
            f.segment_ids.append(1)
            f.input_ids = [vocab[t] for t in f.tokens]
            f.length = len(f.input_ids)
            while len(f.input_ids) < max_seq_length:
                f.input_ids.append(0)
                f.segment_ids.append(0)
            feats.append(f)
    return feats


def _best_indexes(logits: list[float], n: int) -> list[int]:
    ranked = sorted(enumerate(logits), key=lambda x: x[1], reverse=True)
    return [i for i, _ in ranked[:n]]


def load_log(path: Path, dtype: str = "float32") -> dict[int, tuple[list[float], list[float]]]:
    results: dict[int, tuple[list[float], list[float]]] = {}
    for p in json.loads(Path(path).read_text()):
        logits = np.frombuffer(bytes.fromhex(p["data"]), np.dtype(dtype)).reshape(-1, 2)
        start = np.ones(384) * -10000.0
        end = np.ones(384) * -10000.0
        start[: logits.shape[0]] = logits[:, 0]
        end[: logits.shape[0]] = logits[:, 1]
        results[p["qsl_idx"]] = (start.tolist(), end.tolist())
    return results


def predictions(
    examples: list[RefExample],
    feats: list[RefFeature],
    results: dict[int, tuple[list[float], list[float]]],
    n_best: int = 20,
    max_answer_length: int = 30,
) -> dict[int, str]:
    """Prediction per example that has at least one result (the reference's n-best first)."""
    by_example: dict[int, list[int]] = {}
    for fi, f in enumerate(feats):
        by_example.setdefault(f.example_index, []).append(fi)
    out: dict[int, str] = {}
    for ex_i, ex in enumerate(examples):
        prelim: list[tuple[int, int, int, float, float]] = []
        answered = False
        for fi in by_example.get(ex_i, []):
            if fi not in results:
                continue
            answered = True
            f = feats[fi]
            start_logits, end_logits = results[fi]
            for s in _best_indexes(start_logits, n_best):
                for e in _best_indexes(end_logits, n_best):
                    if s >= len(f.tokens) or e >= len(f.tokens):
                        continue
                    if s not in f.token_to_orig_map or e not in f.token_to_orig_map:
                        continue
                    if not f.token_is_max_context.get(s, False):
                        continue
                    if e < s or e - s + 1 > max_answer_length:
                        continue
                    prelim.append((fi, s, e, start_logits[s], end_logits[e]))
        if not answered:
            continue
        prelim = sorted(prelim, key=lambda x: x[3] + x[4], reverse=True)
        if not prelim:
            out[ex_i] = "empty"
            continue
        fi, s, e, _, _ = prelim[0]
        f = feats[fi]
        tok_text = " ".join(f.tokens[s : e + 1]).replace(" ##", "").replace("##", "")
        tok_text = " ".join(tok_text.strip().split())
        orig_text = " ".join(ex.doc_tokens[f.token_to_orig_map[s] : f.token_to_orig_map[e] + 1])
        out[ex_i] = get_final_text(tok_text, orig_text)
    return out


def evaluate(examples: list[RefExample], preds: dict[int, str]) -> dict[str, float]:
    """Official v1.1 EM/F1 over the examples that have a prediction."""
    em = f1 = total = 0.0
    for ex_i, ex in enumerate(examples):
        if ex_i not in preds:
            continue
        total += 1
        em += max(exact_match_score(preds[ex_i], g) for g in ex.answers)
        f1 += max(f1_score(preds[ex_i], g) for g in ex.answers)
    return {"exact_match": 100.0 * em / total, "f1": 100.0 * f1 / total}
