"""Our kernels' linear layers whose input rows each go on a grid of their own (kernels/linear.h):
the 12-bit x int8 layer of the soft-tile builds (``AmxLinearWeights.int12``, W_S16: int16 pairs
into int32 sums; the AMX build has no int16 tiles, so there it is a one-line error) and the 8-bit
one of every build (``AmxLinearWeights.int8_rows``, W_S8R: the input divided by SmoothQuant
factors, uint8 with zero point 128). Against their grids' arithmetic in float64, at a full grid's
largest sums, the same bits on every build and in any batch, and torch option kept=NAME in the
one-call encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.row_grids import grid_product, own_row_grids
from helpers.tiny_model import calibration_of, perturbed_tiny_model, random_features, same_in_any_batch

from packed_bert.backends import amx_kernels, create, row_smoothing
from packed_bert.backends.amx_encoder import AmxEncoder
from packed_bert.backends.amx_kernels import KEPT_PRECISIONS, ROW_GRID_LEVELS, SOFT_TILES, TILES, AmxLinearWeights
from packed_bert.backends.cpu_class import cpu_flags
from packed_bert.backends.onnx_int8 import quantize_weight
from packed_bert.backends.torch_amx import AmxInt8HybridLinear, AmxInt8RowsLinear, AmxInt12Linear
from packed_bert.errors import UserError
from packed_bert.packing import infer_sequences

pytestmark = pytest.mark.usefixtures("kernel_tiles")  # once per tile kind this CPU has (conftest)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACKED_BERT_CACHE", str(tmp_path_factory.getbasetemp() / "amx-cache"))


def _grid_reference(x: np.ndarray, w: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """kernels/linear.h's W_S16 arithmetic in float64 from its grids: each row's int16 values as
    row_grid rounds them (the factor levels / max|x| in float32, the product rounded half to even),
    the weight's int8 grid per column, and the exact sums times both steps."""
    x32 = x.astype(np.float32)
    top = np.abs(x32).max(axis=1)
    nonzero = np.where(top > 0, top, np.float32(1))
    factor = np.where(top > 0, np.float32(ROW_GRID_LEVELS) / nonzero, np.float32(0)).astype(np.float32)
    q = np.clip(np.rint(x32 * factor[:, None]), -ROW_GRID_LEVELS, ROW_GRID_LEVELS)
    step = (top / np.float32(ROW_GRID_LEVELS)).astype(np.float32)
    wq, scale = quantize_weight(w)
    sums = q.astype(np.float64) @ wq.astype(np.float64)
    return sums * scale.astype(np.float64) * step.astype(np.float64)[:, None] + bias


def _soft_only(kernel_tiles: str) -> None:
    if kernel_tiles not in SOFT_TILES:  # what the AMX build answers instead
        with pytest.raises(UserError, match=r"kept=int12 runs on the avx512-bf16 and avx512-vnni builds .* drop kept"):
            AmxLinearWeights.int12(np.ones((64, 32), np.float32), np.zeros(32, np.float32))
        pytest.skip(f"the {kernel_tiles} build has no int16 products: its one-line error checked instead")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_int12_layer_is_its_grids_integer_product_scaled_per_row_and_column(
    kernel_tiles: str, dtype: torch.dtype
) -> None:
    _soft_only(kernel_tiles)
    rng = np.random.default_rng(3)
    k, n, rows = 256, 96, 45
    w = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    x = torch.from_numpy(rng.standard_normal((rows, k)).astype(np.float32) * rng.uniform(0.1, 30, (rows, 1)))
    x[7] = 0  # a row of zeros: step 0, the bias alone
    x[9, 3] = 400.0  # one large value: the rest of that row on a coarse grid
    x = x.to(dtype)
    layer = AmxLinearWeights.int12(w, bias)
    got = layer(x, torch.float32).double().numpy()
    want = _grid_reference(x.float().numpy(), w, bias)
    # two float32 roundings of the scaled sums (times the column's step, then the row's with the bias)
    assert float(np.abs(got - want).max()) <= 4 * 2**-24 * float(np.abs(want).max())
    np.testing.assert_array_equal(got[7], bias.astype(np.float64))
    exact = x.double().numpy() @ w.astype(np.float64) + bias
    assert float(np.abs(got - want).max()) < 0.01 * float(np.abs(got - exact).max())  # the grids' own error dominates
    alone = layer(x[30:33].contiguous(), torch.float32).double().numpy()
    np.testing.assert_array_equal(alone, got[30:33])  # each row on its own grid: the same bits in any batch


def test_a_full_grids_largest_sums_do_not_overflow(kernel_tiles: str) -> None:
    """Every input value at the grid's end (2,047) times every weight at int8's (127) over BERT's
    FFN output K (4,096): 1,064,828,928, below 2^31; a 16-bit grid would wrap here."""
    _soft_only(kernel_tiles)
    k, n = 4096, 32
    w = np.ones((k, n), np.float32)
    w[:, 1::2] = -1
    x = torch.full((3, k), 0.5)
    x[1] = -2.0
    got = AmxLinearWeights.int12(w, np.zeros(n, np.float32))(x, torch.float32).numpy()
    want = np.array([[k * 0.5], [-k * 2.0], [k * 0.5]]) * np.where(np.arange(n) % 2, -1, 1)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert (
        amx_kernels.ROW_GRID_MAX_K * ROW_GRID_LEVELS * 127
        < 2**31
        <= (amx_kernels.ROW_GRID_MAX_K + 1) * ROW_GRID_LEVELS * 127
    )
    with pytest.raises(UserError, match="kept=int12 sums at most 8260 products in int32, this layer 8288"):
        AmxLinearWeights.int12(np.ones((8288, n), np.float32), np.zeros(n, np.float32))


@pytest.mark.skipif(
    not cpu_flags() >= TILES["avx512-bf16"], reason="both soft-tile builds: needs a CPU with AVX-512 VNNI and BF16"
)
def test_both_soft_tile_builds_give_the_int12_layer_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(5)
    w = (rng.standard_normal((512, 64)) * 0.03).astype(np.float32)
    bias = rng.standard_normal(64).astype(np.float32)
    x = torch.from_numpy(rng.standard_normal((70, 512)).astype(np.float32)).to(torch.bfloat16)
    outs = []
    for kind in SOFT_TILES:
        monkeypatch.setattr(amx_kernels, "tiles_here", lambda kind=kind: kind)
        outs.append(AmxLinearWeights.int12(w, bias, gelu=True)(x, torch.bfloat16).float().numpy())
    np.testing.assert_array_equal(outs[0], outs[1])
    assert float(np.abs(outs[0]).max()) > 0


def _int8_rows_reference(x: torch.Tensor, w: np.ndarray, bias: np.ndarray, smooth: np.ndarray) -> np.ndarray:
    """kernels/linear.h's W_S8R arithmetic in float64 from its grids: each row of x / smooth (in
    float32) on its own 8-bit grid as row_grid_u8 rounds it, the weight's int8 grid per column, the
    exact sums times both steps."""
    v = (x.float().numpy() * (np.float32(1) / smooth)).astype(np.float32)  # the kernel's per-channel factors
    return grid_product(*own_row_grids(v), w, smooth, bias)


def test_int8_rows_layer_is_its_grids_integer_product_on_every_build(kernel_tiles: str) -> None:
    rng = np.random.default_rng(8)
    k, n, rows = 256, 64, 45
    w = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    smooth = rng.uniform(0.3, 3.0, k).astype(np.float32)
    x = torch.from_numpy(rng.standard_normal((rows, k)).astype(np.float32) * rng.uniform(0.1, 30, (rows, 1)))
    x[4] = 0  # a row of zeros: step 0, the bias alone
    x = x.to(torch.bfloat16)
    got = AmxLinearWeights.int8_rows(w, bias, smooth)(x, torch.float32).double().numpy()
    want = _int8_rows_reference(x, w, bias, smooth)
    assert float(np.abs(got - want).max()) <= 4 * 2**-24 * float(np.abs(want).max())
    np.testing.assert_array_equal(got[4], bias.astype(np.float64))
    alone = AmxLinearWeights.int8_rows(w, bias, smooth)(x[20:23].contiguous(), torch.float32).double().numpy()
    np.testing.assert_array_equal(alone, got[20:23])


def test_a_large_inputs_rows_keep_their_own_bits_on_the_offline_batch_path(kernel_tiles: str) -> None:
    """An input past L2 (2 MB here; an Offline batch's GELU output is 21 MB) whose partial sums
    would outgrow it too (up to three threads; more would slice K): no K slices, no claimed
    chunks, each thread its fixed share of the columns with every row block passing each chunk
    (linear.h's path for a 16-sample batch's FFN output layer). A row's bits are its own there
    as in a small call, down to the last row block's part (1,037 rows), a row of zeros and a row
    of one large value."""
    rng = np.random.default_rng(12)
    k, n, rows = 2048, 384, 1037
    w = (rng.standard_normal((k, n)) * 0.03).astype(np.float32)
    bias, smooth = rng.standard_normal(n).astype(np.float32), rng.uniform(0.5, 2.0, k).astype(np.float32)
    x = torch.from_numpy(rng.standard_normal((rows, k)).astype(np.float32) * rng.uniform(0.1, 30, (rows, 1)))
    x[600] = 0
    x[1036, 5] = 900.0
    x = x.to(torch.bfloat16)
    layer = AmxLinearWeights.int8_rows(w, bias, smooth)
    got = layer(x, torch.float32).double().numpy()
    want = _int8_rows_reference(x, w, bias, smooth)
    assert float(np.abs(got - want).max()) <= 4 * 2**-24 * float(np.abs(want).max())
    for part in (slice(0, 40), slice(590, 610), slice(1000, 1037)):
        np.testing.assert_array_equal(layer(x[part].contiguous(), torch.float32).double().numpy(), got[part])
    np.testing.assert_array_equal(got[600], bias.astype(np.float64))


@pytest.mark.skipif(
    not cpu_flags() >= TILES["amx"] | TILES["avx512-bf16"],
    reason="all three builds: needs a CPU with AMX and AVX-512 BF16",
)
def test_every_build_gives_the_int8_rows_layer_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(9)
    w = (rng.standard_normal((512, 64)) * 0.03).astype(np.float32)
    bias, smooth = rng.standard_normal(64).astype(np.float32), rng.uniform(0.5, 2.0, 512).astype(np.float32)
    x = torch.from_numpy(rng.standard_normal((70, 512)).astype(np.float32)).to(torch.bfloat16)
    outs = []
    for kind in TILES:
        monkeypatch.setattr(amx_kernels, "tiles_here", lambda kind=kind: kind)
        outs.append(AmxLinearWeights.int8_rows(w, bias, smooth, gelu=True)(x, torch.bfloat16).float().numpy())
    for other in outs[1:]:
        np.testing.assert_array_equal(other, outs[0])  # integer sums, the same epilogue
    assert float(np.abs(outs[0]).max()) > 0


def _runner(features: tuple[np.ndarray, np.ndarray, np.ndarray], kept: str):  # type: ignore[no-untyped-def]
    model = perturbed_tiny_model(2)  # head dimension 32: the attention kernel's, so the encoder is one call
    return create(
        "torch",
        model,
        "int8-bf16",
        "cpu",
        kernel="amx",
        residual="bf16",
        kept=kept,
        calibration=calibration_of(features),
    )


def test_kept_int12_runs_the_ffn_output_on_its_grids_in_the_one_call_encoder_with_the_modules_bits(
    kernel_tiles: str,
) -> None:
    """int8-bf16 with kept=int12: the FFN output layers in 12-bit x int8, one encoder call giving
    the layer-by-layer modules' bits in any batch, and logits near the bf16-kept recipe's."""
    features = random_features(12, 10, 120)
    if kernel_tiles not in SOFT_TILES:
        with pytest.raises(UserError, match="kept=int12 runs on the avx512-bf16 and avx512-vnni builds"):
            _runner(features, "int12")
        pytest.skip(f"the {kernel_tiles} build has no int16 products: its one-line error checked instead")
    _kept_in_the_encoder(features, "int12", AmxInt12Linear, 0.02)


def _kept_in_the_encoder(
    features: tuple[np.ndarray, np.ndarray, np.ndarray], kept: str, layer: type, within: float
) -> None:
    """int8-bf16 with ``kept``: its FFN output layers are ``layer``, the one-call encoder gives the
    layer-by-layer modules' bits in any batch, and the logits lie ``within`` (of their mean size)
    of the bf16-kept recipe's, but not on them."""
    runner = _runner(features, kept)
    encoder = runner.model.bert.encoder
    assert isinstance(encoder, AmxEncoder) and encoder.fused
    assert isinstance(encoder.encoder.layer[0].output.dense, layer)
    assert f"ffn-output in {KEPT_PRECISIONS[kept]}" in runner.detail
    fused = same_in_any_batch(runner.infer, features)
    encoder.fused = False
    modules = infer_sequences(runner.infer, *features, "packed", 4)
    for a, b in zip(fused, modules, strict=True):
        np.testing.assert_array_equal(a, b)
    bf16_kept = infer_sequences(_runner(features, "bf16").infer, *features, "sorted", 4)
    diff = np.mean([float(np.abs(a - b).mean()) for a, b in zip(fused, bf16_kept, strict=True)])
    assert 0 < diff < within * np.mean([float(np.abs(b).mean()) for b in bf16_kept])


def test_kept_int8_rows_runs_the_ffn_output_on_int8_products_in_the_one_call_encoder_with_the_modules_bits() -> None:
    _kept_in_the_encoder(random_features(13, 10, 120), "int8-rows", AmxInt8RowsLinear, 0.05)


def test_kept_int8_hybrid_runs_the_ffn_output_on_fixed_and_own_grids_in_the_one_call_encoder_with_the_modules_bits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the fixed grids' bound at 0.8x the calibration rows' 95th percentile peak, 7-28% of a
    layer's rows pass it (the tiny model's rows pass none at the recipe's 1.25x): both kinds of
    row, in the encoder kernel as in the modules."""
    monkeypatch.setattr(row_smoothing, "HYBRID_MARGIN", 0.8)
    handed: list[tuple[float, torch.Tensor]] = []
    hand_steps = AmxLinearWeights.hand_steps

    def spy(self: AmxLinearWeights, ready: torch.Tensor, steps: torch.Tensor) -> None:
        handed.append((self.fixed_step, steps.clone()))
        hand_steps(self, ready, steps)

    monkeypatch.setattr(AmxLinearWeights, "hand_steps", spy)
    _kept_in_the_encoder(random_features(13, 10, 120), "int8-hybrid", AmxInt8HybridLinear, 0.05)
    own = [float((steps != np.float32(fixed)).float().mean()) for fixed, steps in handed]  # the modules' calls
    assert own and 0.05 < float(np.mean(own)) < 0.95


def test_kept_settings_are_one_line_errors() -> None:
    with pytest.raises(UserError, match="kept must be one of bf16, int12, int8-rows, int8-hybrid, got 'int4'"):
        create("torch", "tiny", "int8-bf16", "cpu", kernel="amx", kept="int4")
    with pytest.raises(UserError, match="kept=int12 sets the precision of the layers int8-bf16 keeps out of int8"):
        create("torch", "tiny", "bf16", "cpu", kernel="amx", kept="int12")
