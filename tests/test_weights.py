"""Weight import: each format round-trips to identical logits; bad files give one-line errors."""

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from packed_bert.errors import UserError
from packed_bert.model import BERT_TINY, BertConfig, PackedBertForQA
from packed_bert.model.import_onnx import _tf_name
from packed_bert.model.weights import load_model

# head size 64, as BERT's: files that do not say how many heads there are assume it
CONFIG = BertConfig(vocab_size=300, hidden=128, layers=2, heads=2, intermediate=256, max_position=64, type_vocab=2)


def source_model(seed: int = 1) -> PackedBertForQA:
    """A random model whose every tensor is distinct (as in a trained checkpoint)."""
    model = load_model("random", seed=seed, config=CONFIG)
    generator = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.05)
    return model


def inputs(rows: int = 2, length: int = 24) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1, CONFIG.vocab_size, (rows, length), generator=generator)
    seg = (torch.arange(length) >= length // 2).long().expand(rows, length)
    pos = torch.cat([torch.arange(10), torch.arange(length - 10)]).expand(rows, length)
    seq_lens = torch.tensor([[10, length - 10]] * rows)
    return ids, seg, pos, seq_lens


@torch.no_grad()
def logits(model: PackedBertForQA) -> torch.Tensor:
    return model(*inputs())


def assert_same(a: PackedBertForQA, b: PackedBertForQA) -> None:
    assert a.config == b.config
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name
    assert torch.equal(logits(a), logits(b))
    assert not b.training


def test_random_is_seeded_bert_large_init() -> None:
    a = load_model("random", seed=3, config=CONFIG)
    b = load_model("random", seed=3, config=CONFIG)
    c = load_model("random", seed=4, config=CONFIG)
    assert torch.equal(logits(a), logits(b))
    assert not torch.equal(logits(a), logits(c))
    assert torch.all(a.bert.encoder.layer[0].output.LayerNorm.weight == 1)
    assert torch.all(a.qa_outputs.bias == 0)
    assert load_model("tiny").config == BERT_TINY


def test_mlperf_pytorch_checkpoint_round_trip(tmp_path: Path) -> None:
    model = source_model()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    state["module.bert.embeddings.position_ids"] = torch.arange(64)[None]
    path = tmp_path / "model.pytorch"
    torch.save(state, path)
    assert_same(model, load_model(str(path)))
    assert_same(model, load_model(path, config=CONFIG))


def _hf_config(config: BertConfig) -> dict[str, object]:
    return {
        "architectures": ["BertForQuestionAnswering"],
        "model_type": "bert",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden,
        "num_hidden_layers": config.layers,
        "num_attention_heads": config.heads,
        "intermediate_size": config.intermediate,
        "max_position_embeddings": config.max_position,
        "type_vocab_size": config.type_vocab,
        "layer_norm_eps": config.layer_norm_eps,
        "hidden_act": "gelu",
    }


def test_hf_directory_round_trip(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    # heads differ from hidden / 64: they must come from config.json
    config = BertConfig(vocab_size=300, hidden=32, layers=2, heads=4, intermediate=64)
    model = load_model("random", seed=2, config=config)
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(_hf_config(config)))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    assert_same(model, load_model(str(folder)))

    binary = tmp_path / "bin"
    binary.mkdir()
    (binary / "config.json").write_text(json.dumps(_hf_config(config)))
    torch.save(model.state_dict(), binary / "pytorch_model.bin")
    assert_same(model, load_model(str(binary)))


def test_hf_bert_model_only_gets_random_head(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    model = source_model()
    body = {k[len("bert.") :]: v.contiguous() for k, v in model.state_dict().items() if k.startswith("bert.")}
    body["pooler.dense.weight"] = torch.zeros(CONFIG.hidden, CONFIG.hidden)
    (tmp_path / "config.json").write_text(json.dumps(_hf_config(CONFIG)))
    save_file(body, tmp_path / "model.safetensors")
    with pytest.warns(UserWarning, match="random one"):
        loaded = load_model(str(tmp_path), seed=7)
    for name, value in model.state_dict().items():
        if name.startswith("bert."):
            assert torch.equal(loaded.state_dict()[name], value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = load_model(str(tmp_path), seed=7)
    assert torch.equal(again.qa_outputs.weight, loaded.qa_outputs.weight)


class StandardBert(nn.Module):
    """The MLPerf reference interface: input_ids, input_mask, segment_ids -> start, end logits."""

    def __init__(self, model: PackedBertForQA) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids: torch.Tensor, input_mask: torch.Tensor, segment_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(input_ids.shape[1]).unsqueeze(0).expand_as(input_ids)
        lengths = input_mask.sum(dim=1, keepdim=True)
        out = self.model(input_ids, segment_ids, positions, lengths)
        return out[..., 0], out[..., 1]


def export_reference_onnx(model: PackedBertForQA, path: Path) -> None:
    ids = torch.randint(1, CONFIG.vocab_size, (2, 16))
    names = ["input_ids", "input_mask", "segment_ids"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            StandardBert(model).eval(),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(path),
            dynamo=False,
            input_names=names,
            output_names=["output_start_logits", "output_end_logits"],
            dynamic_axes={n: {0: "batch", 1: "seq"} for n in names},
            opset_version=17,
        )


def test_mlperf_onnx_round_trip(tmp_path: Path) -> None:
    import onnxruntime as ort

    model = source_model()
    path = tmp_path / "model.onnx"
    export_reference_onnx(model, path)
    graph = onnx.load(str(path)).graph
    assert any(i.name.startswith("onnx::MatMul") for i in graph.initializer), "anonymous weights"
    loaded = load_model(str(path))
    assert_same(model, loaded)
    # and the imported model agrees with the graph itself on a padded reference input
    ids = np.random.default_rng(0).integers(1, CONFIG.vocab_size, size=(1, 20))
    mask = (np.arange(20) < 13).astype(np.int64)[None]
    seg = (np.arange(20) >= 6).astype(np.int64)[None] * mask
    start, end = ort.InferenceSession(str(path)).run(None, {"input_ids": ids, "input_mask": mask, "segment_ids": seg})
    with torch.no_grad():
        ours = loaded(
            torch.from_numpy(ids), torch.from_numpy(seg), torch.arange(20)[None], torch.tensor([[13]])
        ).numpy()
    assert np.abs(ours[0, :13, 0] - start[0, :13]).max() < 1e-5
    assert np.abs(ours[0, :13, 1] - end[0, :13]).max() < 1e-5


def test_onnx_with_anonymous_biases_maps_by_order(tmp_path: Path) -> None:
    model = source_model()
    path = tmp_path / "model.onnx"
    export_reference_onnx(model, path)
    proto = onnx.load(str(path))
    renames = {
        i.name: f"onnx::Add_{n}"
        for n, i in enumerate(proto.graph.initializer)
        if i.name.endswith(("dense.bias", "query.bias", "key.bias", "value.bias"))
    }
    assert renames
    for init in proto.graph.initializer:
        init.name = renames.get(init.name, init.name)
    for node in proto.graph.node:
        for k, name in enumerate(node.input):
            node.input[k] = renames.get(name, name)
    onnx.save(proto, str(tmp_path / "anon.onnx"))
    assert_same(model, load_model(str(tmp_path / "anon.onnx")))


def test_tf_names_are_translated() -> None:
    assert _tf_name("bert/encoder/layer_3/attention/self/query/kernel:0") == (
        "bert.encoder.layer.3.attention.self.query.weight",
        True,
    )
    assert _tf_name("bert/embeddings/LayerNorm/gamma") == ("bert.embeddings.LayerNorm.weight", False)
    assert _tf_name("bert/embeddings/word_embeddings") == ("bert.embeddings.word_embeddings.weight", False)
    assert _tf_name("cls/squad/output_weights") == ("qa_outputs.weight", False)
    assert _tf_name("onnx::MatMul_12") is None


def _one_line_error(spec: str, match: str, config: BertConfig | None = None) -> None:
    with pytest.raises(UserError, match=match) as info:
        load_model(spec, config=config)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(spec)


def test_files_that_are_no_model(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a model\n")
    _one_line_error(str(text), "not a model file")
    junk = tmp_path / "model.pytorch"
    junk.write_bytes(b"PK\x03\x04" + bytes(range(200)))
    _one_line_error(str(junk), "not a readable PyTorch checkpoint")
    fake_onnx = tmp_path / "model.onnx"
    fake_onnx.write_bytes(bytes(range(256)) * 3)
    _one_line_error(str(fake_onnx), "ONNX")
    _one_line_error(str(tmp_path / "missing.onnx"), "no such file")
    _one_line_error(str(tmp_path), "without config.json")
    other = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, other)
    _one_line_error(str(other), "not a BERT checkpoint")


def test_checkpoint_of_the_wrong_shape(tmp_path: Path) -> None:
    state = source_model().state_dict()
    path = tmp_path / "model.pytorch"
    torch.save(state, path)
    _one_line_error(
        str(path),
        r"tensor bert\.embeddings\.word_embeddings\.weight has shape \[300, 128\] but the model needs \[30522, 64\]",
        BERT_TINY,
    )
    state["bert.encoder.layer.1.attention.self.key.weight"] = torch.zeros(128, 16)
    torch.save(state, path)
    _one_line_error(str(path), r"layer\.1\.attention\.self\.key\.weight has shape \[128, 16\].*\[128, 128\]")
    del state["bert.encoder.layer.1.output.dense.bias"]
    state["bert.encoder.layer.1.attention.self.key.weight"] = torch.zeros(128, 128)
    torch.save(state, path)
    _one_line_error(str(path), r"lacks 1 tensors, e\.g\. bert\.encoder\.layer\.1\.output\.dense\.bias")
