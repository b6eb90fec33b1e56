"""The calibration set: the features of the 100 SQuAD dev questions MLPerf allows for
calibrating int8 scales (``bert_calibration_qas_ids.txt``, the MLPerf reference's list), and
nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from packed_bert.errors import UserError
from packed_bert.squad.features import SquadFeatures, load_features

CALIBRATION_IDS = "bert_calibration_qas_ids.txt"


def calibration_ids() -> set[str]:
    """The 100 SQuAD question ids MLPerf allows for calibration (shipped with the package)."""
    text = Path(__file__).with_name(CALIBRATION_IDS).read_text()
    return {line.strip() for line in text.splitlines() if line.strip()}


def calibration_features(features: SquadFeatures) -> dict[str, np.ndarray]:
    """input_ids / segment_ids / lengths of the features of the calibration questions only."""
    qas = np.asarray(features.squad.qas_ids)
    keep = np.isin(qas[np.asarray(features.example_index)], list(calibration_ids()))
    if not keep.any():
        raise UserError(
            f"none of the {CALIBRATION_IDS} question ids are in the SQuAD features; "
            "calibrate on the SQuAD v1.1 dev set (--dataset)"
        )
    return {
        "input_ids": features.input_ids[keep],
        "segment_ids": features.segment_ids[keep],
        "lengths": features.lengths[keep],
    }


def load_calibration(dataset: Path | None = None, vocab: Path | None = None) -> dict[str, np.ndarray]:
    """The calibration features of the dev set at ``dataset`` (default: the official one)."""
    return calibration_features(load_features(dataset, vocab))
