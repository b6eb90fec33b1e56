"""The reference BERT tokenizer: an exact Python replica and a fast ``tokenizers`` equivalent.

The replica follows Google BERT's ``BasicTokenizer`` + ``WordpieceTokenizer`` (lower case), as
the MLPerf preprocessing uses them. The fast tokenizer agrees with it on ASCII text; callers
send anything else through the replica (see :func:`is_fast_safe`).
"""

import re
import unicodedata
from collections.abc import Mapping, Sequence
from functools import lru_cache

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

UNK = "[UNK]"
MAX_CHARS_PER_WORD = 100


def _is_whitespace(ch: str) -> bool:
    if ch in (" ", "\t", "\n", "\r"):
        return True
    return unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    if ch in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(ch).startswith("C")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def _clean_and_space_cjk(text: str) -> str:
    out: list[str] = []
    for ch in text:
        cp = ord(ch)
        if cp == 0 or cp == 0xFFFD or _is_control(ch):
            continue
        if _is_whitespace(ch):
            out.append(" ")
        elif _is_cjk(cp):
            out.extend((" ", ch, " "))
        else:
            out.append(ch)
    return "".join(out)


def _strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def _split_punctuation(text: str) -> list[str]:
    pieces: list[list[str]] = []
    new_word = True
    for ch in text:
        if _is_punctuation(ch):
            pieces.append([ch])
            new_word = True
        else:
            if new_word:
                pieces.append([])
            new_word = False
            pieces[-1].append(ch)
    return ["".join(p) for p in pieces]


# ASCII shortcut of basic_tokenize: controls dropped, then words and single punctuation marks.
_ASCII_CONTROLS = {c: None for c in [*range(0, 9), 11, 12, *range(14, 32), 127]}
_ASCII_TOKEN = re.compile(r"[!-/:-@\[-`{-~]|[^ \t\n\r!-/:-@\[-`{-~]+")


def basic_tokenize(text: str) -> list[str]:
    """Reference ``BasicTokenizer(do_lower_case=True).tokenize``."""
    if text.isascii():
        return _ASCII_TOKEN.findall(text.translate(_ASCII_CONTROLS).lower())
    return basic_tokenize_exact(text)


def basic_tokenize_exact(text: str) -> list[str]:
    """:func:`basic_tokenize` step by step as the reference writes it (no shortcut)."""
    text = _clean_and_space_cjk(text)
    tokens: list[str] = []
    for word in text.split():
        word = _strip_accents(word.lower())
        tokens.extend(_split_punctuation(word))
    return " ".join(tokens).split()


def wordpiece(token: str, vocab: Mapping[str, int]) -> list[str]:
    """Reference greedy longest-match-first WordPiece of one basic token."""
    if len(token) > MAX_CHARS_PER_WORD:
        return [UNK]
    pieces: list[str] = []
    start = 0
    while start < len(token):
        end = len(token)
        found = None
        while start < end:
            sub = token[start:end]
            if start > 0:
                sub = "##" + sub
            if sub in vocab:
                found = sub
                break
            end -= 1
        if found is None:
            return [UNK]
        pieces.append(found)
        start = end
    return pieces


def full_tokenize(text: str, vocab: Mapping[str, int]) -> list[str]:
    """Reference ``FullTokenizer.tokenize``: basic tokens, then WordPiece."""
    return [p for tok in basic_tokenize(text) for p in wordpiece(tok, vocab)]


class SlowTokenizer:
    """The exact replica with per-text memoisation (used for the texts the fast path can't take)."""

    def __init__(self, vocab: Mapping[str, int]) -> None:
        self.vocab = vocab
        self._ids = lru_cache(maxsize=1 << 16)(self._encode)

    def _encode(self, text: str) -> tuple[int, ...]:
        return tuple(self.vocab[t] for t in full_tokenize(text, self.vocab))

    def encode(self, text: str) -> tuple[int, ...]:
        return self._ids(text)


def is_fast_safe(text: str) -> bool:
    """True where the fast tokenizer is known to agree with the reference (pure ASCII)."""
    return text.isascii()


def ascii_normalize(text: str) -> str:
    """The reference's text cleaning and lower-casing, for ASCII text (accents can't occur)."""
    return text.translate(_ASCII_CONTROLS).lower()


def fast_tokenizer(vocab: Mapping[str, int], normalize: bool = True) -> Tokenizer:
    """A ``tokenizers`` BERT tokenizer (no special tokens added) over ``vocab``.

    With ``normalize=False`` it expects text already passed through :func:`ascii_normalize`
    (about 3x faster than the Rust normalizer).
    """
    tok = Tokenizer(models.WordPiece(dict(vocab), unk_token=UNK, max_input_chars_per_word=MAX_CHARS_PER_WORD))
    if normalize:
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True
        )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tok


def encode_texts(texts: Sequence[str], vocab: Mapping[str, int]) -> list[list[int]]:
    """Token ids of each text, exactly as the reference ``FullTokenizer`` makes them."""
    fast = fast_tokenizer(vocab, normalize=False)
    slow = SlowTokenizer(vocab)
    out: list[list[int]] = [[] for _ in texts]
    ascii_idx = [i for i, t in enumerate(texts) if is_fast_safe(t)]
    encs = fast.encode_batch([ascii_normalize(texts[i]) for i in ascii_idx], add_special_tokens=False)
    for i, enc in zip(ascii_idx, encs, strict=True):
        out[i] = enc.ids
    for i, t in enumerate(texts):
        if not is_fast_safe(t):
            out[i] = list(slow.encode(t))
    return out
