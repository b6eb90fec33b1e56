"""OpenVINO runner on a tiny random BERT with attention over the masked row: logits against the
eager fp32 model within each recipe's tolerance, and a sample's logits the same (within
rounding, same best span) alone, sorted or packed with others. The default, per-sequence
attention, is bit-exact: tests/test_sequence_attention.py."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.tiny_model import calibration_of, eager_logits, perturbed_tiny_model, random_features

from packed_bert.backends import create
from packed_bert.errors import UserError
from packed_bert.model import PackedBertForQA
from packed_bert.packing import pack_batch, sorted_batches, unpack

pytest.importorskip("openvino", reason="the openvino runtime is not installed")

# max |logit - fp32 logit| over the sample's logit range, per recipe
TOLERANCE = {"fp32": 1e-4, "bf16": 0.05, "int8": 0.08}
# the same sample in different batches: fp32 within rounding; bf16/int8 kernels may block
# differently per batch shape, so within a fraction of the recipe's own error
INVARIANCE = {"fp32": 1e-5, "bf16": 0.02, "int8": 0.02}


@pytest.fixture(scope="module")
def tiny() -> PackedBertForQA:
    return perturbed_tiny_model()


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return random_features(seed=3, n=9, max_len=170)


def _span(logits: np.ndarray) -> tuple[int, int]:
    score = logits[:, 0][:, None] + logits[:, 1][None, :]
    allowed = np.triu(np.ones_like(score, bool)) & ~np.triu(np.ones_like(score, bool), 30)
    i, j = np.unravel_index(int(np.argmax(np.where(allowed, score, -np.inf))), score.shape)
    return int(i), int(j)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_openvino_matches_fp32_and_is_batch_invariant(tiny: PackedBertForQA, features: tuple, precision: str) -> None:
    runner = create(
        "openvino", tiny, precision, model="bert-99", threads=1, attention="mask", calibration=calibration_of(features)
    )
    assert "masked row" in runner.detail and precision in runner.detail  # type: ignore[attr-defined]
    packed = pack_batch(*features)
    assert packed.num_rows < len(features[2])  # some rows hold several sequences
    by_packed = unpack(packed, runner.infer(packed))
    eager = unpack(packed, eager_logits(tiny, packed))
    by_sorted: dict[int, np.ndarray] = {}
    for batch in sorted_batches(*features, batch_size=4):
        for idx, seq in zip(np.sort(batch.sample_index[:, 0]), unpack(batch, runner.infer(batch)), strict=True):
            by_sorted[int(idx)] = seq
    for i, seq in enumerate(by_packed):
        scale = max(1.0, float(np.ptp(eager[i])))
        assert np.abs(seq - eager[i]).max() <= TOLERANCE[precision] * scale
        alone = sorted_batches(*(f[i : i + 1] for f in features), batch_size=1)[0]
        for other in (by_sorted[i], unpack(alone, runner.infer(alone))[0]):
            assert np.abs(seq - other).max() <= INVARIANCE[precision] * scale
            assert _span(seq) == _span(other)


def _kernels(runner: object) -> set[tuple[str, str]]:
    """(layer type, runtime precision) of every node the plugin runs."""
    return {
        (op.get_rt_info()["layerType"].astype(str), op.get_rt_info()["runtimePrecision"].astype(str))
        for op in runner.compiled.get_runtime_model().get_ordered_ops()  # type: ignore[attr-defined]
    }


def test_openvino_int8_per_token_has_int8_weights(tiny: PackedBertForQA) -> None:
    runner = create("openvino", tiny, "int8", threads=1, quant="weights", dynamic_quant=32)
    assert ("FullyConnected", "i8") in _kernels(runner)
    assert "groups of 32" in runner.detail  # type: ignore[attr-defined]


def test_openvino_int8_is_static_smoothquant_by_default(tiny: PackedBertForQA, features: tuple) -> None:
    """The default int8 layers take uint8 activations on a calibrated grid: the plugin runs int8
    FullyConnected kernels with no per-token quantization; ``quant="weights"`` quantizes per token."""
    from packed_bert.backends.openvino_backend import PER_TOKEN_GROUP

    runner = create("openvino", tiny, "int8", threads=1, calibration=calibration_of(features))
    assert ("FullyConnected", "u8") in _kernels(runner)
    assert "SmoothQuant" in runner.detail and "per token" not in runner.detail  # type: ignore[attr-defined]
    per_token = create("openvino", tiny, "int8", threads=1, quant="weights")
    assert f"groups of {PER_TOKEN_GROUP})" in per_token.detail  # type: ignore[attr-defined]
    weights_only = create("openvino", tiny, "int8", threads=1, quant="weights", dynamic_quant=0)
    assert "quantized" not in weights_only.detail  # type: ignore[attr-defined]
    assert "quantized" not in create("openvino", tiny, "bf16", threads=1).detail  # type: ignore[attr-defined]


def test_openvino_options_are_checked(tiny: PackedBertForQA) -> None:
    with pytest.raises(UserError, match="bert-99.9"):
        create("openvino", tiny, "int8", model="bert-99.9")
    with pytest.raises(UserError, match="dynamic_quant"):
        create("openvino", tiny, "bf16", dynamic_quant=-1)
    with pytest.raises(UserError, match="quant must be one of"):
        create("openvino", tiny, "int8", quant="dynamic")
    with pytest.raises(UserError, match="calibrat"):  # static int8 without the calibration set
        create("openvino", tiny, "int8", threads=1)
    with pytest.raises(UserError, match="attention must be"):
        create("openvino", tiny, "bf16", attention="rows")
    with pytest.raises(UserError, match="does not run on device"):
        create("openvino", tiny, "bf16", device="cuda:0")


def test_a_calibrated_graph_is_cached_per_calibration_set(tiny: PackedBertForQA, features: tuple) -> None:
    """The same weights calibrated on other features make another model, not the first one's cache."""
    other = random_features(seed=11, n=9, max_len=170)
    first = create("openvino", tiny, "int8", threads=1, calibration=calibration_of(features))
    again = create("openvino", tiny, "int8", threads=1, calibration=calibration_of(features))
    second = create("openvino", tiny, "int8", threads=1, calibration=calibration_of(other))
    assert first.path == again.path != second.path  # type: ignore[attr-defined]
    batch = pack_batch(*features)
    assert not np.array_equal(first.infer(batch), second.infer(batch))


def test_node_times_name_the_kernels_of_the_last_call(tiny: PackedBertForQA, features: tuple) -> None:
    """``perf_count`` runners report each executed node's layer type, kernel and time; others none."""
    runner = create("openvino", tiny, "int8", threads=1, calibration=calibration_of(features), perf_count=True)
    runner.infer(pack_batch(*features))
    times = runner.node_times()  # type: ignore[attr-defined]
    layers = {layer for layer, _, _ in times}
    assert {"FullyConnected", "MVN"} <= layers
    assert all(seconds >= 0.0 for _, _, seconds in times) and sum(s for _, _, s in times) > 0.0
    plain = create("openvino", tiny, "int8", threads=1, calibration=calibration_of(features))
    plain.infer(pack_batch(*features))
    assert sum(s for _, _, s in plain.node_times()) == 0.0  # type: ignore[attr-defined]


@pytest.mark.parametrize(("bf16_in_hardware", "hint"), [(True, "bf16"), (False, "f32")])
def test_int8_runs_its_other_ops_in_bf16_only_where_the_cpu_has_it(
    tiny: PackedBertForQA, features: tuple, monkeypatch: pytest.MonkeyPatch, bf16_in_hardware: bool, hint: str
) -> None:
    """OpenVINO emulates a bf16 hint on AVX-512 without bf16 (slower than f32), so the int8
    recipe asks for f32 there; its int8 layers stay int8 and its logits near fp32's."""
    from packed_bert.backends import openvino_backend
    from packed_bert.backends.cpu_class import cpu_flags

    if bf16_in_hardware and "avx512f" not in cpu_flags():
        pytest.skip("OpenVINO runs a bf16 hint in f32 on a CPU without AVX-512 (avx2 class): no bf16 MVN to see")
    monkeypatch.setattr(openvino_backend, "native_bf16", lambda: bf16_in_hardware)
    runner = create("openvino", tiny, "int8", threads=1, calibration=calibration_of(features))
    assert f"inference precision {hint}," in runner.detail  # type: ignore[attr-defined]
    kernels = _kernels(runner)
    assert ("FullyConnected", "u8") in kernels and ("MVN", hint) in kernels
    packed = pack_batch(*features)
    got, want = unpack(packed, runner.infer(packed)), unpack(packed, eager_logits(tiny, packed))
    for seq, ref in zip(got, want, strict=True):
        assert np.abs(seq - ref).max() <= TOLERANCE["int8"] * max(1.0, float(np.ptp(ref)))


def test_a_model_the_plugin_cannot_compile_is_a_one_line_error(
    tiny: PackedBertForQA, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OpenVINO capped below AVX-512 has no bf16 Softmax ("Supported primitive descriptors list is
    empty"): the run names the node and the way out instead of a traceback."""
    import openvino as ov

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError(
            "Exception from src/inference/src/cpp/core.cpp:117:\n"
            "Supported primitive descriptors list is empty for node: Softmax_173 type: Softmax\n\n"
        )

    monkeypatch.setattr(ov.Core, "compile_model", refuse)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    with pytest.raises(UserError) as err:
        create("openvino", tiny, "bf16", "cpu", threads=1)
    message = str(err.value)
    assert "\n" not in message and message.startswith("openvino backend: its CPU plugin cannot compile the bf16 model")
    assert "node: Softmax_173 type: Softmax" in message and "unset ONEDNN_MAX_CPU_ISA" in message
