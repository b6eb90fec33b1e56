"""Subsets of SQuAD dev questions by article: every question, or those of the odd- or
even-numbered articles (0-based, file order).

A model fine-tuned on part of the dev set (such as ``minilm-l6-squad``, trained on the
even-numbered articles) is measured honestly only on the articles it never saw; a split names
those questions and their features, and a subset of the features can be run and scored alone.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt

from packed_bert.errors import UserError
from packed_bert.squad.dataset import Squad
from packed_bert.squad.features import SquadFeatures
from packed_bert.terms import Questions

SPLITS = tuple(str(q) for q in Questions)
DESCRIPTIONS = {
    "all": "the whole dev set",
    "odd-articles": "the odd-numbered articles (1, 3, ..., 47)",
    "even-articles": "the even-numbered articles (0, 2, ..., 46)",
}


def check_split(split: str) -> str:
    """``split`` if it is known, else a one-line ``UserError``."""
    if split not in SPLITS:
        raise UserError(f"--questions {split!r}: choose one of {', '.join(SPLITS)}")
    return split


def question_articles(squad: Squad) -> npt.NDArray[np.int64]:
    """The article index of every question."""
    if not squad.paragraph_article:
        raise UserError("the SQuAD data was read without article numbers; read it with squad.dataset.read_squad")
    return np.asarray(squad.paragraph_article, dtype=np.int64)[np.asarray(squad.question_paragraph, dtype=np.int64)]


def split_questions(squad: Squad, split: str) -> npt.NDArray[np.int64]:
    """Indices (file order) of the questions in ``split``."""
    check_split(split)
    articles = question_articles(squad)
    if split == "all":
        return np.arange(articles.size, dtype=np.int64)
    parity = 1 if split == "odd-articles" else 0
    return np.flatnonzero(articles % 2 == parity).astype(np.int64)


def split_features(features: SquadFeatures, split: str) -> npt.NDArray[np.int64]:
    """Indices of the features whose question is in ``split``."""
    keep = np.zeros(features.num_examples, dtype=bool)
    keep[split_questions(features.squad, split)] = True
    return np.flatnonzero(keep[features.example_index]).astype(np.int64)


def subset_features(features: SquadFeatures, split: str) -> SquadFeatures:
    """The features and questions of ``split`` alone, renumbered from 0 in the same order
    (``all``: ``features`` itself). A run over them logs subset indices as ``qsl_idx``."""
    if check_split(split) == "all":
        return features
    questions = split_questions(features.squad, split)
    rows = split_features(features, split)
    renumber = np.full(features.num_examples, -1, dtype=np.int64)
    renumber[questions] = np.arange(questions.size)
    s = features.squad
    squad = dataclasses.replace(
        s,
        question_paragraph=[s.question_paragraph[q] for q in questions.tolist()],
        questions=[s.questions[q] for q in questions.tolist()],
        qas_ids=[s.qas_ids[q] for q in questions.tolist()],
        answers=[s.answers[q] for q in questions.tolist()],
    )
    return SquadFeatures(
        input_ids=features.input_ids[rows],
        segment_ids=features.segment_ids[rows],
        lengths=features.lengths[rows],
        example_index=renumber[features.example_index[rows]].astype(np.int32),
        token_to_orig=features.token_to_orig[rows],
        max_context=features.max_context[rows],
        squad=squad,
        vocab_tokens=features.vocab_tokens,
        provenance=features.provenance,
    )
