"""packed-bert's own AMX kernels (``amx_kernels``, ``kernels/amx.c``): the int8 linear layer
against its integer arithmetic, a uint8 hand-over between two layers, attention per sequence
against float64, add+LayerNorm against torch, the same bits for a row in any batch, and the
torch int8 runner built on them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.tiny_model import calibration_of, perturbed_tiny_model, random_features, same_in_any_batch

from packed_bert.backends import amx_kernels, create
from packed_bert.backends.amx_kernels import AmxLinearWeights, SequenceAttention, add_layernorm, pack_weight, tiles_here
from packed_bert.backends.cpu_class import cpu_flags
from packed_bert.backends.denormals import flushing
from packed_bert.errors import UserError
from packed_bert.model import PackedBertForQA
from packed_bert.model.attention import matmul_attention, sequence_core
from packed_bert.packing import infer_sequences

needs_amx = pytest.mark.usefixtures("kernel_tiles")  # once per tile kind this CPU has (conftest)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACKED_BERT_CACHE", str(tmp_path_factory.getbasetemp() / "amx-cache"))


def test_weights_are_packed_in_amx_tile_order() -> None:
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (128, 64), dtype=np.int8)
    packed = pack_weight(w)
    assert packed.shape == (4, 2, 16, 16, 4)  # column blocks, K blocks, tile rows, columns, bytes
    for nb, kb, r, n, b in [(0, 0, 0, 0, 0), (3, 1, 15, 15, 3), (2, 1, 7, 4, 1), (1, 0, 3, 9, 2)]:
        assert packed[nb, kb, r, n, b] == w[kb * 64 + r * 4 + b, nb * 16 + n]
    with pytest.raises(UserError, match=r"\[100, 64\].*kernel=onednn"):
        pack_weight(w[:100])


def _layer(rng: np.random.Generator, k: int, n: int, *, gelu: bool = False) -> tuple[AmxLinearWeights, dict[str, Any]]:
    wq = rng.integers(-127, 128, (k, n), dtype=np.int8)
    parts: dict[str, Any] = {
        "wq": wq,
        "weight_scale": rng.uniform(1e-3, 3e-3, n).astype(np.float32),
        "bias": rng.standard_normal(n).astype(np.float32),
        "in_scale": rng.uniform(5.0, 20.0, k).astype(np.float32),
        "grid_scale": 0.07,
        "zero_point": 117,
    }
    return AmxLinearWeights(**parts, gelu=gelu), parts


def test_the_build_key_covers_every_part_the_source_includes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """amx.c includes its parts from its own folder; a part edited must give another library
    (the key), and every part it includes must be in the key."""
    root = amx_kernels.SOURCE
    included = re.findall(r'^#include "([^"]+)"', root.read_text(), flags=re.MULTILINE)
    assert len(included) >= 5
    copy = tmp_path / "kernels"
    shutil.copytree(root.parent, copy)
    monkeypatch.setattr(amx_kernels, "SOURCE", copy / root.name)
    before = amx_kernels.source_texts()
    for part in included:
        assert any(text.startswith(f"{part}\n") for text in before), part
        (copy / part).write_text((copy / part).read_text() + "/* edited */\n")
        after = amx_kernels.source_texts()
        assert after != before, part
        before = after


def test_packed_weights_start_on_a_cache_line() -> None:
    rng = np.random.default_rng(9)
    layers = [_layer(rng, 64 * (1 + i % 3), 32 * (1 + i % 2))[0] for i in range(12)]  # numpy's buffers: 16 bytes apart
    assert {layer.packed.data_ptr() % 64 for layer in layers} == {0}


def _reference(x: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """The layer's arithmetic in float64 on the kernel's uint8 grid."""
    q = np.clip(np.rint(x.astype(np.float32) * p["in_scale"]) + p["zero_point"], 0, 255)
    acc = (q - p["zero_point"]) @ p["wq"].astype(np.float64)
    return acc * (p["weight_scale"].astype(np.float64) * p["grid_scale"]) + p["bias"]


@needs_amx
@pytest.mark.parametrize("gelu", [False, True])
def test_int8_layer_is_the_integer_product_of_its_quantized_input(gelu: bool) -> None:
    rng = np.random.default_rng(1)
    layer, parts = _layer(rng, 128, 96, gelu=gelu)
    x = rng.standard_normal((45, 128)).astype(np.float32) * 4  # 45 rows: a partial row block
    want = _reference(x, parts)
    if gelu:
        want = F.gelu(torch.from_numpy(want)).numpy()
    got = layer(torch.from_numpy(x).reshape(5, 9, 128), torch.float32)
    assert got.shape == (5, 9, 96) and got.dtype == torch.float32
    np.testing.assert_allclose(got.reshape(45, 96).numpy(), want, rtol=1e-5, atol=1e-5)
    as_bf16 = layer(torch.from_numpy(x), torch.bfloat16)  # the same values, rounded once to bf16
    torch.testing.assert_close(as_bf16, got.reshape(45, 96).to(torch.bfloat16), rtol=0, atol=0)
    x16 = torch.from_numpy(x).to(torch.bfloat16)  # a bf16 input is read as is
    want16 = _reference(x16.float().numpy(), parts)
    if gelu:
        want16 = F.gelu(torch.from_numpy(want16)).numpy()
    np.testing.assert_allclose(layer(x16, torch.float32).numpy(), want16, rtol=1e-5, atol=1e-5)


@needs_amx
def test_gelu_onto_a_uint8_grid_rounds_the_erf_form_but_within_3e_6_of_a_step_boundary() -> None:
    """Where the FFN input layer writes the next layer's uint8 input, GELU is the cheaper cubic per
    interval (|error| <= 3e-6): a result moves to the neighbouring step only when the exact one lies
    that close to the boundary between two."""
    n = 4096
    bias = np.linspace(-12.0, 12.0, n).astype(np.float32)
    layer = AmxLinearWeights(
        np.zeros((64, n), dtype=np.int8), np.ones(n, np.float32), bias, np.ones(64, np.float32), 1.0, 0, gelu=True
    )
    grid = 37.0  # the consumer's step is 1/37, its zero point 100: GELU(bias) * 37 + 100 spans [94, 544]
    consumer = AmxLinearWeights(
        np.zeros((n, 32), dtype=np.int8),
        np.ones(32, np.float32),
        np.zeros(32, np.float32),
        np.full(n, grid, np.float32),
        1 / grid,
        100,
    )
    layer.feed(consumer)
    got = layer(torch.ones(3, 64), torch.float32)
    assert got.dtype == torch.uint8
    exact = F.gelu(torch.from_numpy(bias.astype(np.float64))).numpy() * grid + 100
    want = np.clip(np.rint(exact), 0, 255)
    near = np.abs(exact - np.floor(exact) - 0.5) < 3e-6 * grid
    diff = np.abs(got[0].numpy().astype(np.int64) - want)
    assert diff[~near].max() == 0 and diff.max() <= 1
    assert 0 < (want == 255).sum() < n and (want < 100).sum() > 0  # the sweep reaches both ends of the grid


@needs_amx
def test_gelu_is_within_a_float32_rounding_of_the_erf_form_over_every_range() -> None:
    # zero weights: every row is GELU(bias), the bias sweeping the table's edges and past them
    n = 4096
    bias = np.linspace(-12.0, 12.0, n).astype(np.float32)
    layer = AmxLinearWeights(
        np.zeros((64, n), dtype=np.int8), np.ones(n, np.float32), bias, np.ones(64, np.float32), 1.0, 0, gelu=True
    )
    got = layer(torch.ones(3, 64), torch.float32).numpy().astype(np.float64)
    want = F.gelu(torch.from_numpy(bias.astype(np.float64))).numpy()
    assert np.abs(got - want).max() <= 5e-7
    big = np.abs(want) > 0.05  # the table is accurate in absolute terms; near 0 that is what counts
    assert (np.abs(got - want)[:, big] / np.abs(want[big])).max() <= 1e-6  # a few float32 ulps
    np.testing.assert_array_equal(got[0], got[2])


@needs_amx
def test_a_layer_hands_its_output_to_the_next_on_that_layers_grid() -> None:
    rng = np.random.default_rng(2)
    first, p1 = _layer(rng, 64, 128, gelu=True)
    second, p2 = _layer(rng, 128, 64)
    x = rng.standard_normal((70, 64)).astype(np.float32)
    alone = second(first(torch.from_numpy(x), torch.float32), torch.float32)
    first.feed(second)
    handed = first(torch.from_numpy(x), torch.float32)
    assert handed.dtype == torch.uint8 and handed.shape == (70, 128)
    gelu = F.gelu(torch.from_numpy(_reference(x, p1))).numpy().astype(np.float32)
    want_q = np.clip(np.rint(gelu * p2["in_scale"]) + p2["zero_point"], 0, 255)
    assert np.abs(handed.numpy().astype(np.int64) - want_q).max() <= 1  # a rounding tie at most
    assert (handed.numpy() == want_q).mean() > 0.999
    np.testing.assert_array_equal(second(handed, torch.float32).numpy(), alone.numpy())


@needs_amx
def test_a_rows_result_does_not_depend_on_the_other_rows() -> None:
    rng = np.random.default_rng(3)
    layer, _ = _layer(rng, 192, 64, gelu=True)
    x = torch.from_numpy(rng.standard_normal((100, 192)).astype(np.float32))
    together = layer(x, torch.float32)
    for rows in (slice(0, 1), slice(31, 33), slice(64, 100)):
        np.testing.assert_array_equal(layer(x[rows], torch.float32).numpy(), together[rows].numpy())


@needs_amx
def test_outputs_larger_than_the_caches_keep_the_bits_of_small_calls() -> None:
    """Over 4 MiB the kernels store their output around the caches (streamed whole lines)."""
    rng = np.random.default_rng(8)
    rows, streamed = 2100, 4 << 20
    layer, _ = _layer(rng, 64, 1024)
    consumer, _ = _layer(rng, 1024, 32)
    x = torch.from_numpy(rng.standard_normal((rows, 64)).astype(np.float32))
    for dtype in (torch.float32, torch.bfloat16):
        big = layer(x, dtype)
        assert big.numel() * big.element_size() > streamed
        for part in (slice(0, 40), slice(1000, 1033), slice(2090, 2100)):
            np.testing.assert_array_equal(layer(x[part], dtype).float().numpy(), big[part].float().numpy())
    # uint8 for the next layer, gathered per row block and chunk of columns (one of them part of a
    # cache line wide) and streamed
    wide, _ = _layer(rng, 1024, 1984, gelu=True)
    wide.feed(_layer(rng, 1984, 32)[0])
    inputs = torch.from_numpy(rng.standard_normal((2200, 1024)).astype(np.float32))
    big = wide(inputs, torch.float32)
    assert big.dtype == torch.uint8 and big.numel() > streamed
    for part in (slice(0, 40), slice(1000, 1033), slice(2190, 2200)):
        np.testing.assert_array_equal(wide(inputs[part], torch.float32).numpy(), big[part].numpy())
    norm = torch.nn.LayerNorm(1024, eps=1e-12)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    residual = torch.from_numpy(rng.standard_normal((rows, 1024)).astype(np.float32))
    big = layer(x, torch.float32)
    normed = add_layernorm(big, residual, norm, feeds=consumer)
    assert consumer.handed is not None
    quantized = consumer.handed[1]
    torch.testing.assert_close(normed, norm(big + residual), rtol=1e-5, atol=1e-5)
    for part in (slice(0, 40), slice(1000, 1033), slice(2090, 2100)):
        alone = add_layernorm(big[part], residual[part], norm, feeds=consumer)
        assert consumer.handed is not None
        np.testing.assert_array_equal(alone.numpy(), normed[part].numpy())
        np.testing.assert_array_equal(consumer.handed[1].numpy(), quantized[part].numpy())


@needs_amx
def test_work_handed_between_threads_gives_one_threads_bits() -> None:
    """One sample's layers hand chunks of columns (one sequence's heads, add+LayerNorm's rows) to
    whichever thread is free, taking from another's run once a thread's own are done: with more
    threads than cores (so threads stall and others take their chunks) and more than there are
    chunks, every column, head and row comes out once and with one thread's bits."""
    rng = np.random.default_rng(11)
    layer, parts = _layer(rng, 1024, 2048)  # 270 rows: an input that stays in L2, 16 chunks of columns
    narrow, _ = _layer(rng, 1024, 64)  # one chunk: most threads get none
    x = rng.standard_normal((270, 1024)).astype(np.float32)
    heads, length = 16, 200
    lens = torch.tensor([[length]], dtype=torch.int32)
    qkv = _qkv_rows(rng, lens.tolist(), length, heads, 64)
    attention = SequenceAttention(lens, length, sequence_core(lens, matmul_attention))
    norm = torch.nn.LayerNorm(1024)
    # 17 chunks of add+LayerNorm's rows, the last one short
    residual = torch.from_numpy(rng.standard_normal((270, 1024)).astype(np.float32))

    def outputs() -> list[torch.Tensor]:
        x_in = torch.from_numpy(x)
        return [layer(x_in, torch.float32), narrow(x_in, torch.float32), add_layernorm(x_in, residual, norm)]

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        want = outputs()
        want_heads = _attend(qkv, attention, heads, 64)
        np.testing.assert_allclose(want[0].numpy(), _reference(x, parts), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(want[2].numpy(), norm(torch.from_numpy(x) + residual).detach().numpy(), atol=1e-4)
        for count in (2, 3, 8):
            torch.set_num_threads(count)
            for _ in range(20):
                for g, w in zip(outputs(), want, strict=True):
                    np.testing.assert_array_equal(g.numpy(), w.numpy())
                np.testing.assert_array_equal(
                    _attend(qkv, attention, heads, 64).float().numpy(), want_heads.float().numpy()
                )
    finally:
        torch.set_num_threads(threads)


def _qkv_rows(rng: np.random.Generator, lens: list[list[int]], length: int, heads: int, dim: int) -> torch.Tensor:
    q = rng.standard_normal((len(lens), length, 3 * heads * dim)).astype(np.float32) * 2
    return torch.from_numpy(q).to(torch.bfloat16)


def _attend(qkv: torch.Tensor, core: object, heads: int, dim: int) -> torch.Tensor:
    shape = (*qkv.shape[:-1], heads, dim)
    q, k, v = (t.reshape(shape) for t in qkv.chunk(3, dim=-1))
    return core(q, k, v)  # type: ignore[operator]


def _exact(qkv: torch.Tensor, lens: torch.Tensor, heads: int, dim: int) -> torch.Tensor:
    """Each sequence's attention in float64 (plain softmax of the scaled scores)."""
    core = sequence_core(lens, lambda q, k, v: torch.softmax(q @ k.transpose(-1, -2) / dim**0.5, -1) @ v)
    return _attend(qkv.double(), core, heads, dim)


def _three_rows(dim: int) -> tuple[torch.Tensor, int, int, torch.Tensor]:
    """(lens, length, heads, Q|K|V): three rows of 300 positions holding one long sequence, three
    short ones (one of a single token) and one, with 3 heads of ``dim``."""
    heads, length = 3, 300
    lens = torch.tensor([[280, 0, 0], [1, 17, 100], [33, 0, 0]], dtype=torch.int32)
    return lens, length, heads, _qkv_rows(np.random.default_rng(4), lens.tolist(), length, heads, dim)


def _outside(lens: torch.Tensor, length: int) -> torch.Tensor:
    """[rows, length]: True at the positions after each row's sequences."""
    return torch.arange(length)[None, :] >= lens.sum(dim=1, keepdim=True)


@needs_amx
@pytest.mark.parametrize("dim", [32, 64])
def test_attention_runs_each_sequence_alone_close_to_float64(dim: int) -> None:
    lens, length, heads, qkv = _three_rows(dim)
    fallback_calls: list[int] = []

    def fallback(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        fallback_calls.append(1)
        return sequence_core(lens, matmul_attention)(q, k, v)

    got = _attend(qkv, SequenceAttention(lens, length, fallback), heads, dim).float()
    assert not fallback_calls
    want_out = _exact(qkv, lens, heads, dim)
    torch_bf16 = _attend(qkv, sequence_core(lens, matmul_attention), heads, dim).float()
    err, torch_err = (float((x.double() - want_out).abs().max()) for x in (got, torch_bf16))
    assert err < 0.08 and err <= torch_err  # bf16 inputs; fp32 scores, no worse than torch's bf16 path
    assert float(got[_outside(lens, length)].abs().max()) == 0.0
    alone = _attend(qkv[1:2], SequenceAttention(lens[1:2], length, fallback), heads, dim)
    np.testing.assert_array_equal(alone[0].float().numpy(), got[1].numpy())  # the same bits alone


@needs_amx
@pytest.mark.parametrize(("dim", "kind"), [(32, "bf16"), (64, "bf16"), (64, "int8")])
def test_attention_reads_q_k_v_in_planes_per_head_with_the_row_layouts_bits(dim: int, kind: str) -> None:
    """The encoder's Q|K|V layer writes a plane per part and head (qkv_layout): attention over it
    gives the bits of the rows [tokens, 3 x hidden], sequence by sequence, whatever each is next to."""
    heads, lens = 3, np.array([37, 0, 1, 130, 16], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    tokens, hidden = int(lens.sum()), heads * dim
    rows = torch.from_numpy(np.random.default_rng(7).normal(0, 2, (tokens, 3 * hidden)).astype(np.float32)).bfloat16()
    planes = rows.reshape(tokens, 3 * heads, dim).transpose(0, 1).contiguous()  # [3 x heads][tokens][dim]
    lib = amx_kernels.library()
    outs = []
    for qkv, plane_rows in ((rows, 0), (planes, tokens)):
        out = torch.full((tokens, hidden), 7.0, dtype=torch.bfloat16)
        status = lib.pb_attention(
            qkv.data_ptr(), starts.ctypes.data, lens.ctypes.data, len(lens), heads, dim, 0.125, out.data_ptr(),
            amx_kernels.AS_BF16, None, 0, amx_kernels.ATTENTION_KINDS[kind], plane_rows,
        )  # fmt: skip
        assert status == 0
        outs.append(out.float().numpy())
    np.testing.assert_array_equal(outs[0], outs[1])
    assert np.isfinite(outs[0]).all() and float(np.abs(outs[0]).max()) > 0
    bad = lib.pb_attention(rows.data_ptr(), starts.ctypes.data, lens.ctypes.data, len(lens), heads, dim, 0.125,
                           rows.data_ptr(), amx_kernels.AS_BF16, None, 0, 0, -1)  # fmt: skip
    assert bad == 1  # a negative plane size is refused, nothing written


def _grid(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """x on a symmetric int8 grid along ``axis`` (step max |x| / 127): (integers, steps)."""
    step = np.abs(x).max(axis=axis, keepdims=True) / 127
    return np.rint(x / np.where(step > 0, step, 1)), step


def _int8_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, values: bool = True) -> np.ndarray:
    """kernels/attention_int8.h's arithmetic in float64: Q's and K's rows on their own int8 grids;
    with ``values`` V's columns too and the weights round(255 exp(s - max)), divided by their sum
    (otherwise the weights exp(s - max) and V as they are)."""
    scale = float(np.float32(1) / np.sqrt(np.float32(q.shape[-1])))
    (qi, sq), (ki, sk), (vi, sv) = _grid(q, -1), _grid(k, -1), _grid(v, -2)
    s = (qi @ np.swapaxes(ki, -1, -2)) * sq * np.swapaxes(sk, -1, -2) * scale
    e = np.exp(s - s.max(-1, keepdims=True))
    if not values:
        return (e @ v) / e.sum(-1, keepdims=True)
    p = np.rint(255 * e)
    return (p @ vi) * sv / p.sum(-1, keepdims=True)


@needs_amx
@pytest.mark.parametrize(("dim", "kind"), [(32, "int8"), (64, "int8"), (32, "int8-scores"), (64, "int8-scores")])
def test_int8_attention_computes_its_grids_products_and_keeps_each_sequence_alone(dim: int, kind: str) -> None:
    lens, length, heads, qkv = _three_rows(dim)
    got = _attend(qkv, SequenceAttention(lens, length, None, attention=kind), heads, dim).double()  # type: ignore[arg-type]
    exact = _exact(qkv, lens, heads, dim)
    values = kind == "int8"

    def grids(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(_int8_attention(q.numpy(), k.numpy(), v.numpy(), values))

    reference = _attend(qkv.double(), sequence_core(lens, grids), heads, dim)
    # the grids' error is the reference's own; what is left is the bf16 output's rounding (and the
    # bf16 weights', Q K^T alone in int8), and a weight where exp's approximation and float64 round
    # to neighbouring integers
    assert float((got - reference).abs().mean()) < (0.15 if values else 0.2) * float((reference - exact).abs().mean())
    assert float((got - exact).abs().max()) < 0.4  # int8 grids: about 0.27 here (0.24 Q K^T alone), bf16's 0.05
    assert float(got[_outside(lens, length)].abs().max()) == 0.0
    alone = _attend(qkv[1:2], SequenceAttention(lens[1:2], length, None, attention=kind), heads, dim)  # type: ignore[arg-type]
    np.testing.assert_array_equal(alone[0].double().numpy(), got[1].numpy())  # the same bits alone


@pytest.mark.skipif(
    not cpu_flags() >= amx_kernels.TILES["amx"] | amx_kernels.TILES["avx512-bf16"],
    reason="compares the AMX build with its AVX-512 stand-ins: needs a CPU with AMX and AVX-512 BF16",
)
def test_the_avx512_tiles_give_the_amx_tiles_int8_bits_and_bf16_sums_within_a_rounding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kernels/soft_tiles.h runs the tile operations on vector instructions: integer sums are
    exact on all (the same bits through the whole int8 layer), bf16 pairs are summed in another
    order than the tiles' (fp32 sums within a few roundings), and without BF16 instructions two
    FMAs and integer rounding give the BF16 instructions' own bits. Attention in int8 gives the same
    bits on all three; with Q K^T alone in int8, the scores' bits and P V within a rounding."""
    rng = np.random.default_rng(11)
    layer, _ = _layer(rng, 256, 64, gelu=True)
    x = torch.from_numpy(rng.standard_normal((70, 256)).astype(np.float32))
    bf16 = AmxLinearWeights.bf16(rng.standard_normal((256, 64)).astype(np.float32), np.zeros(64, np.float32))
    heads, dim, length = 2, 64, 90
    lens = torch.tensor([[60, 30], [89, 0]], dtype=torch.int32)
    qkv = _qkv_rows(rng, lens.tolist(), length, heads, dim)
    qkv32 = _qkv_rows(rng, lens.tolist(), length, heads, 32)  # 1/sqrt(32): every query block a scaled copy

    def outputs(kind: str) -> list[np.ndarray]:
        monkeypatch.setattr(amx_kernels, "tiles_here", lambda: kind)
        attention = SequenceAttention(lens, length, sequence_core(lens, matmul_attention))
        outs = [layer(x, torch.float32), bf16(x, torch.bfloat16), _attend(qkv, attention, heads, dim)]
        outs.append(_attend(qkv32, attention, heads, 32))
        for products in ("int8", "int8-scores"):
            int8 = SequenceAttention(lens, length, sequence_core(lens, matmul_attention), attention=products)
            outs += [_attend(qkv, int8, heads, dim), _attend(qkv32, int8, heads, 32)]
        return [out.float().numpy() for out in outs]

    tiles, soft, no_bf16 = outputs("amx"), outputs("avx512-bf16"), outputs("avx512-vnni")
    assert [amx_kernels.loaded(kind).pb_tiles_kind() for kind in amx_kernels.TILES] == [1, 2, 3]
    np.testing.assert_array_equal(soft[0], tiles[0])
    np.testing.assert_allclose(soft[1], tiles[1], rtol=2**-7)  # a bf16 step
    assert float(np.abs(soft[2] - tiles[2]).max()) <= 2**-7 * float(np.abs(tiles[2]).max())
    assert float(np.abs(soft[2] - tiles[2]).max()) > 0  # bf16 sums in another order: not the same bits
    assert float(np.abs(soft[3] - tiles[3]).max()) <= 2**-7 * float(np.abs(tiles[3]).max())
    for int8 in (4, 5):
        np.testing.assert_array_equal(soft[int8], tiles[int8])
    for scores_int8 in (6, 7):  # the same scores, then bf16 P V: sums in another order
        assert float(np.abs(soft[scores_int8] - tiles[scores_int8]).max()) <= 2**-7 * float(
            np.abs(tiles[scores_int8]).max()
        )
    for ours, theirs in zip(no_bf16, soft, strict=True):
        np.testing.assert_array_equal(ours, theirs)


@needs_amx
def test_attention_over_scores_wider_than_float32s_range_leaves_the_callers_denormals_alone() -> None:
    # Q and K 8x larger: scores a few hundred apart, so exp2 of most falls below 2^-126 (the
    # kernel flushes those to 0 while it runs); the caller's floating-point mode comes back
    rng = np.random.default_rng(6)
    heads, dim, length = 2, 64, 120
    lens = torch.tensor([[120]], dtype=torch.int32)
    qkv = _qkv_rows(rng, lens.tolist(), length, heads, dim)
    qkv[..., : 2 * heads * dim] *= 8

    def fallback(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the kernel applies here")

    got = _attend(qkv, SequenceAttention(lens, length, fallback), heads, dim).double()
    assert torch.isfinite(got).all() and float((got - _exact(qkv, lens, heads, dim)).abs().max()) < 0.08
    assert not flushing()  # this thread's floating-point mode is its own again


@needs_amx
def test_attention_falls_back_where_the_kernel_does_not_apply() -> None:
    lens = torch.tensor([[5, 0]], dtype=torch.int32)
    calls: list[int] = []

    def fallback(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return torch.zeros_like(q)

    qkv = _qkv_rows(np.random.default_rng(5), [[5]], 8, 2, 16)  # head dimension 16
    _attend(qkv, SequenceAttention(lens, 8, fallback), 2, 16)
    _attend(_qkv_rows(np.random.default_rng(5), [[5]], 8, 2, 32).float(), SequenceAttention(lens, 8, fallback), 2, 32)
    assert len(calls) == 2  # not 16 or 48 wide, and fp32


@needs_amx
def test_add_layernorm_matches_torch() -> None:
    rng = np.random.default_rng(6)
    norm = torch.nn.LayerNorm(96, eps=1e-12)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x, r = (torch.from_numpy(rng.standard_normal((2, 21, 96)).astype(np.float32) * 3) for _ in range(2))
    got = add_layernorm(x, r, norm)
    torch.testing.assert_close(got, norm(x + r), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(add_layernorm(x[:1, 3:4], r[:1, 3:4], norm)[0, 0].numpy(), got[0, 3].numpy())
    half = x.to(torch.bfloat16)  # a bf16 layer output added to the fp32 residual
    from_bf16 = add_layernorm(half, r, norm)
    assert from_bf16.dtype == torch.float32
    torch.testing.assert_close(from_bf16, norm(half.float() + r), rtol=1e-5, atol=1e-5)
    assert not torch.equal(from_bf16, got)


def _amx_model() -> PackedBertForQA:
    return perturbed_tiny_model(heads=2)  # head dimension 32: the attention kernel runs


@needs_amx
def test_the_torch_int8_runner_on_amx_kernels_follows_onednn_and_keeps_its_bits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    feats = random_features(seed=3, n=12, max_len=200)
    runners = {
        kernel: create("torch", _amx_model(), "int8", "cpu", calibration=calibration_of(feats), kernel=kernel)
        for kernel in ("amx", "onednn")
    }
    assert amx_kernels.kernels_label() in runners["amx"].detail  # type: ignore[attr-defined]
    for runner in runners.values():  # no layer left to oneDNN's shape-dependent fp32 blocking (the QA head is tiled)
        assert not any(isinstance(m, torch.nn.Linear) for m in runner.model.modules())  # type: ignore[attr-defined]
    ids, seg, lens = random_features(seed=4, n=9, max_len=300)
    alone = same_in_any_batch(runners["amx"].infer, (ids, seg, lens))  # type: ignore[attr-defined]
    onednn = infer_sequences(runners["onednn"].infer, ids, seg, lens, "sorted", 4)  # type: ignore[attr-defined]
    for ours, theirs in zip(alone, onednn, strict=True):
        assert float(np.abs(ours - theirs).mean()) < 0.02 * float(np.abs(theirs).mean())


def test_bad_kernel_settings_are_one_line_errors() -> None:
    with pytest.raises(UserError, match="kernel=NAME"):
        create("torch", "tiny", "fp32", "cpu", kernel="amx")
    with pytest.raises(UserError, match="attention=int8 .* add kernel=amx"):
        create("torch", "tiny", "bf16", "cpu", attention="int8")
    with pytest.raises(UserError, match="attention must be one of bf16, int8, int8-scores, got 'fp8'"):
        create("torch", "tiny", "bf16", "cpu", kernel="amx", attention="fp8")
    if tiles_here() is None:
        with pytest.raises(UserError, match="no AMX tiles"):
            amx_kernels.library()


def test_a_missing_compiler_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(amx_kernels.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="no C compiler.*install gcc.*precision_by_cpu"):
        amx_kernels.build(tmp_path)


@needs_amx
def test_outputs_handed_over_as_uint8_give_the_same_layer_results() -> None:
    rng = np.random.default_rng(7)
    heads, dim, length = 2, 32, 40
    lens = torch.tensor([[30, 10], [25, 0]], dtype=torch.int32)
    consumer, _ = _layer(rng, heads * dim, 64)
    qkv = _qkv_rows(rng, lens.tolist(), length, heads, dim)
    attention = SequenceAttention(lens, length, sequence_core(lens, matmul_attention))
    as_bf16 = attention.attend_qkv(qkv, heads)
    as_u8 = attention.attend_qkv(qkv, heads, feeds=consumer)
    assert as_bf16 is not None and as_u8 is not None and as_u8.dtype == torch.uint8
    np.testing.assert_array_equal(consumer(as_u8, torch.float32).numpy(), consumer(as_bf16, torch.float32).numpy())
    norm = torch.nn.LayerNorm(heads * dim)
    x, r = (torch.from_numpy(rng.standard_normal((2, length, heads * dim)).astype(np.float32)) for _ in range(2))
    normed = add_layernorm(x, r, norm, feeds=consumer)
    assert consumer.handed is not None and consumer.handed[0] is normed
    handed_result = consumer(normed, torch.float32)
    assert consumer.handed is None  # used once
    np.testing.assert_array_equal(handed_result.numpy(), consumer(normed.clone(), torch.float32).numpy())


def test_a_runner_on_a_cpu_without_amx_stops_when_it_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel is built and loaded with the runner, before any timed call: a CPU with neither
    AMX nor AVX-512 VNNI is a one-line error then, not a failure in a run's first batch."""
    monkeypatch.setattr(amx_kernels, "tiles_here", lambda: None)
    amx_kernels.loaded.cache_clear()
    try:
        feats = random_features(seed=3, n=4, max_len=60)
        with pytest.raises(
            UserError,
            match=r"no AMX tiles \(int8, bf16\) nor AVX-512 VNNI; for int8 use kernel=onednn, or name openvino:int8",
        ):
            create("torch", _amx_model(), "int8", "cpu", calibration=calibration_of(feats), kernel="amx")
    finally:
        amx_kernels.loaded.cache_clear()


@needs_amx
def test_qa_head_rows_are_the_float64_sums_to_float32_and_the_same_in_any_batch() -> None:
    from packed_bert.backends.torch_amx import AmxQaHead

    rng = np.random.default_rng(5)
    linear = torch.nn.Linear(1024, 2)
    head = AmxQaHead(linear)
    x = torch.from_numpy(rng.standard_normal((3, 101, 1024)).astype(np.float32))
    got = head(x)
    assert got.shape == (3, 101, 2) and got.dtype == torch.float32
    want = x.double() @ linear.weight.detach().double().T + linear.bias.detach().double()
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)
    alone = torch.cat([head(x[1, i : i + 1]) for i in range(101)])
    np.testing.assert_array_equal(alone.numpy(), got[1].numpy())
    x16 = x.to(torch.bfloat16)  # the bf16 residual stream, widened in the kernel: torch's widening, the same bits
    np.testing.assert_array_equal(head(x16).numpy(), head(x16.float()).numpy())


@needs_amx
def test_embeddings_follow_torch_in_float32_and_reject_an_id_past_the_table() -> None:
    from packed_bert.backends.torch_amx import AmxEmbeddings
    from packed_bert.model import BERT_TINY
    from packed_bert.model.bert import BertEmbeddings

    torch.manual_seed(3)
    plain = BertEmbeddings(BERT_TINY).eval()
    with torch.no_grad():
        plain.LayerNorm.weight.add_(0.1 * torch.randn(BERT_TINY.hidden))
    ours = AmxEmbeddings(plain)
    rng = np.random.default_rng(6)
    ids = torch.from_numpy(rng.integers(0, BERT_TINY.vocab_size, (2, 37)))
    segments = torch.from_numpy(rng.integers(0, 2, (2, 37)))
    positions = torch.arange(37).repeat(2, 1)
    with torch.no_grad():
        want = plain(ids, segments, positions)
    got = ours(ids.int(), segments.int(), positions.int())
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(ours(ids[1:], segments[1:], positions[1:]).numpy(), got[1:].numpy())
    ours.residual = torch.bfloat16  # the bf16 residual stream: the fp32 result rounded once
    torch.testing.assert_close(ours(ids, segments, positions), got.to(torch.bfloat16), rtol=0, atol=0)
    with pytest.raises(ValueError, match="past its table"):
        ours(ids + BERT_TINY.vocab_size, segments, positions)
