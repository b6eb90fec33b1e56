"""kept=int8-hybrid (kernels/grids.h): the FFN input layer writes the FFN output layer's uint8
input itself, on one fixed grid per layer for the rows within its bound and on each other row's
own grid (that row computed again in bf16), and hands every row's step on. Against the two paths it
is made of (the static uint8 epilogue and int8-rows' own grids), the FFN output layer against its
grids' arithmetic in float64, each row's bits its own, on every build this CPU has."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.row_grids import grid_product, own_row_grids

from packed_bert.backends.amx_kernels import ROW_GRID_U8_LEVELS, AmxLinearWeights
from packed_bert.backends.onnx_int8 import quantize_weight

pytestmark = pytest.mark.usefixtures("kernel_tiles")  # once per tile kind this CPU has (conftest)

K, INNER, N = 128, 256, 64  # the FFN input layer [K, INNER], the output layer [INNER, N]
ZERO = 128  # the grids' zero point


def _layers(seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Weights, biases and SmoothQuant factors of a small FFN, and input rows [70, K] whose sizes
    spread over two orders of magnitude."""
    rng = np.random.default_rng(seed)
    parts = {
        "w1": (rng.standard_normal((K, INNER)) * 0.1).astype(np.float32),
        "b1": (rng.standard_normal(INNER) * 0.1).astype(np.float32),
        "w2": (rng.standard_normal((INNER, N)) * 0.05).astype(np.float32),
        "b2": rng.standard_normal(N).astype(np.float32),
        "smooth": rng.uniform(0.5, 2.0, INNER).astype(np.float32),
    }
    x = rng.standard_normal((70, K)).astype(np.float32) * rng.uniform(0.2, 20, (70, 1)).astype(np.float32)
    return parts, x


def _producer(parts: dict[str, np.ndarray]) -> AmxLinearWeights:
    """The FFN input layer in static int8 with GELU: inputs on a grid of step 0.1 around 128."""
    wq, scale = quantize_weight(parts["w1"])
    return AmxLinearWeights(wq, scale, parts["b1"], np.full(K, 10.0, np.float32), 0.1, ZERO, gelu=True)


def _peaks(parts: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Each row's peak of |GELU output / smooth|, from the producer's bf16 output."""
    y = _producer(parts)(torch.from_numpy(x), torch.bfloat16).float().numpy()
    return np.abs(y * (np.float32(1) / parts["smooth"])).max(axis=1)


def _hybrid(parts: dict[str, np.ndarray], bound: float, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the uint8 tile input, the rows' steps, the output layer's fp32 output) through the modules."""
    producer = _producer(parts)
    consumer = AmxLinearWeights.int8_hybrid(parts["w2"], parts["b2"], parts["smooth"], bound)
    producer.feed(consumer)
    ready = producer(torch.from_numpy(x), torch.float32)
    assert ready.dtype == torch.uint8 and consumer.steps is not None
    steps = consumer.steps[1].clone()
    out = consumer(ready, torch.float32)
    return ready.numpy().copy(), steps.numpy(), out.double().numpy()


def test_rows_within_the_bound_take_the_fixed_grid_and_the_others_their_own() -> None:
    parts, x = _layers(4)
    peaks = _peaks(parts, x)
    bound = float(np.median(peaks))
    ready, steps, _ = _hybrid(parts, bound, x)
    fixed_step = np.float32(bound) / np.float32(ROW_GRID_U8_LEVELS)
    own = steps != fixed_step
    # rows clearly past the bound (in the bf16 GELU; the fixed grid's GELU is a cubic fit) go on their own
    assert np.all(own[peaks > bound * 1.02]) and not np.any(own[peaks < bound * 0.98])
    assert 20 <= int(own.sum()) <= 50
    # the fixed grid: the static uint8 epilogue's values for a consumer whose grid is the fixed one
    levels = np.float32(ROW_GRID_U8_LEVELS)
    fixed_scale = (np.float32(1) / parts["smooth"]) * (levels / np.float32(bound))
    static = AmxLinearWeights(*quantize_weight(parts["w2"]), parts["b2"], fixed_scale, 1.0, ZERO)
    producer = _producer(parts)
    producer.feed(static)
    on_fixed = producer(torch.from_numpy(x), torch.float32).numpy()
    np.testing.assert_array_equal(ready[~own], on_fixed[~own])
    # the others: int8-rows' own grid of the bf16 GELU output (row_grid_u8's rounding), step peak / 127
    y = _producer(parts)(torch.from_numpy(x[own]), torch.bfloat16).float().numpy()
    q, step = own_row_grids((y * (np.float32(1) / parts["smooth"])).astype(np.float32))
    np.testing.assert_array_equal(ready[own], (q + ZERO).astype(np.uint8))
    np.testing.assert_array_equal(steps[own], step)


def test_the_output_layer_is_its_grids_integer_product_and_each_rows_bits_are_its_own() -> None:
    parts, x = _layers(5)
    bound = float(np.quantile(_peaks(parts, x), 0.7))
    ready, steps, out = _hybrid(parts, bound, x)
    want = grid_product(ready.astype(np.float64) - ZERO, steps, parts["w2"], parts["smooth"], parts["b2"])
    assert float(np.abs(out - want).max()) <= 4 * 2**-24 * float(np.abs(want).max())
    for part in (slice(0, 5), slice(20, 23), slice(60, 70)):  # alone or beside others: the same bits
        alone = _hybrid(parts, bound, np.ascontiguousarray(x[part]))
        for got, whole in zip(alone, (ready, steps, out), strict=True):
            np.testing.assert_array_equal(got, whole[part])


def test_a_float_input_takes_its_own_grid_per_row_and_a_uint8_one_needs_its_steps() -> None:
    parts, x = _layers(6)
    hybrid = AmxLinearWeights.int8_hybrid(parts["w2"], parts["b2"], parts["smooth"], 1.0)
    rows = AmxLinearWeights.int8_rows(parts["w2"], parts["b2"], parts["smooth"])
    y = _producer(parts)(torch.from_numpy(x), torch.bfloat16)
    np.testing.assert_array_equal(hybrid(y, torch.float32).numpy(), rows(y, torch.float32).numpy())
    with pytest.raises(RuntimeError, match="needs the feeding layer's row steps"):
        hybrid(torch.full((32, INNER), ZERO, dtype=torch.uint8), torch.float32)
    with pytest.raises(ValueError, match="bound must be positive"):
        AmxLinearWeights.int8_hybrid(parts["w2"], parts["b2"], parts["smooth"], 0.0)
