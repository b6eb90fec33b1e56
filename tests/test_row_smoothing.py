"""The SmoothQuant factors of kept=int8-rows layers, their alpha chosen per layer on the
calibration set's output error (``backends.row_smoothing``): the error is the kernel's own, each
layer takes the alpha of least error, the samples and channel ranges come from every layer of the
kinds named, and a run's model uses the (cached) choice."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import pytest
import torch
from helpers.tiny_model import calibration_of, perturbed_tiny_model, random_features

from packed_bert.backends import create
from packed_bert.backends.amx_kernels import AmxLinearWeights, tiles_here
from packed_bert.backends.onnx_int8 import smooth_factors
from packed_bert.backends.quantize import calibrate_channels
from packed_bert.backends.row_smoothing import (
    HYBRID_MARGIN,
    HYBRID_QUANTILE,
    calibrated_row_smoothing,
    choose_row_smoothing,
    row_grid_error,
    sample_layer_inputs,
)
from packed_bert.cache import cache_dir
from packed_bert.model.linears import FFN_OUTPUT

NEEDS_TILES = pytest.mark.skipif(
    tiles_here() is None, reason="packed-bert's int8 rows kernels need AMX tiles or AVX-512 VNNI (soft tiles)"
)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACKED_BERT_CACHE", str(tmp_path))


def _layer(
    seed: int, outliers: float, outlier_tokens: float = 1.0
) -> tuple[torch.Tensor, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Input rows [96, 128] whose first four channels are ``outliers`` times the rest in a share
    ``outlier_tokens`` of the rows, a weight [128, 64], and the input's per-channel range."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((96, 128)).astype(np.float32)
    x[np.ix_(rng.random(96) < outlier_tokens, np.arange(4))] *= outliers
    w = (0.05 * rng.standard_normal((128, 64))).astype(np.float32)
    return torch.from_numpy(x), w, (x.min(axis=0), x.max(axis=0))


@NEEDS_TILES
def test_the_error_judged_is_the_int8_rows_kernels_own() -> None:
    x, w, channels = _layer(1, 30.0)
    smooth = smooth_factors({"l": channels}, {"l": w}, 0.6)[0]["l"]
    out = AmxLinearWeights.int8_rows(w, np.zeros(64, np.float32), smooth)(x, torch.float32).double()
    reference = x.double() @ torch.from_numpy(w).double()
    kernel = float(torch.linalg.norm(out - reference) / torch.linalg.norm(reference))
    assert kernel > 1e-3  # a real rounding error, which the float model must reproduce
    assert row_grid_error(x, w, smooth) == pytest.approx(kernel, rel=0.01)


def test_each_layer_takes_the_alpha_of_its_least_error() -> None:
    """Outlier channels in every token want more migration than the same channels' outliers in a
    few tokens, whose range then shrinks those channels in every other row: the layers choose apart."""
    layers = {"every-token": _layer(2, 60.0), "few-tokens": _layer(2, 60.0, 0.05)}
    alphas = (0.1, 0.3, 0.5, 0.7, 0.9)
    chosen = choose_row_smoothing(
        {n: x for n, (x, _, _) in layers.items()},
        {n: c for n, (_, _, c) in layers.items()},
        {n: w for n, (_, w, _) in layers.items()},
        alphas,
    )
    for name, (x, w, channels) in layers.items():
        factors = [smooth_factors({name: channels}, {name: w}, a)[0][name] for a in alphas]
        errors = [row_grid_error(x, w, f) for f in factors]
        np.testing.assert_allclose(chosen.error[name], errors)
        best = int(np.argmin(errors))
        assert chosen.alpha[name] == alphas[best]
        np.testing.assert_array_equal(chosen.smooth[name], factors[best])
        # kept=int8-hybrid's fixed grid reaches the margin times HYBRID_QUANTILE of the rows' peaks at that alpha
        peaks = np.abs(x.numpy() / factors[best]).max(axis=1)
        quantile = chosen.bound[name] / HYBRID_MARGIN
        assert quantile == pytest.approx(float(np.quantile(peaks, HYBRID_QUANTILE)), rel=1e-5)
        assert float(np.mean(peaks > quantile)) == pytest.approx(1 - HYBRID_QUANTILE, abs=0.01)
    assert chosen.alpha["every-token"] > chosen.alpha["few-tokens"]
    assert chosen.summary() == ", ".join(f"{a:g} x 1" for a in sorted(chosen.alpha.values()))


def test_samples_come_from_every_layer_of_the_kinds_named_and_ranges_from_all_tokens() -> None:
    model = perturbed_tiny_model(2)
    ids, seg, lens = random_features(5, 12, 120)
    features = {"input_ids": ids, "segment_ids": seg, "lengths": lens}
    samples, channels = sample_layer_inputs(model, features, (FFN_OUTPUT,), tokens=100)
    layers = len(model.bert.encoder.layer)
    assert sorted(samples) == [f"bert.encoder.layer.{i}.output.dense" for i in range(layers)]
    stride = -(-int(lens.sum()) // 100)
    batches = -(-len(lens) // 8)  # each_layer_input's batches of eight
    for x in samples.values():  # every stride-th real token of each batch
        assert lens.sum() / stride <= x.shape[0] <= lens.sum() / stride + batches
    every = calibrate_channels(model, features)
    assert sorted(channels) == sorted(samples)
    for name, (lo, hi) in channels.items():
        np.testing.assert_array_equal(lo, every[name][0])
        np.testing.assert_array_equal(hi, every[name][1])
    assert stride > 1


@NEEDS_TILES
def test_a_run_takes_the_cached_choice_for_its_int8_rows_layers() -> None:
    features = random_features(7, 10, 120)
    model = perturbed_tiny_model(2)
    runner = cast(
        Any,
        create(
            "torch", model, "int8-bf16", "cpu", kernel="amx", kept="int8-rows", calibration=calibration_of(features)
        ),
    )
    assert "SmoothQuant alpha per layer by calibration error: " in runner.detail
    saved = list((cache_dir() / "row-smoothing").glob("*.npz"))
    assert len(saved) == 1
    again = calibrated_row_smoothing(model, model, 0, calibration_of(features), (FFN_OUTPUT,))
    assert len(again.alpha) == len(model.bert.encoder.layer)
    layer = runner.model.bert.encoder.encoder.layer[0].output.dense
    factors = again.smooth["bert.encoder.layer.0.output.dense"]
    np.testing.assert_allclose(layer.amx.in_scale.numpy(), 1.0 / factors, rtol=1e-6)
    hybrid = cast(
        Any,
        create(
            "torch", model, "int8-bf16", "cpu", kernel="amx", kept="int8-hybrid", calibration=calibration_of(features)
        ),
    )
    assert len(list((cache_dir() / "row-smoothing").glob("*.npz"))) == 1  # the same choice, bounds and all
    layer = hybrid.model.bert.encoder.encoder.layer[0].output.dense
    bound = again.bound["bert.encoder.layer.0.output.dense"]
    assert layer.amx.fixed_step == pytest.approx(bound / 127, rel=1e-6)
    np.testing.assert_allclose(layer.amx.fixed_scale.numpy(), 127 / bound / factors, rtol=1e-5)
