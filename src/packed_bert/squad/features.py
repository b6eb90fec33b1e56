"""The MLPerf reference features of SQuAD dev (10,833 of them), made fast and cached.

Each paragraph is split into the reference's doc words; every distinct word is tokenized once
(``tokenizers`` for ASCII words, the exact Python replica for the rest), and the per-paragraph
token streams, windows and arrays are assembled with numpy.
"""

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from packed_bert.cache import atomic_write_bytes, cache_dir
from packed_bert.squad import dataset
from packed_bert.squad.dataset import Squad
from packed_bert.squad.tokenization import (
    SlowTokenizer,
    ascii_normalize,
    encode_texts,
    fast_tokenizer,
    is_fast_safe,
)
from packed_bert.terms import DOC_STRIDE, MAX_QUERY_LENGTH, SEQ_LEN

FORMAT_VERSION = 1
# In ASCII text the reference splits words only on these (other controls are dropped).
_ASCII_WS = re.compile("[ \t\n\r]+")
_ARRAYS = ("input_ids", "segment_ids", "lengths", "example_index", "token_to_orig", "max_context")


@dataclass
class SquadFeatures:
    """Features in reference order plus what postprocessing needs.

    ``token_to_orig[i, p]`` is the paragraph word index of token ``p`` of feature ``i`` (-1 where
    ``p`` is not a context token); ``max_context[i, p]`` is the reference's max-context flag.
    """

    input_ids: npt.NDArray[np.uint16]
    segment_ids: npt.NDArray[np.uint8]
    lengths: npt.NDArray[np.uint16]
    example_index: npt.NDArray[np.int32]
    token_to_orig: npt.NDArray[np.int16]
    max_context: npt.NDArray[np.bool_]
    squad: Squad
    vocab_tokens: list[str]
    provenance: dataset.Provenance | None = None  # the files they came from (sha256, official?)

    @property
    def num_features(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def num_examples(self) -> int:
        return len(self.squad.qas_ids)

    def tokens(self, i: int) -> list[str]:
        """The token strings of feature ``i`` (no padding), as the reference keeps them."""
        ids = self.input_ids[i, : int(self.lengths[i])]
        return [self.vocab_tokens[t] for t in ids.tolist()]

    def doc_words(self, i: int) -> list[str]:
        """The paragraph words of feature ``i``'s example."""
        ex = int(self.example_index[i])
        return self.squad.paragraph_words[self.squad.question_paragraph[ex]]


def _tokenize_words(words: list[str], vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of each word, as (flat ids, per-word counts); words in the given order."""
    fast_words = [w for w in words if is_fast_safe(w)]
    slow_words = [w for w in words if not is_fast_safe(w)]
    assert words == fast_words + slow_words
    flat_parts: list[np.ndarray] = []
    counts = np.zeros(len(words), dtype=np.int64)
    if fast_words:
        normalized = [ascii_normalize(w) for w in fast_words]
        enc = fast_tokenizer(vocab, normalize=False).encode(normalized, is_pretokenized=True, add_special_tokens=False)
        word_ids = np.array([-1 if w is None else w for w in enc.word_ids], dtype=np.int64)
        counts[: len(fast_words)] = np.bincount(word_ids, minlength=len(fast_words))
        flat_parts.append(np.asarray(enc.ids, dtype=np.int64))
    if slow_words:
        slow = encode_texts(slow_words, vocab)
        counts[len(fast_words) :] = [len(t) for t in slow]
        flat_parts.append(np.fromiter((i for t in slow for i in t), dtype=np.int64))
    flat = np.concatenate(flat_parts) if flat_parts else np.zeros(0, dtype=np.int64)
    return flat, counts


def _gather(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for each (s, c)."""
    total = int(counts.sum())
    offsets = np.cumsum(counts) - counts
    return np.repeat(starts - offsets, counts) + np.arange(total)


def build_features(squad: Squad, vocab: dict[str, int]) -> dict[str, np.ndarray]:
    """The reference features as arrays (see :class:`SquadFeatures` for their meaning)."""
    # Distinct words of paragraphs and (ASCII) questions, ASCII ones first: those go to the
    # fast tokenizer, the rest to the exact replica. Each is tokenized once.
    q_words = [[w for w in _ASCII_WS.split(q) if w] if is_fast_safe(q) else [] for q in squad.questions]
    uid: dict[str, int] = {}
    for words in (*squad.paragraph_words, *q_words):
        for w in words:
            if w not in uid:
                uid[w] = len(uid)
    distinct = sorted(uid, key=lambda w: (not is_fast_safe(w), uid[w]))
    uid = {w: i for i, w in enumerate(distinct)}
    flat, counts = _tokenize_words(distinct, vocab)
    word_start = np.cumsum(counts) - counts

    # Token streams of every paragraph, concatenated.
    words_per_par = np.array([len(w) for w in squad.paragraph_words], dtype=np.int64)
    all_words = np.fromiter(
        (uid[w] for ws in squad.paragraph_words for w in ws), dtype=np.int64, count=int(words_per_par.sum())
    )
    par_of_word = np.repeat(np.arange(len(words_per_par)), words_per_par)
    local_word = np.arange(all_words.size) - np.repeat(np.cumsum(words_per_par) - words_per_par, words_per_par)
    tok_count = counts[all_words]
    doc_ids = flat[_gather(word_start[all_words], tok_count)]
    doc_orig = np.repeat(local_word, tok_count)
    par_tokens = np.bincount(par_of_word, weights=tok_count, minlength=len(words_per_par)).astype(np.int64)
    par_start = np.cumsum(par_tokens) - par_tokens

    # Questions: ASCII ones from their words' tokens, the others through the replica.
    words_per_q = np.array([len(w) for w in q_words], dtype=np.int64)
    q_uids = np.fromiter((uid[w] for ws in q_words for w in ws), dtype=np.int64, count=int(words_per_q.sum()))
    q_tok_count = counts[q_uids]
    q_ids = flat[_gather(word_start[q_uids], q_tok_count)].tolist()
    q_of_word = np.repeat(np.arange(len(q_words)), words_per_q)
    per_q = np.bincount(q_of_word, weights=q_tok_count, minlength=len(q_words)).astype(np.int64)
    q_bounds = (np.cumsum(per_q) - per_q).tolist()
    slow = SlowTokenizer(vocab)
    queries = [
        q_ids[b : b + min(n, MAX_QUERY_LENGTH)] if is_fast_safe(q) else list(slow.encode(q)[:MAX_QUERY_LENGTH])
        for q, b, n in zip(squad.questions, q_bounds, per_q.tolist(), strict=True)
    ]
    cls, sep = vocab["[CLS]"], vocab["[SEP]"]

    # Windows (doc spans) of every example, as the reference makes them.
    feats: list[tuple[int, int, int, int]] = []  # (example, doc start, doc length, query length)
    for ex, (par, q) in enumerate(zip(squad.question_paragraph, queries, strict=True)):
        n = int(par_tokens[par])
        max_doc = SEQ_LEN - len(q) - 3
        start = 0
        while start < n:
            length = min(n - start, max_doc)
            feats.append((ex, start, length, len(q)))
            if start + length == n:
                break
            start += min(length, DOC_STRIDE)

    nf = len(feats)
    input_ids = np.zeros((nf, SEQ_LEN), dtype=np.uint16)
    segment_ids = np.zeros((nf, SEQ_LEN), dtype=np.uint8)
    token_to_orig = np.full((nf, SEQ_LEN), -1, dtype=np.int16)
    max_context = np.zeros((nf, SEQ_LEN), dtype=np.bool_)
    fa = np.array(feats, dtype=np.int64).reshape(-1, 4)
    example_index = fa[:, 0].astype(np.int32)
    lengths = (fa[:, 2] + fa[:, 3] + 3).astype(np.uint16)

    i = 0
    while i < nf:
        ex = feats[i][0]
        j = i
        while j < nf and feats[j][0] == ex:
            j += 1
        par = squad.question_paragraph[ex]
        q = queries[ex]
        nq = len(q)
        ctx = nq + 2
        head = np.array([cls, *q, sep], dtype=np.uint16)
        spans = fa[i:j, 1:3]
        best = _best_span(spans, int(par_tokens[par]))
        for k in range(i, j):
            _, s, ln, _ = feats[k]
            lo = int(par_start[par]) + s
            input_ids[k, :ctx] = head
            input_ids[k, ctx : ctx + ln] = doc_ids[lo : lo + ln]
            input_ids[k, ctx + ln] = sep
            segment_ids[k, ctx : ctx + ln + 1] = 1
            token_to_orig[k, ctx : ctx + ln] = doc_orig[lo : lo + ln]
            max_context[k, ctx : ctx + ln] = best[s : s + ln] == k - i
        i = j
    return {
        "input_ids": input_ids,
        "segment_ids": segment_ids,
        "lengths": lengths,
        "example_index": example_index,
        "token_to_orig": token_to_orig,
        "max_context": max_context,
    }


def _best_span(spans: np.ndarray, n: int) -> np.ndarray:
    """Per doc token, the index of the span where it has the most context (first wins ties)."""
    if len(spans) == 1:
        return np.zeros(n, dtype=np.int64)
    pos = np.arange(n)[None, :]
    start = spans[:, :1]
    length = spans[:, 1:2]
    end = start + length - 1
    score = np.minimum(pos - start, end - pos) + 0.01 * length
    score = np.where((pos >= start) & (pos <= end), score, -np.inf)
    return np.argmax(score, axis=0)


def cache_key(dataset_sha256: str, vocab_sha256: str) -> str:
    h = hashlib.sha256()
    h.update(dataset_sha256.encode())
    h.update(b"\0")
    h.update(vocab_sha256.encode())
    params = f"{FORMAT_VERSION},{SEQ_LEN},{DOC_STRIDE},{MAX_QUERY_LENGTH},lower"
    h.update(params.encode())
    return h.hexdigest()[:24]


def load_features(dataset_path: Path | None = None, vocab_path: Path | None = None) -> SquadFeatures:
    """The reference features of ``dataset_path`` (default: SQuAD dev, found or downloaded).

    Built once per distinct (dataset, vocab, parameters) and kept in the user cache.
    """
    ds = dataset.locate(dataset.SQUAD_DEV, dataset_path)
    vp = dataset.locate(dataset.BERT_VOCAB, vocab_path)
    squad = dataset.read_squad(ds)
    vocab = dataset.read_vocab(vp)
    provenance = dataset.Provenance(str(ds), dataset.sha256_file(ds), str(vp), dataset.sha256_file(vp))
    path = cache_dir() / "features" / f"squad-{cache_key(provenance.dataset_sha256, provenance.vocab_sha256)}.npz"
    arrays: dict[str, np.ndarray] | None = None
    if path.is_file():
        try:
            with np.load(path) as z:
                arrays = {k: z[k] for k in _ARRAYS}
        except Exception:  # a damaged cache entry is rebuilt
            arrays = None
    if arrays is None:
        arrays = build_features(squad, vocab)
        buf = io.BytesIO()
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        atomic_write_bytes(path, buf.getvalue())
    tokens = [""] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    return SquadFeatures(squad=squad, vocab_tokens=tokens, provenance=provenance, **arrays)
