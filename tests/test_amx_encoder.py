"""The whole AMX encoder in one kernel call (``amx_encoder.AmxEncoder``): the same kernel calls in
the same order as the layer-by-layer modules, so the same bits, for both AMX recipes; the
modules still run where the attention kernel does not apply."""

from __future__ import annotations

import ctypes
import functools

import numpy as np
import pytest
import torch
from helpers.tiny_model import calibration_of, perturbed_tiny_model, random_features, same_in_any_batch

from packed_bert.backends import amx_kernels, create
from packed_bert.backends.amx_encoder import AmxEncoder
from packed_bert.backends.torch_amx import AmxBf16Linear, AmxQaHead
from packed_bert.backends.torch_int8 import StaticInt8Linear
from packed_bert.errors import UserError
from packed_bert.packing import infer_sequences
from packed_bert.terms import CALIBRATED

pytestmark = pytest.mark.usefixtures("kernel_tiles")  # once per tile kind this CPU has (conftest)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACKED_BERT_CACHE", str(tmp_path_factory.getbasetemp() / "amx-cache"))


def _runner(
    precision: str,
    heads: int,
    features: tuple[np.ndarray, np.ndarray, np.ndarray],
    residual: str = "fp32",
    attention: str = "bf16",
    **model: int,
):  # type: ignore[no-untyped-def]
    extra = {"calibration": calibration_of(features)} if precision in CALIBRATED else {}
    model_ = perturbed_tiny_model(heads, **model)
    return create("torch", model_, precision, "cpu", kernel="amx", residual=residual, attention=attention, **extra)


@pytest.mark.parametrize(
    ("precision", "attention"),
    [("int8", "bf16"), ("bf16", "bf16"), ("int8-bf16", "bf16"), ("int8", "int8"), ("int8-bf16", "int8-scores")],
)
def test_one_call_gives_the_layer_by_layer_bits_in_any_batch(precision: str, attention: str) -> None:
    features = random_features(5, 10, 120)
    runner = _runner(precision, 2, features, attention=attention)  # head dimension 32: the attention kernel's
    encoder = runner.model.bert.encoder
    assert isinstance(encoder, AmxEncoder)
    assert isinstance(runner.model.qa_outputs, AmxQaHead)  # the QA head's row kernel too
    fused = same_in_any_batch(runner.infer, features)
    calls = []
    real = type(encoder.encoder).forward
    encoder.encoder.forward = lambda *a: calls.append(1) or real(encoder.encoder, *a)  # type: ignore[method-assign]
    packed_fused = infer_sequences(runner.infer, *features, "packed", 4)
    assert calls == []  # the modules did not run
    assert not runner.computes_padding  # the sequences' tokens alone: what the demo tells its user
    encoder.fused = False
    packed_modules = infer_sequences(runner.infer, *features, "packed", 4)
    assert calls  # now they did
    assert runner.computes_padding
    for a, b, c in zip(fused, packed_fused, packed_modules, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(b, c)
    assert float(np.abs(fused[0]).max()) > 0


@pytest.mark.parametrize(("precision", "width"), [("int8", 4096), ("bf16", 2048), ("int8-bf16", 2048)])
def test_ffn_rows_of_4_kib_lie_a_cache_line_further_apart_with_the_same_bits(precision: str, width: int) -> None:
    """The FFN's inner rows (4 KiB: BERT-Large's 4,096 uint8 or, here, 2,048 bf16 values) lie 64
    bytes further apart in the one-call encoder, so a tile's rows fall in different L1 sets; the
    modules keep them contiguous. The logits are the same bits."""
    features = random_features(8, 4, 70)
    runner = _runner(precision, 2, features, intermediate=width)
    encoder = runner.model.bert.encoder
    assert isinstance(encoder, AmxEncoder) and encoder.fused
    assert encoder._inter_stride * encoder._inter_dtype.itemsize == 4096 + 64
    fused = infer_sequences(runner.infer, *features, "packed", 4)
    encoder.fused = False
    modules = infer_sequences(runner.infer, *features, "packed", 4)
    for a, b in zip(fused, modules, strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(np.abs(fused[0]).max()) > 0


def test_a_head_dimension_the_kernel_does_not_take_runs_the_modules() -> None:
    features = random_features(6, 4, 60)
    runner = _runner("int8", 4, features)  # head dimension 16
    encoder = runner.model.bert.encoder
    calls = []
    real = type(encoder.encoder).forward
    encoder.encoder.forward = lambda *a: calls.append(1) or real(encoder.encoder, *a)  # type: ignore[method-assign]
    logits = infer_sequences(runner.infer, *features, "sorted", 2)
    assert len(calls) == 2 and all(np.isfinite(x).all() for x in logits)


def test_layers_of_mixed_tile_kinds_run_the_modules() -> None:
    """The work buffers hold one tile kind per role (uint8 or bf16): an encoder whose layers differ
    in a role's kind is not fused; one whose roles differ from each other (int8-bf16) is."""
    features = random_features(7, 4, 60)
    int8 = _runner("int8", 2, features).model.bert.encoder
    bf16 = _runner("bf16", 2, features).model.bert.encoder
    assert int8.fused and bf16.fused
    int8.encoder.layer[1].intermediate = bf16.encoder.layer[1].intermediate
    assert not AmxEncoder(int8.encoder).fused
    mixed = _runner("int8-bf16", 2, features).model.bert.encoder
    assert mixed.fused and (mixed._att_dtype, mixed._inter_dtype) == (torch.uint8, torch.bfloat16)


def test_int8_bf16_keeps_the_named_layers_in_bf16_and_the_rest_int8() -> None:
    """int8-bf16 keeps the FFN output layer in bf16 by default, any named layers otherwise; its
    logits lie between int8's and bf16's: not int8's bits, and closer to bf16 than int8 is."""
    features = random_features(9, 4, 80)
    runners = {p: _runner(p, 2, features) for p in ("int8", "bf16", "int8-bf16")}
    layer = runners["int8-bf16"].model.bert.encoder.encoder.layer[0]
    assert isinstance(layer.output.dense, AmxBf16Linear) and isinstance(layer.intermediate, StaticInt8Linear)
    assert "ffn-output in bf16" in runners["int8-bf16"].detail
    logits = {p: np.concatenate(infer_sequences(r.infer, *features, "sorted", 4)) for p, r in runners.items()}
    assert not np.array_equal(logits["int8-bf16"], logits["int8"])
    mixed_gap = float(np.abs(logits["int8-bf16"] - logits["bf16"]).max())
    assert mixed_gap < float(np.abs(logits["int8"] - logits["bf16"]).max())
    both = create(
        "torch", perturbed_tiny_model(2), "int8-bf16", "cpu", kernel="amx", calibration=calibration_of(features),
        bf16_layers="ffn-input,ffn-output",
    )  # fmt: skip
    layer = both.model.bert.encoder.encoder.layer[0]
    assert isinstance(layer.intermediate, AmxBf16Linear) and isinstance(layer.attention.output.dense, StaticInt8Linear)


def test_the_phase_timing_build_times_each_kernel_and_keeps_the_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    """``benchmarks/amx_phases.py`` builds the library with -DPB_PHASE_TIMES: the encoder then adds
    each of a layer's seven kernel calls' time to a counter, and the threads' waits for each other
    at those calls' ends (within the calls' time) to another, and computes what the default build
    does."""
    features = random_features(5, 6, 100)
    plain = infer_sequences(_runner("int8", 2, features).infer, *features, "sorted", 2)
    amx_kernels.loaded.cache_clear()
    monkeypatch.setattr(amx_kernels, "build", functools.partial(amx_kernels.build, defines=("PB_PHASE_TIMES",)))
    try:
        count = ctypes.c_int.in_dll(amx_kernels.library(), "pb_phase_count").value
        assert count == 7
        counters = (ctypes.c_double * count).in_dll(amx_kernels.library(), "pb_phase_seconds")
        idle = (ctypes.c_double * count).in_dll(amx_kernels.library(), "pb_idle_seconds")
        timed = infer_sequences(_runner("int8", 2, features).infer, *features, "sorted", 2)
        assert all(counters[i] > 0 for i in range(count))
        assert all(0 <= idle[i] <= counters[i] for i in range(count))
    finally:
        amx_kernels.loaded.cache_clear()  # the next test loads the default build
    for a, b in zip(plain, timed, strict=True):
        np.testing.assert_array_equal(a, b)


# every large-input path of the linear kernel, on a tiny model's few kilobytes: weights in chunks
# with the next one prefetched, K in slices with partial sums in memory, uint8 outputs gathered and
# streamed, float outputs streamed
LARGE_PATHS = ("SMALL_INPUT=0", "SLICE_INPUT=64", "PARTIAL_MAX=(1L<<40)", "STREAM_OUTPUT=0", "CHUNK_LARGE=0")


@pytest.mark.parametrize(
    ("precision", "residual"),
    [("int8", "fp32"), ("int8-bf16", "fp32"), ("int8", "bf16")],
    ids=["int8", "int8-bf16", "int8, bf16 residual stream"],
)
def test_the_linear_kernels_cache_thresholds_move_data_not_values(
    precision: str, residual: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernels' cache sizes and thresholds (``#ifndef`` in kernels/amx.c, set with
    ``amx_phases.py --define``) choose how weights and inputs pass through the caches and where
    outputs go: a build that takes every large-input path on the tiny model (the add+LayerNorm's
    fp32 or bf16 residual rows streamed in whole lines too) gives the bits of the default build,
    which takes none of them."""
    features = random_features(6, 6, 100)
    plain = infer_sequences(_runner(precision, 2, features, residual).infer, *features, "sorted", 3)
    amx_kernels.loaded.cache_clear()
    monkeypatch.setattr(amx_kernels, "build", functools.partial(amx_kernels.build, defines=LARGE_PATHS))
    try:
        varied = infer_sequences(_runner(precision, 2, features, residual).infer, *features, "sorted", 3)
    finally:
        amx_kernels.loaded.cache_clear()  # the next test loads the default build
    for a, b in zip(plain, varied, strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(np.abs(plain[0]).max()) > 0


@pytest.mark.parametrize("precision", ["int8", "bf16", "int8-bf16"])
def test_a_bf16_residual_stream_keeps_the_bits_in_any_batch_and_stays_near_fp32s(precision: str) -> None:
    """residual=bf16 keeps the residual stream (the embeddings' output and every add+LayerNorm's)
    in bf16: the one-call encoder and the modules still agree bit for bit, in any batch, and the
    logits move from the fp32 stream's by about bf16's rounding, not more."""
    features = random_features(7, 8, 120)
    runner = _runner(precision, 2, features, residual="bf16")
    assert "the residual stream in bf16" in runner.detail  # the run's record says so
    encoder = runner.model.bert.encoder
    assert isinstance(encoder, AmxEncoder)
    fused = same_in_any_batch(runner.infer, features)
    encoder.fused = False
    modules = infer_sequences(runner.infer, *features, "sorted", 3)
    for a, b in zip(fused, modules, strict=True):
        np.testing.assert_array_equal(a, b)
    wide = infer_sequences(_runner(precision, 2, features).infer, *features, "sorted", 3)
    gap = max(float(np.abs(a - b).max()) for a, b in zip(fused, wide, strict=True))
    scale = max(float(np.abs(b).max()) for b in wide)
    assert 0 < gap < 0.05 * scale


def test_residual_bf16_needs_our_amx_kernels() -> None:
    features = random_features(8, 2, 40)
    with pytest.raises(UserError, match="kernel=amx"):
        create("torch", perturbed_tiny_model(2), "int8", "cpu", residual="bf16", calibration=calibration_of(features))
    with pytest.raises(UserError, match="fp32, bf16"):
        _runner("int8", 2, features, residual="fp16")
