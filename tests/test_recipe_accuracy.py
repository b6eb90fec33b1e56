"""``benchmarks/recipe_accuracy.py``'s fidelity columns: how far a recipe's logits stand from the
reference's, and how many best spans differ, on real SQuAD features."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import recipe_accuracy  # noqa: E402

from packed_bert.squad.features import SquadFeatures  # noqa: E402


def _flat_logits(features: SquadFeatures, index: np.ndarray) -> list[np.ndarray]:
    """Zero start and end logits for every real token of each feature."""
    return [np.zeros((int(features.lengths[i]), 2), np.float32) for i in index]


def test_fidelity_counts_the_logits_distance_and_the_spans_that_move(squad_features: SquadFeatures) -> None:
    index = np.arange(6)
    reference = _flat_logits(squad_features, index)
    context = np.flatnonzero(squad_features.segment_ids[0][: squad_features.lengths[0]] == 1)
    first, second = int(context[0]), int(context[1])  # two context tokens of feature 0
    reference[0][first] = 100.0  # the reference's best span: the first context token alone
    ref_spans = recipe_accuracy.spans(squad_features, index, reference)
    same = recipe_accuracy.fidelity(squad_features, index, reference, ref_spans, [a.copy() for a in reference])
    assert same == {"rms": 0.0, "span_changed": 0}
    moved = [a.copy() for a in reference]
    moved[0][first], moved[0][second] = 0.0, 100.0  # its best span moves to the second token
    values = sum(a.size for a in reference)
    got = recipe_accuracy.fidelity(squad_features, index, reference, ref_spans, moved)
    assert got["span_changed"] == 1
    assert np.isclose(got["rms"], (4 * 100.0**2 / values) ** 0.5)
    nudged = [a + np.float32(0.01) for a in reference]  # every logit a little off, no span moved
    got = recipe_accuracy.fidelity(squad_features, index, reference, ref_spans, nudged)
    assert got["span_changed"] == 0 and np.isclose(got["rms"], 0.01, rtol=1e-4)
