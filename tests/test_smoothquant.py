"""Static int8 with SmoothQuant (``onnx_int8.smooth_factors``, the ``qdq`` scheme): the factors'
arithmetic, that smoothing shrinks the error an outlier channel causes, that the graph carries
each initializer once, and that a run hands OpenVINO the calibration set it needs."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.tiny_model import calibration_of, perturbed_tiny_model, random_features

from packed_bert.backends.devices import DeviceRequest, local_runners
from packed_bert.backends.onnx_fused import _Graph, build
from packed_bert.backends.onnx_int8 import Int8Recipe, quantize_weight, smooth_factors
from packed_bert.backends.quantize import calibrate_channels, calibrate_ranges, calibrate_smoothquant
from packed_bert.errors import UserError
from packed_bert.model.linears import LINEAR_KINDS


def _fake_quant_u8(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``x`` on the uint8 grid of [lo, hi] and back (what QuantizeLinear + DequantizeLinear do)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255.0
    zp = np.rint(-lo / scale)
    return (np.clip(np.rint(x / scale) + zp, 0, 255) - zp) * scale


def _int8_product(x: np.ndarray, w_t: np.ndarray, lo: float, hi: float) -> np.ndarray:
    q, s = quantize_weight(w_t)
    return _fake_quant_u8(x, lo, hi) @ (q.astype(np.float64) * s)


def test_the_smoothed_range_is_that_of_the_input_divided_by_its_factors() -> None:
    rng = np.random.default_rng(0)
    lo, hi = -rng.random(16).astype(np.float32) * 3, rng.random(16).astype(np.float32) * 3
    lo[4], hi[4] = -40.0, 55.0  # an outlier channel
    w_t = rng.standard_normal((16, 8)).astype(np.float32)
    smooth, ranges = smooth_factors({"x": (lo, hi)}, {"x": w_t}, alpha=0.8)
    s = smooth["x"]
    assert s.shape == (16,) and (s > 0).all()
    want = np.maximum(np.abs(lo), np.abs(hi)) ** 0.8 / np.abs(w_t).max(axis=1) ** 0.2
    np.testing.assert_allclose(s, want, rtol=1e-5)
    assert ranges["x"] == pytest.approx((float((lo / s).min()), float((hi / s).max())))
    assert s[4] == s.max()  # the outlier channel is divided the most


def test_smoothing_shrinks_the_error_of_an_outlier_channel() -> None:
    """x / s times s * W is x @ W in exact arithmetic; in int8 it spreads an outlier channel's
    range over the weight's row, so the rest of the channels keep their resolution."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((512, 64))
    x[:, 7] *= 60.0
    w_t = rng.standard_normal((64, 32)) * 0.05
    exact = x @ w_t
    plain = _int8_product(x, w_t, float(x.min()), float(x.max()))
    smooth, ranges = smooth_factors({"x": (x.min(axis=0), x.max(axis=0))}, {"x": w_t}, alpha=0.8)
    s = smooth["x"].astype(np.float64)
    smoothed = _int8_product(x / s, w_t * s[:, None], *ranges["x"])
    err_plain, err_smooth = np.abs(plain - exact).mean(), np.abs(smoothed - exact).mean()
    assert err_smooth < 0.5 * err_plain


def test_an_initializer_name_is_written_once() -> None:
    g = _Graph()
    g.const("a", np.zeros(1, np.float32))
    with pytest.raises(ValueError, match="'a' written twice"):
        g.const("a", np.ones(1, np.float32))


@pytest.mark.parametrize("attention", ["sequence", "mask"])
def test_the_smoothquant_graph_scales_each_layer_input_and_its_weight(attention: str) -> None:
    """Every int8 layer input gets its own Mul by 1 / s and its own calibrated grid; every
    initializer has one name (the Q|K|V grid once shared a name with the attention's 1/sqrt(d))."""
    tiny = perturbed_tiny_model()
    feats = random_features(seed=2, n=12, max_len=200)
    channels = calibrate_channels(tiny, calibration_of(feats)())
    assert calibrate_ranges(tiny, calibration_of(feats)()) == {
        n: (float(lo.min()), float(hi.max())) for n, (lo, hi) in channels.items()
    }
    smooth, ranges = calibrate_smoothquant(tiny, calibration_of(feats)())
    assert sorted(smooth) == sorted(ranges) == sorted(channels)
    graph = build(tiny, Int8Recipe(dict.fromkeys(LINEAR_KINDS, "qdq"), ranges, smooth), attention).graph
    names = [t.name for t in graph.initializer]
    assert len(names) == len(set(names))
    layers = tiny.config.layers
    assert sum(n.endswith("/smooth") for n in names) == len(channels) == 4 * layers
    assert sum(node.op_type == "QuantizeLinear" for node in graph.node) == 4 * layers
    factors = {t.name: t for t in graph.initializer if t.name.endswith("/smooth")}
    from onnx import numpy_helper

    for name, s in smooth.items():
        np.testing.assert_allclose(numpy_helper.to_array(factors[f"{name}/smooth"]), 1.0 / s, rtol=1e-6)


def test_a_run_hands_openvino_the_calibration_set() -> None:
    pytest.importorskip("openvino", reason="the openvino runtime is not installed")
    request = DeviceRequest("openvino", "bert-99", "int8", "tiny", 1, {"threads": 1, "seed": 4242})
    with pytest.raises(UserError, match="calibrat"):
        local_runners(request)
    feats = random_features(seed=4, n=16, max_len=200)
    with_set = DeviceRequest(
        "openvino", "bert-99", "int8", "tiny", 1, {"threads": 1, "seed": 4242}, calibration=calibration_of(feats)
    )
    (runner,) = local_runners(with_set)
    assert "SmoothQuant" in runner.detail  # type: ignore[attr-defined]


def test_the_onnxruntime_spelling_folds_the_bias_and_the_attention_output_division() -> None:
    """``sequence-ort``: every int8 layer is QuantizeLinear + MatMulIntegerToFloat with its bias
    inside (no DequantizeLinear, no separate bias Add), the attention output layer's 1 / s sits in
    V's weight columns (no Mul before it), and its logits stay those of the QDQ spelling within
    the int8 grid's rounding."""
    from onnx import numpy_helper

    from packed_bert.backends.attention_feeds import graph_feeds
    from packed_bert.packing import pack_batch

    tiny = perturbed_tiny_model()
    feats = random_features(seed=3, n=10, max_len=200)
    smooth, ranges = calibrate_smoothquant(tiny, calibration_of(feats)())
    recipe = Int8Recipe(dict.fromkeys(LINEAR_KINDS, "qdq"), ranges, smooth)
    ort_graph, qdq_graph = build(tiny, recipe, "sequence-ort"), build(tiny, recipe, "sequence")
    layers = tiny.config.layers
    nodes = ort_graph.graph.node
    assert sum(n.op_type == "DequantizeLinear" for n in nodes) == 0
    int8 = [n for n in nodes if n.op_type == "MatMulIntegerToFloat"]
    assert len(int8) == 4 * layers and all(len(n.input) == 7 and n.input[6] for n in int8)  # the bias input
    smoothed = {n.name.removesuffix("/smooth/Mul") for n in nodes if n.name.endswith("/smooth/Mul")}
    assert len(smoothed) == 3 * layers and not any(".attention.output.dense" in n for n in smoothed)
    weights = {t.name: numpy_helper.to_array(t) for t in ort_graph.graph.initializer}
    hidden = tiny.config.hidden
    s_out = smooth["bert.encoder.layer.0.attention.output.dense"]
    v_scale = weights["bert.encoder.layer.0.attention.self.weight_scale"][2 * hidden :]
    _, plain_v_scale = quantize_weight(tiny.state_dict()["bert.encoder.layer.0.attention.self.value.weight"].numpy().T)
    s_qkv = smooth["bert.encoder.layer.0.attention.self"]
    _, smoothed_v_scale = quantize_weight(
        tiny.state_dict()["bert.encoder.layer.0.attention.self.value.weight"].numpy().T * s_qkv[:, None]
    )
    np.testing.assert_allclose(v_scale, smoothed_v_scale / s_out, rtol=1e-5)
    assert not np.allclose(v_scale, plain_v_scale)

    import onnxruntime as ort

    batch = pack_batch(*feats)
    logits = [
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, graph_feeds(batch, attention)
        )[0]
        for m, attention in ((ort_graph, "sequence-ort"), (qdq_graph, "sequence"))
    ]
    assert np.abs(logits[0] - logits[1]).max() <= 0.05 * max(1.0, float(np.ptp(logits[1])))
