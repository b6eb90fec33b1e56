"""PyTorch static int8 on the CPU (``torch_int8``): one layer against the arithmetic it stands
for, the whole model against fp32, the same bits in any batch, and the calibration it needs and
keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.int8_cpu import needs_exact_int8
from helpers.tiny_model import calibration_of, eager_logits, perturbed_tiny_model, random_features, same_in_any_batch

from packed_bert.backends import create, quantize
from packed_bert.backends.onnx_int8 import quantize_weight, static_grid
from packed_bert.backends.torch_int8 import GELU, StaticInt8Linear, has_int8_kernels
from packed_bert.errors import UserError
from packed_bert.packing import sorted_batches

pytestmark = pytest.mark.skipif(not has_int8_kernels(), reason="this torch build has no oneDNN quantized linear")


def _reference(x: np.ndarray, w_t: np.ndarray, bias: np.ndarray, s: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The recipe in float64: x / s on the uint8 grid of [lo, hi], times int8 columns of s * W, plus the bias."""
    scale, zp = static_grid(lo, hi)
    q = np.clip(np.rint((x / s) / scale) + zp, 0, 255)
    wq, ws = quantize_weight((w_t * s[:, None]).astype(np.float32))
    return ((q - zp) * scale) @ (wq.astype(np.float64) * ws) + bias


@needs_exact_int8
@pytest.mark.parametrize("post_op", ["none", GELU])
def test_a_layer_is_the_smoothed_int8_product_of_its_input(post_op: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((37, 64)).astype(np.float32)
    x[:, 5] *= 30.0  # an outlier channel, divided away by its factor
    w_t = (rng.standard_normal((64, 48)) * 0.1).astype(np.float32)
    bias = rng.standard_normal(48).astype(np.float32)
    s = np.abs(x).max(axis=0) ** 0.8 / np.abs(w_t).max(axis=1) ** 0.2
    lo, hi = float((x / s).min()), float((x / s).max())
    layer = StaticInt8Linear(w_t, bias, s.astype(np.float32), (lo, hi), post_op=post_op)
    got = layer(torch.from_numpy(x).reshape(1, 37, 64)).numpy()
    want = _reference(x.astype(np.float64), w_t, bias, s.astype(np.float32).astype(np.float64), lo, hi)
    if post_op == GELU:
        want = F.gelu(torch.from_numpy(want)).numpy()
    assert got.shape == (1, 37, 48)
    np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    exact = x.astype(np.float64) @ w_t + bias
    if post_op == "none":  # and it is int8 close to the float product, not something else
        assert 0 < float(np.abs(got[0] - exact).mean()) < 0.02 * float(np.abs(exact).mean())


def _int8_runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, feats: tuple[np.ndarray, ...]) -> object:
    monkeypatch.setenv("PACKED_BERT_CACHE", str(tmp_path))
    return create("torch", perturbed_tiny_model(), "int8", "cpu", calibration=calibration_of(feats))  # type: ignore[arg-type]


def test_int8_logits_follow_fp32_and_keep_their_bits_in_any_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feats = random_features(seed=3, n=12, max_len=200)
    runner = _int8_runner(tmp_path, monkeypatch, feats)
    assert "static int8" in runner.detail and "SmoothQuant" in runner.detail  # type: ignore[attr-defined]
    ids, seg, lens = random_features(seed=4, n=9, max_len=300)
    fp32 = perturbed_tiny_model()
    for b in sorted_batches(ids, seg, lens, 3):
        got, want = runner.infer(b), eager_logits(fp32, b)  # type: ignore[attr-defined]
        real = np.arange(b.row_len)[None, :] < b.seq_lens[:, :1]
        err = np.abs(got - want)[real].mean()
        assert 0 < err < 0.05 * np.abs(want[real]).mean()
    same_in_any_batch(runner.infer, (ids, seg, lens))  # type: ignore[attr-defined]


def test_the_calibration_is_kept_per_weights_and_calibration_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feats = random_features(seed=5, n=8, max_len=120)
    calls = []
    calibrate = quantize.calibrate_smoothquant

    def counted(*args: object, **kw: object) -> object:
        calls.append(1)
        return calibrate(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(quantize, "calibrate_smoothquant", counted)
    monkeypatch.setenv("PACKED_BERT_CACHE", str(tmp_path))
    first = create("torch", perturbed_tiny_model(), "int8", "cpu", calibration=calibration_of(feats))
    second = create("torch", perturbed_tiny_model(), "int8", "cpu", calibration=calibration_of(feats))
    assert len(list((tmp_path / "smoothquant").glob("*.npz"))) == 1 and len(calls) == 1
    b = sorted_batches(*random_features(seed=6, n=3, max_len=100), 3)[0]
    np.testing.assert_array_equal(first.infer(b), second.infer(b))
    other = random_features(seed=7, n=8, max_len=120)
    create("torch", perturbed_tiny_model(), "int8", "cpu", calibration=calibration_of(other))
    assert len(list((tmp_path / "smoothquant").glob("*.npz"))) == 2


def test_int8_without_calibration_is_one_line() -> None:
    with pytest.raises(UserError, match="SmoothQuant calibrates its scales on the 100 MLPerf calibration questions"):
        create("torch", perturbed_tiny_model(), "int8", "cpu")


def test_int8_on_the_cpu_is_not_compiled() -> None:
    with pytest.raises(UserError, match="runs eagerly"):
        create("torch", perturbed_tiny_model(), "int8", "cpu", compile=True)


def test_int8_for_bert_99_9_is_refused() -> None:
    with pytest.raises(UserError, match="not allowed for bert-99.9"):
        create("torch", "tiny", "int8", "cpu", model="bert-99.9")
