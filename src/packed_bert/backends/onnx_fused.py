"""The packed BERT written straight into ONNX with ONNX Runtime's fused attention operator.

Same inputs and output as the traced export (``onnx_export``): ``input_ids``, ``segment_ids``,
``position_ids``, ``seq_lens`` -> ``logits`` [R, L, 2]. Each layer's self-attention is one
``com.microsoft.Attention`` node (one Q|K|V projection, then scores, softmax and the weighted
sum in one kernel, without the transposes and scalings of the traced graph), fed a 3-D mask
[R, L, L] that lets a token see only the tokens of its own sequence. Dynamic quantization turns
it into ``QAttention`` (int8 Q|K|V projection). The rest is MatMul/Add/LayerNormalization and
``com.microsoft.Gelu`` (erf), which ONNX Runtime fuses on load (bias into the int8 matmuls).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from packed_bert.backends.onnx_export import INPUT_NAMES, OUTPUT_NAME
from packed_bert.cache import atomic_write_bytes
from packed_bert.model.config import BertConfig

if TYPE_CHECKING:
    import onnx
    import torch

OPSET = 17
MS_DOMAIN = "com.microsoft"
INT32, INT64 = 6, 7  # onnx.TensorProto.INT32, INT64


class _Graph:
    """Collects nodes and initializers; node and value names are unique by construction."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], scope: str = "", domain: str = "", **attrs: object) -> str:
        from onnx import helper

        self._count += 1
        name = f"{scope}/{op_type}" if scope else f"{op_type}_{self._count}"
        out = f"{name}_out_{self._count}"
        node = helper.make_node(op_type, inputs, [out], name=name, domain=domain)
        node.attribute.extend(helper.make_attribute(key, value) for key, value in attrs.items())
        self.nodes.append(node)
        return out


def _sequence_mask(g: _Graph, ids: str, seq_lens: str) -> str:
    """[R, L, L] int32: 1 where the query and key tokens belong to the same packed sequence.

    A token's sequence number is how many cumulative lengths it has passed; the padding after
    the last sequence gets a number of its own, so it never mixes with real tokens.
    """
    axis = g.const("axis_1", np.array(1, np.int64))
    ones = g.op("Cast", [g.op("Equal", [ids, ids])], to=INT64)
    positions = g.op("CumSum", [ones, axis], exclusive=1)  # [R, L]: 0, 1, ... in every row
    ends = g.op("CumSum", [g.op("Cast", [seq_lens], to=INT64), axis])  # [R, S]
    passed = g.op("GreaterOrEqual", [g.op("Unsqueeze", [positions, g.const("axes_2", np.array([2], np.int64))]),
                                     g.op("Unsqueeze", [ends, g.const("axes_1", np.array([1], np.int64))])])
    seq = g.op("ReduceSum", [g.op("Cast", [passed], to=INT32), "axes_2"], keepdims=0)
    same = g.op("Equal", [g.op("Unsqueeze", [seq, "axes_2"]), g.op("Unsqueeze", [seq, "axes_1"])])
    return g.op("Cast", [same], to=INT32)


def _linear(g: _Graph, x: str, w: dict[str, np.ndarray], prefix: str) -> str:
    weight = g.const(f"{prefix}.weight_t", w[f"{prefix}.weight"].T)
    return g.op("Add", [g.op("MatMul", [x, weight], prefix), g.const(f"{prefix}.bias", w[f"{prefix}.bias"])], prefix)


def _layer_norm(g: _Graph, x: str, w: dict[str, np.ndarray], prefix: str, eps: float) -> str:
    scale, bias = g.const(f"{prefix}.weight", w[f"{prefix}.weight"]), g.const(f"{prefix}.bias", w[f"{prefix}.bias"])
    return g.op("LayerNormalization", [x, scale, bias], prefix, axis=-1, epsilon=eps)


def build(model: torch.nn.Module) -> onnx.ModelProto:
    """The fused fp32 ONNX graph of ``model`` (a ``PackedBertForQA``)."""
    from onnx import TensorProto, helper

    cfg = cast(BertConfig, model.config)
    w = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    g = _Graph()
    ids, seg, pos, lens = INPUT_NAMES
    e = "bert.embeddings"
    words = g.op("Gather", [g.const("word_embeddings", w[f"{e}.word_embeddings.weight"]), ids])
    places = g.op("Gather", [g.const("position_embeddings", w[f"{e}.position_embeddings.weight"]), pos])
    types = g.op("Gather", [g.const("token_type_embeddings", w[f"{e}.token_type_embeddings.weight"]), seg])
    x = _layer_norm(g, g.op("Add", [g.op("Add", [words, places]), types]), w, f"{e}.LayerNorm", cfg.layer_norm_eps)
    mask = _sequence_mask(g, ids, lens)
    for i in range(cfg.layers):
        p = f"bert.encoder.layer.{i}"
        heads = [f"{p}.attention.self.{n}" for n in ("query", "key", "value")]
        qkv_w = g.const(f"{p}.attention.qkv.weight", np.concatenate([w[f"{h}.weight"].T for h in heads], axis=1))
        qkv_b = g.const(f"{p}.attention.qkv.bias", np.concatenate([w[f"{h}.bias"] for h in heads]))
        ctx = g.op("Attention", [x, qkv_w, qkv_b, mask], f"{p}.attention.self", MS_DOMAIN, num_heads=cfg.heads)
        attn = _linear(g, ctx, w, f"{p}.attention.output.dense")
        x = _layer_norm(g, g.op("Add", [attn, x]), w, f"{p}.attention.output.LayerNorm", cfg.layer_norm_eps)
        hidden = g.op("Gelu", [_linear(g, x, w, f"{p}.intermediate.dense")], f"{p}.intermediate", MS_DOMAIN)
        out = _linear(g, hidden, w, f"{p}.output.dense")
        x = _layer_norm(g, g.op("Add", [out, x]), w, f"{p}.output.LayerNorm", cfg.layer_norm_eps)
    g.nodes.append(helper.make_node("Identity", [_linear(g, x, w, "qa_outputs")], [OUTPUT_NAME], name="logits"))

    def io(name: str, dims: list[str | int], dtype: int = TensorProto.INT32) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, dtype, dims)

    inputs = [io(n, ["rows", "length"]) for n in (ids, seg, pos)] + [io(lens, ["rows", "slots"])]
    output = io(OUTPUT_NAME, ["rows", "length", 2], TensorProto.FLOAT)
    graph = helper.make_graph(g.nodes, "packed_bert_fused", inputs, [output], g.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)])


def export_fused(model: torch.nn.Module, path: Path) -> Path:
    """Write the fused graph of ``model`` to ``path``; atomic."""
    atomic_write_bytes(path, build(model).SerializeToString())
    return path
