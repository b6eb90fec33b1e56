"""The bf16 recipe on packed-bert's own AMX kernels (``AmxLinearWeights.bf16``, ``torch_amx``): the
layer against the fp32 sum of its bf16-rounded products, the bf16 hand-overs between kernels,
attention with 1/sqrt(d) in Q's weights, and the torch runner built on them (close to fp32, the
same bits in any batch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers.tiny_model import perturbed_tiny_model, random_features, same_in_any_batch

from packed_bert.backends import amx_kernels, create
from packed_bert.backends.amx_kernels import (
    AmxLinearWeights,
    SequenceAttention,
    add_layernorm,
    block_rows,
    pack_weight_bf16,
)
from packed_bert.backends.torch_amx import AmxBf16Linear
from packed_bert.errors import UserError
from packed_bert.model.attention import matmul_attention, sequence_core
from packed_bert.packing import infer_sequences

needs_amx = pytest.mark.usefixtures("kernel_tiles")  # once per tile kind this CPU has (conftest)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACKED_BERT_CACHE", str(tmp_path_factory.getbasetemp() / "amx-cache"))


def _bf16(a: np.ndarray) -> np.ndarray:
    """``a`` rounded to bf16 (to nearest even), as float64."""
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(torch.bfloat16).double().numpy()


def test_bf16_weights_are_packed_in_amx_tile_order() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((64, 64)).astype(np.float32)
    packed = pack_weight_bf16(w)
    assert (
        packed.shape == (4, 2, 16, 16, 2) and packed.dtype == np.int16
    )  # column blocks, K blocks, rows, columns, pair
    as_float = torch.from_numpy(packed.copy()).view(torch.bfloat16).double().numpy()
    for nb, kb, r, n, b in [(0, 0, 0, 0, 0), (3, 1, 15, 15, 1), (2, 1, 7, 4, 1), (1, 0, 3, 9, 0)]:
        assert as_float[nb, kb, r, n, b] == _bf16(w)[kb * 32 + r * 2 + b, nb * 16 + n]
    with pytest.raises(UserError, match=r"\[48, 64\].*drop kernel=amx"):
        pack_weight_bf16(w[:48])


@needs_amx
@pytest.mark.parametrize(("gelu", "k"), [(False, 160), (True, 160), (False, 1088)])
def test_a_bf16_layer_is_the_fp32_sum_of_its_rounded_products(gelu: bool, k: int) -> None:
    rng = np.random.default_rng(1)
    n = 96
    w = rng.standard_normal((k, n)).astype(np.float32) * 0.1
    bias = rng.standard_normal(n).astype(np.float32)
    x = rng.standard_normal((45, k)).astype(np.float32)
    layer = AmxLinearWeights.bf16(w, bias, gelu=gelu)
    got = layer(torch.from_numpy(x), torch.float32).double()
    want = torch.from_numpy(_bf16(x) @ _bf16(w) + bias)
    if gelu:
        want = F.gelu(want)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * k / 160)
    unrounded = torch.from_numpy(x.astype(np.float64) @ w + bias)  # and it is the bf16 product, not the fp32 one
    assert float((got - (F.gelu(unrounded) if gelu else unrounded)).abs().max()) > 1e-3
    # a bf16 input, plain or in whole row blocks, is the fp32 input rounded: the same bits
    plain = torch.from_numpy(x).to(torch.bfloat16)
    blocks = block_rows(45, k, torch.bfloat16).copy_(plain)
    for x_bf16 in (plain, blocks, plain[3:40]):
        rows = x_bf16.shape[0]
        start = 3 if rows == 37 else 0
        np.testing.assert_array_equal(layer(x_bf16, torch.float32).numpy(), got[start : start + rows].float().numpy())


@needs_amx
def test_bf16_hand_overs_keep_the_bits() -> None:
    """A layer, add+LayerNorm or attention that feeds a bf16 layer writes its input in whole row
    blocks: the consumer's result is the one it gets from the plain output."""
    rng = np.random.default_rng(2)
    heads, dim, length = 2, 64, 40
    consumer = AmxLinearWeights.bf16(
        rng.standard_normal((heads * dim, 64)).astype(np.float32), np.zeros(64, np.float32)
    )
    gelu = AmxLinearWeights.bf16(
        rng.standard_normal((96, heads * dim)).astype(np.float32), np.ones(heads * dim, np.float32), gelu=True
    )
    x = torch.from_numpy(rng.standard_normal((2, length, 96)).astype(np.float32))
    plain = gelu(x, torch.bfloat16)
    gelu.feed(consumer)
    fed = gelu(x, torch.float32)
    assert fed.dtype == torch.bfloat16
    np.testing.assert_array_equal(fed.float().numpy(), plain.float().numpy())
    np.testing.assert_array_equal(consumer(fed, torch.float32).numpy(), consumer(plain, torch.float32).numpy())
    norm = torch.nn.LayerNorm(heads * dim)
    r = torch.from_numpy(rng.standard_normal((2, length, heads * dim)).astype(np.float32))
    normed = add_layernorm(plain, r, norm, feeds=consumer)
    assert consumer.handed is not None and consumer.handed[0] is normed
    np.testing.assert_array_equal(
        consumer.handed[1].float().numpy(), normed.to(torch.bfloat16).float().reshape(80, -1).numpy()
    )
    np.testing.assert_array_equal(
        consumer(normed, torch.float32).numpy(), consumer(normed.clone(), torch.float32).numpy()
    )
    lens = torch.tensor([[30, 10], [25, 0]], dtype=torch.int32)
    qkv = torch.from_numpy(rng.standard_normal((2, length, 3 * heads * dim)).astype(np.float32)).to(torch.bfloat16)
    attention = SequenceAttention(lens, length, sequence_core(lens, matmul_attention))
    as_bf16, as_input = attention.attend_qkv(qkv, heads), attention.attend_qkv(qkv, heads, feeds=consumer)
    assert as_bf16 is not None and as_input is not None
    np.testing.assert_array_equal(as_input.float().numpy(), as_bf16.float().numpy())
    # Q that holds 1/8 already (exact in bf16) gives the same bits with the kernel's scaling off
    scaled = qkv.clone()
    scaled[..., : heads * dim] *= 0.125
    q_scaled = SequenceAttention(lens, length, sequence_core(lens, matmul_attention), q_scaled=True)
    np.testing.assert_array_equal(q_scaled.attend_qkv(scaled, heads).float().numpy(), as_bf16.float().numpy())  # type: ignore[union-attr]
    with pytest.raises(RuntimeError, match="only the AMX kernel"):
        q_scaled.attend_qkv(scaled.float(), heads)


@needs_amx
@pytest.mark.parametrize(
    "heads", [2, 4]
)  # head dimension 32 (the attention kernel, Q's weights scaled) or 16 (the fallback)
def test_the_bf16_runner_on_amx_kernels_follows_fp32_and_keeps_its_bits(heads: int) -> None:
    runner = create("torch", perturbed_tiny_model(heads), "bf16", "cpu", kernel="amx")
    assert amx_kernels.kernels_label() in runner.detail  # type: ignore[attr-defined]
    model = runner.model  # type: ignore[attr-defined]
    assert sum(isinstance(m, AmxBf16Linear) for m in model.modules()) == 8
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())  # the QA head is tiled
    ids, seg, lens = random_features(seed=4, n=9, max_len=300)
    alone = same_in_any_batch(runner.infer, (ids, seg, lens))  # type: ignore[attr-defined]
    fp32 = infer_sequences(
        create("torch", perturbed_tiny_model(heads), "fp32", "cpu").infer, ids, seg, lens, "sorted", 4
    )
    whole_bf16 = infer_sequences(
        create("torch", perturbed_tiny_model(heads), "bf16", "cpu").infer, ids, seg, lens, "sorted", 4
    )
    ours, theirs = (np.mean([np.abs(a - b).mean() for a, b in zip(x, fp32, strict=True)]) for x in (alone, whole_bf16))
    assert 0 < ours < theirs  # bf16 products, fp32 residuals and LayerNorm: nearer fp32 than a whole bf16 module


def test_bad_bf16_kernel_settings_are_one_line_errors() -> None:
    with pytest.raises(UserError, match="runs eagerly"):
        create("torch", "tiny", "bf16", "cpu", kernel="amx", compile=True)
    with pytest.raises(UserError, match="kernel=NAME"):
        create("torch", "tiny", "fp16", "cpu", kernel="amx")


@needs_amx
def test_bf16_outputs_larger_than_the_caches_keep_the_bits_of_small_calls() -> None:
    """Over 4 MiB the kernels store around the caches: the linear's fp32 and bf16 rows, and the
    bf16 input add+LayerNorm hands on (two whole lines per 64 values)."""
    rng = np.random.default_rng(8)
    rows = 2100
    layer = AmxLinearWeights.bf16(
        rng.standard_normal((64, 1024)).astype(np.float32), rng.standard_normal(1024).astype(np.float32)
    )
    consumer = AmxLinearWeights.bf16(rng.standard_normal((1024, 32)).astype(np.float32), np.zeros(32, np.float32))
    x = torch.from_numpy(rng.standard_normal((rows, 64)).astype(np.float32))
    parts = (slice(0, 40), slice(1000, 1033), slice(2090, 2100))
    for dtype in (torch.float32, torch.bfloat16):
        big = layer(x, dtype)
        assert big.numel() * big.element_size() > 4 << 20
        for part in parts:
            np.testing.assert_array_equal(layer(x[part], dtype).float().numpy(), big[part].float().numpy())
    norm = torch.nn.LayerNorm(1024, eps=1e-12)
    big = layer(x, torch.float32)
    residual = torch.from_numpy(rng.standard_normal((rows, 1024)).astype(np.float32))
    normed = add_layernorm(big, residual, norm, feeds=consumer)
    assert consumer.handed is not None
    handed = consumer.handed[1]
    np.testing.assert_array_equal(handed.float().numpy(), normed.to(torch.bfloat16).float().numpy())
    for part in parts:
        alone = add_layernorm(big[part], residual[part], norm, feeds=consumer)
        np.testing.assert_array_equal(alone.numpy(), normed[part].numpy())


@needs_amx
def test_an_input_that_outgrows_l2_is_summed_in_k_slices_with_the_bits_of_small_calls() -> None:
    """One sample's rows into the FFN output layer (2.3 MB of bf16 input): the kernel sums K in
    slices, the partial sums leaving the tiles between slices; a row's result keeps the bits it
    has in a call of a few rows (one pass over K), and is the fp32 sum of its rounded products."""
    rng = np.random.default_rng(11)
    k, n, rows = 4096, 64, 288
    w = rng.standard_normal((k, n)).astype(np.float32) * 0.05
    bias = rng.standard_normal(n).astype(np.float32)
    layer = AmxLinearWeights.bf16(w, bias)
    x = torch.from_numpy(rng.standard_normal((rows, k)).astype(np.float32)).to(torch.bfloat16)
    assert x.numel() * x.element_size() > 1536 * 1024  # past the kernel's SMALL_INPUT: sliced
    big = layer(x, torch.float32)
    for part in (slice(0, 5), slice(100, 133), slice(270, 288)):
        np.testing.assert_array_equal(layer(x[part], torch.float32).numpy(), big[part].numpy())
    want = torch.from_numpy(x.double().numpy() @ _bf16(w) + bias)
    torch.testing.assert_close(big.double(), want, rtol=1e-5, atol=1e-4)
