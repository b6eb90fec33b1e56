"""Finding, downloading, checking and reading the SQuAD dev set and the BERT vocab.

Lookup order for each file: the explicit path, then an environment variable, then the user
cache; failing those it is downloaded from its official address and its sha256 checked.
"""

import hashlib
import json
import os
import re
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packed_bert.cache import atomic_write_bytes, cache_dir
from packed_bert.errors import UserError


@dataclass(frozen=True)
class Remote:
    """A file packed-bert can fetch: where from, its checksum, and how to override it."""

    what: str
    url: str
    sha256: str
    env: str
    cache_name: str
    flag: str


SQUAD_DEV = Remote(
    what="SQuAD dev set",
    url="https://rajpurkar.github.io/SQuAD-explorer/dataset/dev-v1.1.json",
    sha256="95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9",
    env="PACKED_BERT_SQUAD",
    cache_name="dev-v1.1.json",
    flag="--dataset",
)
BERT_VOCAB = Remote(
    what="BERT uncased vocab",
    url="https://huggingface.co/bert-large-uncased/resolve/main/vocab.txt",
    sha256="07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    env="PACKED_BERT_VOCAB",
    cache_name="bert-uncased-vocab.txt",
    flag="--vocab",
)
VOCAB_SIZE = 30522
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")
# The reference splits a paragraph into words on exactly these characters.
_DOC_SPLIT = re.compile("[ \t\r\n\u202f]+")


def fetch(url: str) -> bytes:
    """Download ``url`` (tests replace this or use a file:// URL)."""
    with urllib.request.urlopen(url, timeout=60) as resp:
        data: bytes = resp.read()
    return data


def locate(remote: Remote, explicit: Path | None = None) -> Path:
    """The path of ``remote``'s file: explicit, env, cache, else downloaded into the cache."""
    if explicit is not None:
        return _existing(Path(explicit), remote)
    env = os.environ.get(remote.env)
    if env:
        return _existing(Path(env), remote)
    cached = cache_dir() / "data" / remote.cache_name
    if cached.is_file():
        return cached
    try:
        data = fetch(remote.url)
    except Exception as exc:  # network errors come in many types
        raise UserError(
            f"{remote.url}: download of the {remote.what} failed ({exc}); pass {remote.flag} PATH or set {remote.env}"
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != remote.sha256:
        raise UserError(
            f"{remote.url}: sha256 {digest} is not the expected {remote.sha256}; pass {remote.flag} PATH to a good copy"
        )
    atomic_write_bytes(cached, data)
    return cached


@dataclass(frozen=True)
class Provenance:
    """Which dataset and vocab a run used: paths, sha256, and whether they are the official files."""

    dataset: str
    dataset_sha256: str
    vocab: str
    vocab_sha256: str

    @property
    def dataset_official(self) -> bool:
        return self.dataset_sha256 == SQUAD_DEV.sha256

    @property
    def vocab_official(self) -> bool:
        return self.vocab_sha256 == BERT_VOCAB.sha256

    @property
    def official(self) -> bool:
        return self.dataset_official and self.vocab_official

    def warnings(self) -> list[str]:
        """One line per file that is not the official one (a run on it is not an MLPerf result)."""
        out = []
        for remote, path, digest, ok in (
            (SQUAD_DEV, self.dataset, self.dataset_sha256, self.dataset_official),
            (BERT_VOCAB, self.vocab, self.vocab_sha256, self.vocab_official),
        ):
            if not ok:
                out.append(
                    f"{path}: sha256 {digest[:16]}... is not the official {remote.what}'s "
                    f"({remote.sha256[:16]}...); this run's results are not MLPerf results"
                )
        return out

    def as_dict(self) -> dict[str, object]:
        return {
            "dataset": self.dataset,
            "dataset_sha256": self.dataset_sha256,
            "dataset_official": self.dataset_official,
            "vocab": self.vocab,
            "vocab_sha256": self.vocab_sha256,
            "vocab_official": self.vocab_official,
        }


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _existing(path: Path, remote: Remote) -> Path:
    if not path.is_file():
        raise UserError(f"{path}: {remote.what} not found; pass {remote.flag} PATH to an existing file")
    return path


@dataclass(frozen=True)
class Squad:
    """The dev set as the reference sees it: questions in file order, paragraphs as words."""

    paragraphs: list[str]
    """Paragraph contexts in file order."""
    paragraph_words: list[list[str]]
    """Each paragraph split into the reference's doc words."""
    question_paragraph: list[int]
    """Per question (example), the index of its paragraph."""
    questions: list[str]
    qas_ids: list[str]
    answers: list[list[str]]
    """Per question, the gold answer texts."""
    paragraph_article: list[int] = field(default_factory=list)
    """Per paragraph, the index of its article (``data[]`` entry) in file order."""


def split_doc_words(text: str) -> list[str]:
    """The reference's doc tokens: ``text`` split on ' ', \\t, \\r, \\n and U+202F."""
    return [w for w in _DOC_SPLIT.split(text) if w]


def read_json(path: Path, flag: str, expected: str) -> Any:
    """A JSON file, or a one-line UserError naming the file, the problem and the fix."""
    try:
        return json.loads(Path(path).read_bytes())
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror}); pass {flag}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not JSON ({exc}); pass {expected}") from None


def read_squad(path: Path) -> Squad:
    """Parse and check a SQuAD v1.1 json file."""
    raw = read_json(path, "--dataset PATH", "the SQuAD v1.1 dev-v1.1.json")
    bad = UserError(
        f"{path}: not a SQuAD v1.1 file (needs data[].paragraphs[].context/qas[].id/question); "
        "pass the SQuAD v1.1 dev-v1.1.json"
    )
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise bad
    paragraphs: list[str] = []
    words: list[list[str]] = []
    q_par: list[int] = []
    questions: list[str] = []
    ids: list[str] = []
    answers: list[list[str]] = []
    par_article: list[int] = []
    try:
        for a, article in enumerate(raw["data"]):
            for par in article["paragraphs"]:
                context = par["context"]
                if not isinstance(context, str):
                    raise bad
                p = len(paragraphs)
                paragraphs.append(context)
                par_article.append(a)
                words.append(split_doc_words(context))
                for qa in par["qas"]:
                    q_par.append(p)
                    questions.append(str(qa["question"]))
                    ids.append(str(qa["id"]))
                    answers.append([str(a["text"]) for a in qa.get("answers", [])])
    except (KeyError, TypeError):
        raise bad from None
    if not questions:
        raise UserError(f"{path}: holds no questions; pass the SQuAD v1.1 dev-v1.1.json")
    return Squad(paragraphs, words, q_par, questions, ids, answers, par_article)


def read_vocab(path: Path) -> dict[str, int]:
    """Read and check a BERT WordPiece vocab (one token a line)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror}); pass --vocab PATH") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file; pass --vocab PATH to the BERT vocab.txt") from None
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    tokens = [t.strip() for t in tokens]
    missing = [t for t in SPECIAL_TOKENS if t not in tokens]
    if missing or len(tokens) != VOCAB_SIZE:
        problem = f"missing {', '.join(missing)}" if missing else f"{len(tokens)} tokens, not {VOCAB_SIZE}"
        raise UserError(f"{path}: not a BERT uncased vocab ({problem}); pass --vocab PATH to the BERT vocab.txt")
    return {t: i for i, t in enumerate(tokens)}


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
