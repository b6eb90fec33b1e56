"""The packed BERT written straight into ONNX with ONNX Runtime's fused attention operator.

Same inputs and output as the traced export (``onnx_export``): ``input_ids``, ``segment_ids``,
``position_ids``, ``seq_lens`` -> ``logits`` [R, L, 2]. Each layer's self-attention is one
``com.microsoft.Attention`` node (one Q|K|V projection, then scores, softmax and the weighted
sum in one kernel, without the transposes and scalings of the traced graph), fed a 3-D mask
[R, L, L] that lets a token see only the tokens of its own sequence. Dynamic quantization turns
it into ``QAttention`` (int8 Q|K|V projection). The rest is MatMul/Add/LayerNormalization and
``com.microsoft.Gelu`` (erf), which ONNX Runtime fuses on load (bias into the int8 matmuls).

With an ``Int8Recipe`` (``onnx_int8``) the encoder's linear layers are written in int8 with
per-token or fixed activation scales instead; an int8 Q|K|V projection then feeds
``com.microsoft.MultiHeadAttention`` (same mask, as an additive [R, 1, L, L] bias).

``attention="sequence"`` writes attention per sequence instead (plain MatMul / Softmax, which
every runtime reads): each sequence's Q, K and V rows are gathered into blocks of its own length
rounded up to a multiple of ``BUCKET`` (``attention_feeds.sequence_feeds`` computes the indices on
the host from ``seq_lens``), attention runs on blocks of one bucket length at a time, and the outputs are
gathered back to token order. The graph is spelled the way OpenVINO's CPU plugin fuses it into
one attention kernel per bucket: 1/sqrt(D) sits in Q's weights, and K's transpose is split so
the last-axes swap folds into the first MatMul (docs/performance-history.md: 1.03-1.09x Offline). A
sequence of length n costs about n^2, not the 384^2 of its packed row, and its attention is the
same computation whatever its batch-mates or its place in a row (its block length depends on its
own length only), so with per-token linear layers its logits are the same in any batch.

``attention="sequence-ort"`` is the same per-sequence graph in ONNX Runtime's own operators, which
OpenVINO does not read: each layer's attention is ``SLOTS`` calls of ``com.microsoft.MultiHeadAttention``
on blocks as they are gathered (no transposes; each sequence's length is the key padding mask), whose
lengths the host picks per batch (``attention_feeds.slot_feeds``: one sample alone at its own
length, no bucket rounding, a batch's sequences in the few lengths that waste the least), and a ``qdq`` layer is
written as ONNX Runtime would fuse it, ``QuantizeLinear`` then ``MatMulIntegerToFloat``, but with
the bias inside the kernel (its own fusion leaves the bias a separate pass over the output) and
the attention output layer's SmoothQuant division folded into V's weight columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from packed_bert.backends.attention_feeds import BUCKETS, MASKED, ORT_SEQUENCE, PER_SEQUENCE, SLOTS
from packed_bert.backends.onnx_export import INPUT_NAMES, OUTPUT_NAME
from packed_bert.backends.onnx_int8 import (
    Int8Recipe,
    dequantized_weight,
    fake_quantized,
    int8_matmul,
    quantize_input,
)
from packed_bert.cache import atomic_write_bytes
from packed_bert.model.config import BertConfig
from packed_bert.model.linears import ATTENTION_OUTPUT, FFN_INPUT, FFN_OUTPUT, QKV

if TYPE_CHECKING:
    import onnx
    import torch

OPSET = 17
ATTENTIONS = ("mask", *PER_SEQUENCE)
MS_DOMAIN = "com.microsoft"
FLOAT, INT32, INT64 = 1, 6, 7  # onnx.TensorProto.FLOAT, INT32, INT64


class _Graph:
    """Collects nodes and initializers; node and value names are unique by construction."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        if name in self._names:  # a second initializer of one name silently replaces the first in the runtimes
            raise ValueError(f"onnx_fused: initializer {name!r} written twice")
        self._names.add(name)
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
    passed = g.op(
        "GreaterOrEqual",
        [
            g.op("Unsqueeze", [positions, g.const("axes_2", np.array([2], np.int64))]),
            g.op("Unsqueeze", [ends, g.const("axes_1", np.array([1], np.int64))]),
        ],
    )
    seq = g.op("ReduceSum", [g.op("Cast", [passed], to=INT32), "axes_2"], keepdims=0)
    same = g.op("Equal", [g.op("Unsqueeze", [seq, "axes_2"]), g.op("Unsqueeze", [seq, "axes_1"])])
    return g.op("Cast", [same], to=INT32)


def _linear(g: _Graph, x: str, w: dict[str, np.ndarray], prefix: str) -> str:
    weight = g.const(f"{prefix}.weight_t", w[f"{prefix}.weight"].T)
    return g.op("Add", [g.op("MatMul", [x, weight], prefix), g.const(f"{prefix}.bias", w[f"{prefix}.bias"])], prefix)


def _layer_norm(g: _Graph, x: str, w: dict[str, np.ndarray], prefix: str, eps: float) -> str:
    scale, bias = g.const(f"{prefix}.weight", w[f"{prefix}.weight"]), g.const(f"{prefix}.bias", w[f"{prefix}.bias"])
    return g.op("LayerNormalization", [x, scale, bias], prefix, axis=-1, epsilon=eps)


def site_weight(w: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The [K, N] weight that multiplies layer input ``name`` (``...attention.self``: Q|K|V side by side)."""
    if name.endswith(".attention.self"):
        return np.concatenate([w[f"{name}.{h}.weight"].T for h in ("query", "key", "value")], axis=1)
    return w[f"{name}.weight"].T


def site_bias(w: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The [N] bias of layer input ``name`` (``...attention.self``: Q|K|V one after another)."""
    if name.endswith(".attention.self"):
        return np.concatenate([w[f"{name}.{h}.bias"] for h in ("query", "key", "value")])
    return w[f"{name}.bias"]


class _Layers:
    """Writes the encoder's linear layers and attention, in fp32 or by an ``Int8Recipe``."""

    def __init__(
        self,
        g: _Graph,
        w: dict[str, np.ndarray],
        cfg: BertConfig,
        int8: Int8Recipe | None,
        mask: str,
        per_sequence: bool = False,
        ort_ops: bool = False,
    ) -> None:
        self.g, self.w, self.cfg, self.int8 = g, w, cfg, int8
        self.mask = mask
        self.per_sequence = per_sequence
        self.ort_ops = ort_ops
        self._bias: str | None = None
        self._block_bias: dict[int, str] = {}
        self._qkv_index: dict[str, list[str]] = {}

    def scheme(self, kind: str) -> str:
        return "fp32" if self.int8 is None else self.int8.scheme(kind)

    def linear(self, x: str, prefix: str, kind: str) -> str:
        scheme = self.scheme(kind)
        if scheme == "fp32":
            return _linear(self.g, x, self.w, prefix)
        if scheme == "qdq" and self.ort_ops:
            folded = kind == ATTENTION_OUTPUT and self.scheme(QKV) == "qdq"  # its factors sit in V's columns
            return self.ort_linear(x, prefix, self.w[f"{prefix}.weight"].T, self.w[f"{prefix}.bias"], folded)
        if scheme in ("weights", "qdq"):
            x = self.float_input(x, prefix, scheme)
            weight_t = dequantized_weight(self.g, self.smoothed(prefix, self.w[f"{prefix}.weight"].T), prefix)
            bias = self.g.const(f"{prefix}.bias", self.w[f"{prefix}.bias"])
            return self.g.op("Add", [self.g.op("MatMul", [x, weight_t], prefix), bias], prefix)
        assert self.int8 is not None
        weight = self.w[f"{prefix}.weight"]
        q = quantize_input(self.g, scheme, self.int8.ranges, x, weight.shape[1], prefix)
        return int8_matmul(self.g, q, weight.T, self.w[f"{prefix}.bias"], prefix, scheme == "rows")

    def ort_linear(self, x: str, name: str, w_t: np.ndarray, bias: np.ndarray, folded: bool = False) -> str:
        """``qdq`` in ONNX Runtime's own int8 operators: ``x`` divided by its SmoothQuant factors
        (unless ``folded`` into the producer), ``QuantizeLinear`` on the calibrated grid, then
        ``MatMulIntegerToFloat`` with the bias inside the kernel (ONNX Runtime's own fusion of the
        QDQ pair leaves the bias as a separate pass over the output)."""
        assert self.int8 is not None
        x = x if folded else self.smooth_divided(x, name)
        q = quantize_input(self.g, "static", self.int8.ranges, x, 0, name)
        return int8_matmul(self.g, q, self.smoothed(name, w_t), bias, name, per_token=False)

    def float_input(self, x: str, name: str, scheme: str) -> str:
        """A float MatMul's input: ``x``, or for ``qdq`` ``x`` on its calibrated int8 grid."""
        if scheme != "qdq":
            return x
        assert self.int8 is not None
        return fake_quantized(self.g, self.int8.ranges, self.smooth_divided(x, name), name)

    def smooth_divided(self, x: str, name: str) -> str:
        """``x`` divided by layer input ``name``'s SmoothQuant factors, where it has them."""
        factors = None if self.int8 is None else self.int8.smoothing(name)
        if factors is None:
            return x
        inverse = self.g.const(f"{name}/smooth", (1.0 / factors).astype(np.float32))
        return self.g.op("Mul", [x, inverse], f"{name}/smooth")

    def smoothed(self, name: str, w_t: np.ndarray) -> np.ndarray:
        """The [K, N] weight of layer input ``name``, its rows times the input's SmoothQuant factors."""
        factors = None if self.int8 is None else self.int8.smoothing(name)
        return w_t if factors is None else w_t * factors[:, None]

    def attention(self, x: str, p: str) -> str:
        g, w, cfg = self.g, self.w, self.cfg
        heads = [f"{p}.attention.self.{n}" for n in ("query", "key", "value")]
        qkv_b = site_bias(w, f"{p}.attention.self")
        scope = f"{p}.attention.self"
        scheme = self.scheme(QKV)
        if self.per_sequence:
            return self.sequence_attention(x, p, heads, qkv_b, scheme)
        if scheme in ("fp32", "weights", "qdq"):
            qkv_w = self.qkv_weight(p, heads, scheme)
            return g.op(
                "Attention",
                [self.float_input(x, scope, scheme), qkv_w, g.const(f"{p}.attention.qkv.bias", qkv_b), self.mask],
                scope,
                MS_DOMAIN,
                num_heads=cfg.heads,
            )
        assert self.int8 is not None
        q = quantize_input(g, scheme, self.int8.ranges, x, cfg.hidden, scope)
        qkv = [int8_matmul(g, q, w[f"{h}.weight"].T, None, h, scheme == "rows") for h in heads]
        bias = g.const(f"{p}.attention.qkv.bias", qkv_b)  # MultiHeadAttention adds it
        return g.op(
            "MultiHeadAttention", [*qkv, bias, "", self.attention_bias()], scope, MS_DOMAIN, num_heads=cfg.heads
        )

    def qkv_weight(self, p: str, heads: list[str], scheme: str, columns: np.ndarray | None = None) -> str:
        """The fused Q|K|V weight [hidden, 3 x hidden], each column times ``columns`` when given:
        fp32, or int8 dequantized (``weights``, ``qdq``)."""
        qkv_t = site_weight(self.w, f"{p}.attention.self")
        if columns is not None:
            qkv_t = qkv_t * columns
        if scheme == "fp32":
            return self.g.const(f"{p}.attention.qkv.weight", qkv_t)
        return dequantized_weight(self.g, self.smoothed(f"{p}.attention.self", qkv_t), f"{p}.attention.qkv")

    def sequence_attention(self, x: str, p: str, heads: list[str], qkv_b: np.ndarray, scheme: str) -> str:
        """Q|K|V projection, then attention on per-sequence blocks (``sequence_feeds``)."""
        g, w, cfg = self.g, self.w, self.cfg
        scope = f"{p}.attention.self"
        hidden = cfg.hidden
        # the scores' 1/sqrt(D) is folded into Q's weight and bias (exact for D = 64: a power of
        # two), so Q goes into the attention as it is and OpenVINO takes its Transpose in too
        head_scales = np.array([1.0 / np.sqrt(cfg.hidden // cfg.heads), 1.0, 1.0], np.float32)  # Q, K, V
        columns = np.repeat(head_scales, hidden)
        rows_shape = g.op("Shape", [x])
        if scheme == "qdq" and self.ort_ops:
            assert self.int8 is not None
            out_factors = self.int8.smoothing(f"{p}.attention.output.dense")
            if out_factors is not None:  # the output layer's SmoothQuant division, in V's columns
                columns[2 * hidden :] /= out_factors
            qkv = self.ort_linear(x, scope, site_weight(w, scope) * columns, qkv_b * columns)
        elif scheme in ("fp32", "weights", "qdq"):
            qkv_w = self.qkv_weight(p, heads, scheme, columns)
            x = self.float_input(x, scope, scheme)
            bias = g.const(f"{p}.attention.qkv.bias", qkv_b * columns)
            qkv = g.op("Add", [g.op("MatMul", [x, qkv_w], scope), bias], scope)
        else:
            assert self.int8 is not None
            q = quantize_input(g, scheme, self.int8.ranges, x, cfg.hidden, scope)
            parts = [
                int8_matmul(g, q, w[f"{h}.weight"].T * k, w[f"{h}.bias"] * k, h, scheme == "rows")
                for h, k in zip(heads, head_scales, strict=True)
            ]
            qkv = g.op("Concat", parts, scope, axis=-1)
        # [3 x tokens, hidden]: token t's Q, K and V are rows 3t, 3t + 1 and 3t + 2, so each is
        # gathered straight into its blocks [S, b, hidden] (one gather of whole Q|K|V rows and a
        # split copied the blocks twice)
        flat = g.op("Reshape", [qkv, g.const(f"{scope}/flat_shape", np.array([-1, hidden], np.int64))])
        outs = []
        for key in self.block_keys():
            qb, kb, vb = (
                g.op("Gather", [flat, index], f"{scope}/b{key}/{part}", axis=0)
                for part, index in zip("qkv", self.qkv_index(key), strict=True)
            )
            ctx = (
                self.block_attention(qb, kb, vb, key, scope)
                if self.ort_ops
                else self.plain_attention(qb, kb, vb, int(key), scope)
            )
            outs.append(g.op("Reshape", [ctx, g.const(f"{scope}/b{key}/out", np.array([-1, hidden], np.int64))]))
        tokens = g.op("Gather", [g.op("Concat", outs, axis=0), "attn_scatter"], f"{scope}/scatter", axis=0)
        return g.op("Reshape", [tokens, rows_shape], f"{scope}/rows")

    def plain_attention(self, qb: str, kb: str, vb: str, b: int, scope: str) -> str:
        """One bucket's attention in plain MatMul / Softmax, spelled for OpenVINO's fusion."""
        g, nh = self.g, self.cfg.heads
        shape = g.const(f"{scope}/b{b}/heads", np.array([0, 0, nh, self.cfg.hidden // nh], np.int64))
        qb = g.op("Transpose", [g.op("Reshape", [qb, shape])], perm=[0, 2, 1, 3])
        # K as [S, heads, b, D] and then its last two axes swapped, not one [0, 2, 3, 1]
        # Transpose: OpenVINO folds the swap into the attention's first MatMul and keeps the
        # rest a cheap copy (one [0, 2, 3, 1] Transpose took 1.9 ms of a layer's 57 ms)
        kb = g.op("Transpose", [g.op("Reshape", [kb, shape])], perm=[0, 2, 1, 3])
        kb = g.op("Transpose", [kb], perm=[0, 1, 3, 2])
        vb = g.op("Transpose", [g.op("Reshape", [vb, shape])], perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("MatMul", [qb, kb]), self.block_bias(b)])  # [S, heads, b, b]
        ctx = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), vb])  # [S, heads, b, D]
        return g.op("Transpose", [ctx], perm=[0, 2, 1, 3])

    def block_keys(self) -> list[str]:
        """The suffixes of the per-sequence attention's inputs, one per call a layer: the bucket
        lengths (``attn_index_64``, ...) or ONNX Runtime's slots (``attn_index_s0``, ...)."""
        return [f"s{k}" for k in range(SLOTS)] if self.ort_ops else [str(b) for b in BUCKETS]

    def block_attention(self, qb: str, kb: str, vb: str, key: str, scope: str) -> str:
        """One slot's attention in ONNX Runtime's ``com.microsoft.MultiHeadAttention``: the
        blocks [S, B, hidden] as they are (no transposes), each sequence's length
        (``attn_lens_<slot>``) as the key padding mask, 1/sqrt(D) already in Q."""
        return self.g.op(
            "MultiHeadAttention",
            [qb, kb, vb, "", f"attn_lens_{key}"],
            f"{scope}/b{key}",
            MS_DOMAIN,
            num_heads=self.cfg.heads,
            scale=1.0,
            mask_filter_value=MASKED,
        )

    def qkv_index(self, key: str) -> list[str]:
        """``attn_index_<key>`` as the rows of Q, K and V in the [3 x tokens, hidden] view, made once."""
        if key not in self._qkv_index:
            g = self.g
            index = f"attn_index_{key}"
            three = g.op("Mul", [index, g.const(f"three_{key}", np.array(3, np.int64))], f"{index}/q")
            self._qkv_index[key] = [
                three,
                *(
                    g.op("Add", [three, g.const(f"plus{i}_{key}", np.array(i, np.int64))], f"{index}/{part}")
                    for i, part in ((1, "k"), (2, "v"))
                ),
            ]
        return self._qkv_index[key]

    def block_bias(self, b: int) -> str:
        """``attn_bias_b`` as [S, 1, 1, b], made once for all layers."""
        if b not in self._block_bias:
            self._block_bias[b] = self.g.op(
                "Unsqueeze",
                [f"attn_bias_{b}", self.g.const(f"axes_12_{b}", np.array([1, 2], np.int64))],
                f"attn_bias_{b}/heads",
            )
        return self._block_bias[b]

    def attention_bias(self) -> str:
        """The mask as MultiHeadAttention's additive bias [R, 1, L, L]: 0 within a sequence, -10000 across."""
        if self._bias is None:
            g = self.g
            same = g.op("Cast", [self.mask], to=FLOAT)
            bias = g.op(
                "Mul",
                [
                    g.op("Sub", [same, g.const("one", np.array(1, np.float32))]),
                    g.const("masked", np.array(10000, np.float32)),
                ],
            )
            self._bias = g.op("Unsqueeze", [bias, g.const("axes_heads", np.array([1], np.int64))], "attention_bias")
        return self._bias


def build(model: torch.nn.Module, int8: Int8Recipe | None = None, attention: str = "mask") -> onnx.ModelProto:
    """The fused ONNX graph of ``model`` (a ``PackedBertForQA``): fp32, or int8 by ``int8``;
    attention over the masked row (``mask``) or per sequence (``sequence``)."""
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
    if attention not in ATTENTIONS:
        raise ValueError(f"onnx_fused: attention must be one of {', '.join(ATTENTIONS)}, got {attention!r}")
    per_sequence = attention in PER_SEQUENCE
    mask = "" if per_sequence else _sequence_mask(g, ids, lens)
    layers = _Layers(g, w, cfg, int8, mask, per_sequence, ort_ops=attention == ORT_SEQUENCE)
    for i in range(cfg.layers):
        p = f"bert.encoder.layer.{i}"
        ctx = layers.attention(x, p)
        attn = layers.linear(ctx, f"{p}.attention.output.dense", ATTENTION_OUTPUT)
        x = _layer_norm(g, g.op("Add", [attn, x]), w, f"{p}.attention.output.LayerNorm", cfg.layer_norm_eps)
        hidden = g.op("Gelu", [layers.linear(x, f"{p}.intermediate.dense", FFN_INPUT)], f"{p}.intermediate", MS_DOMAIN)
        out = layers.linear(hidden, f"{p}.output.dense", FFN_OUTPUT)
        x = _layer_norm(g, g.op("Add", [out, x]), w, f"{p}.output.LayerNorm", cfg.layer_norm_eps)
    g.nodes.append(helper.make_node("Identity", [_linear(g, x, w, "qa_outputs")], [OUTPUT_NAME], name="logits"))

    def io(name: str, dims: list[str | int], dtype: int = TensorProto.INT32) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, dtype, dims)

    inputs = [io(n, ["rows", "length"]) for n in (ids, seg, pos)] + [io(lens, ["rows", "slots"])]
    if per_sequence:
        inputs.append(io("attn_scatter", ["tokens"], TensorProto.INT64))
        if attention == ORT_SEQUENCE:  # blocks of the lengths the host picks (attention_feeds.slot_feeds)
            inputs += [io(f"attn_index_s{k}", [f"seqs_s{k}", f"len_s{k}"], TensorProto.INT64) for k in range(SLOTS)]
            inputs += [io(f"attn_lens_s{k}", [f"seqs_s{k}"]) for k in range(SLOTS)]
        else:  # blocks of bucket lengths (attention_feeds.sequence_feeds)
            inputs += [io(f"attn_index_{b}", [f"seqs_{b}", b], TensorProto.INT64) for b in BUCKETS]
            inputs += [io(f"attn_bias_{b}", [f"seqs_{b}", b], TensorProto.FLOAT) for b in BUCKETS]
    output = io(OUTPUT_NAME, ["rows", "length", 2], TensorProto.FLOAT)
    graph = helper.make_graph(g.nodes, "packed_bert_fused", inputs, [output], g.initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)])


def export_fused(model: torch.nn.Module, path: Path, int8: Int8Recipe | None = None, attention: str = "mask") -> Path:
    """Write the fused graph of ``model`` (fp32, or int8 by ``int8``) to ``path``; atomic."""
    atomic_write_bytes(path, build(model, int8, attention).SerializeToString())
    return path
