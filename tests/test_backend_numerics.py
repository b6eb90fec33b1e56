"""Torch and ONNX Runtime runners on a tiny random BERT: same logits as the eager fp32 model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers.tiny_model import eager_logits, perturbed_tiny_model, random_features

from packed_bert.backends import create
from packed_bert.errors import UserError
from packed_bert.model import BERT_TINY, BertConfig, PackedBertForQA
from packed_bert.packing import pack_batch, sorted_batches, unpack


@pytest.fixture(scope="module")
def tiny() -> PackedBertForQA:
    return perturbed_tiny_model()


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return random_features(seed=1, n=12, max_len=170)


def _best_spans(per_seq: list[np.ndarray]) -> list[tuple[int, int]]:
    spans = []
    for logits in per_seq:
        start, end = logits[:, 0], logits[:, 1]
        score = start[:, None] + end[None, :]
        score = np.where(np.triu(np.ones_like(score, bool)) & ~np.triu(np.ones_like(score, bool), 30), score, -np.inf)
        i, j = np.unravel_index(int(np.argmax(score)), score.shape)
        spans.append((int(i), int(j)))
    return spans


@pytest.mark.parametrize("graph", ["fused", "traced"])
def test_onnx_fp32_export_matches_torch(tiny: PackedBertForQA, features: tuple, graph: str) -> None:
    runner = create("onnxruntime", tiny, "fp32", graph=graph, threads=1)
    assert f"{graph} graph" in runner.detail
    packed = pack_batch(*features)
    for batch in [packed, *sorted_batches(*features, batch_size=5)]:  # dynamic rows and length
        assert batch is packed or batch.row_len < 384
        real = np.arange(batch.row_len)[None, :] < batch.seq_lens.sum(axis=1)[:, None]  # padding: any value
        np.testing.assert_allclose(runner.infer(batch)[real], eager_logits(tiny, batch)[real], atol=1e-4, rtol=0)


def test_onnx_export_is_cached(tiny: PackedBertForQA) -> None:
    first = create("onnxruntime", tiny, "fp32", threads=1)
    again = create("onnxruntime", tiny, "fp32", threads=1)
    assert first.path == again.path and first.path.exists()  # type: ignore[attr-defined]


def test_fixed_shape_session_pads_and_splits(tiny: PackedBertForQA, features: tuple) -> None:
    runner = create("onnxruntime", tiny, "fp32", static_rows=2, threads=1)
    assert runner.static_shape
    packed = pack_batch(*features)
    assert packed.num_rows % 2 == 1 or packed.num_rows > 2
    np.testing.assert_allclose(runner.infer(packed), eager_logits(tiny, packed), atol=1e-4, rtol=0)


def test_onnx_int8_runs_and_mostly_agrees(tiny: PackedBertForQA, features: tuple) -> None:
    runner = create("onnxruntime", tiny, "int8", model="bert-99", threads=1)
    packed = pack_batch(*features)
    got = runner.infer(packed)
    ref = eager_logits(tiny, packed)
    assert got.shape == ref.shape and np.isfinite(got).all()
    real = np.arange(384)[None, :] < packed.seq_lens.sum(axis=1)[:, None]
    corr = np.corrcoef(got[real].ravel(), ref[real].ravel())[0, 1]
    same = np.mean(np.array(_best_spans(unpack(packed, got))) == np.array(_best_spans(unpack(packed, ref))))
    print(f"int8 vs fp32 (tiny random model): logit correlation {corr:.4f}, span agreement {same:.2f}")
    assert corr > 0.9


def test_fused_graph_matches_torch_at_a_wider_shape(features: tuple) -> None:
    """Several heads of 64 like BERT-Large (the Q|K|V split and head layout must line up)."""
    torch.manual_seed(1)
    model = PackedBertForQA(BertConfig(hidden=256, layers=3, heads=4, intermediate=1024)).eval()
    runner = create("onnxruntime", model, "fp32", graph="fused", threads=1)
    for batch in [pack_batch(*features), *sorted_batches(*features, batch_size=6)]:
        real = np.arange(batch.row_len)[None, :] < batch.seq_lens.sum(axis=1)[:, None]
        np.testing.assert_allclose(runner.infer(batch)[real], eager_logits(model, batch)[real], atol=1e-4, rtol=0)


def test_fused_and_traced_int8_quantize_alike(tiny: PackedBertForQA, features: tuple) -> None:
    """Same scheme in both graphs (int8 per-channel weights, one u8 scale per input tensor), so
    the logits differ only by float rounding, far less than by int8 itself."""
    packed = pack_batch(*features)
    fused = create("onnxruntime", tiny, "int8", quant="dynamic", graph="fused", threads=1).infer(packed)
    traced = create("onnxruntime", tiny, "int8", quant="dynamic", graph="traced", threads=1).infer(packed)
    ref = eager_logits(tiny, packed)
    real = np.arange(384)[None, :] < packed.seq_lens.sum(axis=1)[:, None]
    assert np.abs(fused - traced)[real].max() < 0.1 * np.abs(fused - ref)[real].max()


def test_static_quantization_refuses_the_fused_graph(tiny: PackedBertForQA) -> None:
    with pytest.raises(UserError, match="graph=traced"):
        create("onnxruntime", tiny, "int8", quant="static", graph="fused")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_torch_cpu_sorted_equals_packed_bit_for_bit(tiny: PackedBertForQA, features: tuple, precision: str) -> None:
    """Tiled matmuls and per-sequence attention (torch_invariant): a sequence's logits are the
    same bits packed with others, sorted, or alone; and close to the eager model's."""
    import copy

    runner = create("torch", copy.deepcopy(tiny), precision)
    packed = pack_batch(*features)
    by_packed = unpack(packed, runner.infer(packed))
    order: dict[int, np.ndarray] = {}
    for batch in sorted_batches(*features, batch_size=4):
        for idx, seq in zip(np.sort(batch.sample_index[:, 0]), unpack(batch, runner.infer(batch)), strict=True):
            order[int(idx)] = seq
    eager = unpack(packed, eager_logits(tiny, packed))
    for i, seq in enumerate(by_packed):
        np.testing.assert_array_equal(seq, order[i])
        alone = sorted_batches(*(f[i : i + 1] for f in features), batch_size=1)[0]
        np.testing.assert_array_equal(seq, unpack(alone, runner.infer(alone))[0])
        tol = 1e-4 if precision == "fp32" else 0.05 * max(1.0, float(np.abs(eager[i]).max()))
        np.testing.assert_allclose(seq, eager[i], atol=tol, rtol=0)


def test_torch_cpu_bf16_close_to_fp32(features: tuple) -> None:
    torch.manual_seed(0)
    model = PackedBertForQA(BERT_TINY).eval()
    packed = pack_batch(*features)
    ref = eager_logits(model, packed)
    got = create("torch", model, "bf16").infer(packed)  # converts a copy of the module
    assert got.dtype == np.float32
    real = np.arange(384)[None, :] < packed.seq_lens.sum(axis=1)[:, None]
    err = np.abs(got[real] - ref[real]).max()
    assert err < 0.05 * max(1.0, np.abs(ref[real]).max())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_cuda_fp16_graphs_and_varlen(tiny: PackedBertForQA, features: tuple) -> None:
    packed = pack_batch(*features)
    ref = unpack(packed, eager_logits(tiny, packed))
    import copy

    runner = create("torch", copy.deepcopy(tiny), "fp16", "cuda")
    for seq, want in zip(unpack(packed, runner.infer(packed)), ref, strict=True):
        np.testing.assert_allclose(seq, want, atol=2e-2)


def test_torch_runner_leaves_the_callers_module_as_it_was(tiny: PackedBertForQA) -> None:
    """A runner converts a copy: the module passed in keeps its fp32 weights (``.to()`` works in
    place, and a benchmark hands one module to many runners)."""
    before = tiny.qa_outputs.weight.detach().clone()
    create("torch", tiny, "bf16", batch_invariant=False)
    assert tiny.qa_outputs.weight.dtype == torch.float32
    assert torch.equal(tiny.qa_outputs.weight, before)


def test_torch_frozen_compile_packs_the_weights_and_matches_eager(tiny: PackedBertForQA, features: tuple) -> None:
    """``freezing=True``: Inductor's freezing pass replaces the matmuls by oneDNN linear calls on
    weights packed once, even after a forward compiled without it in the same process."""
    from torch.profiler import profile

    packed = pack_batch(*features)
    plain = create("torch", tiny, "fp32", batch_invariant=False, compile=True)
    plain.infer(packed)  # compiled first without freezing: the frozen runner must not reuse it
    frozen = create("torch", tiny, "fp32", batch_invariant=False, compile=True, freezing=True)
    got = frozen.infer(packed)
    with profile() as prof:
        frozen.infer(packed)
    ops = {event.key for event in prof.key_averages()}
    assert "mkldnn::_linear_pointwise" in ops
    assert "aten::addmm" not in ops
    real = np.arange(packed.input_ids.shape[1])[None, :] < packed.seq_lens.sum(axis=1)[:, None]
    np.testing.assert_allclose(got[real], eager_logits(tiny, packed)[real], atol=1e-4, rtol=0)
    assert "frozen" in frozen.detail


def test_torch_freezing_needs_compile(tiny: PackedBertForQA) -> None:
    with pytest.raises(UserError, match="freezing=True .* needs compile=True"):
        create("torch", tiny, "bf16", batch_invariant=False, freezing=True)


def test_a_compiled_runner_compiles_only_in_its_warm_up(tiny: PackedBertForQA, features: tuple) -> None:
    """``warm(rows)`` compiles what a run needs: afterwards sorted and packed batches of any row
    count, one row included, run without Dynamo compiling again (a compile inside a timed run
    costs 30-40 s on BERT-Large)."""
    from torch._dynamo.utils import counters

    runner = create("torch", tiny, "fp32", batch_invariant=False, compile=True)
    assert runner.warm(4) == 2
    compiled = counters["stats"]["unique_graphs"]
    ids, seg, lens = features
    batches = [
        *sorted_batches(ids, seg, lens, batch_size=4),
        pack_batch(ids, seg, lens),
        pack_batch(*(f[:1] for f in features)),
    ]
    assert {b.seq_lens.shape[1] for b in batches} == {1, 3} and min(b.num_rows for b in batches) == 1
    for batch in batches:
        runner.infer(batch)
    assert counters["stats"]["unique_graphs"] == compiled
    assert create("torch", tiny, "fp32").warm(4) == 0  # eager: nothing to compile


def test_compiled_runner_is_batch_invariant_through_fixed_call_shapes(tiny: PackedBertForQA, features: tuple) -> None:
    """``compile=True`` with batch_invariant (the CPU's default): every sequence runs in a row of
    its own, in calls of ``rows`` rows of one 16-token length step (``sequence_rows``), so its
    logits are the same bits packed, sorted in batches of any size, or alone, and match eager."""
    from torch._dynamo.utils import counters

    from packed_bert.backends.length_buckets import LENGTH_STEP, bucket_lengths

    runner = create("torch", tiny, "bf16", compile=True, freezing=True)
    assert runner.fixed_shapes and "batch-invariant" in runner.detail
    steps = len(bucket_lengths(LENGTH_STEP))  # each call shape runs once in the warm-up
    assert runner.warm(3) == steps and runner.rows == 3  # the run's batch size fixes the call shape
    compiled = counters["stats"]["unique_graphs"]
    packed = pack_batch(*features)
    assert packed.num_rows < len(features[2])  # rows hold several sequences: split into calls of 3
    by_packed = unpack(packed, runner.infer(packed))
    order: dict[int, np.ndarray] = {}
    for batch in sorted_batches(*features, batch_size=5):
        for idx, seq in zip(np.sort(batch.sample_index[:, 0]), unpack(batch, runner.infer(batch)), strict=True):
            order[int(idx)] = seq
    eager = unpack(packed, eager_logits(tiny, packed))
    for i, seq in enumerate(by_packed):
        np.testing.assert_array_equal(seq, order[i])
        alone = sorted_batches(*(f[i : i + 1] for f in features), batch_size=1)[0]
        np.testing.assert_array_equal(seq, unpack(alone, runner.infer(alone))[0])
        np.testing.assert_allclose(seq, eager[i], atol=0.05 * max(1.0, float(np.abs(eager[i]).max())), rtol=0)
    assert counters["stats"]["unique_graphs"] == compiled  # nothing compiled after the warm-up


def test_rows_is_an_option_of_the_fixed_call_shapes(tiny: PackedBertForQA) -> None:
    with pytest.raises(UserError, match="rows=N"):
        create("torch", tiny, "bf16", rows=4)  # eager: tiles, no call shapes
    runner = create("torch", tiny, "fp32", compile=True, rows=2)
    runner.warm(16)
    assert runner.rows == 2  # the option wins over the run's batch size
