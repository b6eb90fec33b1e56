"""Weights of an ONNX BERT (the MLPerf fp32 ``model.onnx``) mapped back to parameter names.

Initializers that carry Hugging Face names (as a PyTorch export leaves them) are taken as
they are; TensorFlow-style names (``bert/encoder/layer_0/.../kernel``) are translated. The
weights of Linear layers are often anonymous (``onnx::MatMul_1234``, stored transposed as
[in, out]); they are found from the graph: the MatMul whose output is added to a named bias
``X.bias`` holds ``X.weight``. Whatever is still missing is matched by graph order (per layer:
query, key, value, attention output, intermediate, output; then the QA head), with every
shape checked.
"""

import re
from pathlib import Path

import numpy as np
import torch

from packed_bert.errors import UserError
from packed_bert.model.checkpoint import _strip, clean_state_dict

_TF_LAYER = re.compile(r"layer_(\d+)")
_TF_VARIABLE = re.compile(r"/(kernel|bias|gamma|beta|\w+_embeddings|output_weights|output_bias)$")
_PARAMETER = re.compile(r"^(bert\..*|qa_outputs)\.(weight|bias)$")
_LINEAR_SUFFIXES = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)


def _tf_name(name: str) -> tuple[str, bool] | None:
    """A TensorFlow BERT variable name as (HF name, needs transpose), or None."""
    clean = name.split(":")[0]
    if "/" not in clean or clean.startswith("/") or not _TF_VARIABLE.search(clean):
        return None
    if clean.endswith("cls/squad/output_weights"):
        return "qa_outputs.weight", False
    if clean.endswith("cls/squad/output_bias"):
        return "qa_outputs.bias", False
    dotted = _TF_LAYER.sub(r"layer.\1", clean.replace("/", "."))
    transpose = dotted.endswith(".kernel")
    for old, new in ((".kernel", ".weight"), (".gamma", ".weight"), (".beta", ".bias")):
        if dotted.endswith(old):
            dotted = dotted[: -len(old)] + new
    if dotted.endswith("_embeddings"):
        dotted += ".weight"
    return _strip(dotted), transpose


def _param_name(name: str) -> str:
    tf = _tf_name(name)
    return tf[0] if tf is not None else _strip(name)


def linear_names(layers: int) -> list[str]:
    """Linear layers in the order a BERT forward pass runs them."""
    names = [f"bert.encoder.layer.{i}.{s}" for i in range(layers) for s in _LINEAR_SUFFIXES]
    return [*names, "qa_outputs"]


def read_onnx_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Parameter-named float32 tensors recovered from an ONNX BERT graph."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises several kinds on a file that is not ONNX
        raise UserError(f"{path}: not a readable ONNX model ({type(exc).__name__}); give model.onnx") from None
    graph = model.graph
    if not graph.node:
        raise UserError(f"{path}: an ONNX file with an empty graph; give the MLPerf model.onnx")
    arrays: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:  # constants, and names an exporter aliased to a shared initializer
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            arrays[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Identity" and node.input[0] in arrays:
            arrays[node.output[0]] = arrays[node.input[0]]

    state: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        tf = _tf_name(name)
        if tf is not None:
            state[tf[0]] = value.T if tf[1] else value
        else:
            state[name] = value
    named = {k: v for k, v in clean_state_dict(state).items() if _PARAMETER.match(k)}

    # Structural: MatMul(x, W) followed by Add(., X.bias) -> X.weight = W^T; Gemm likewise.
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for inp in node.input:
            consumers.setdefault(inp, []).append(node)
    anonymous: list[tuple[np.ndarray, np.ndarray | None]] = []  # unnamed (weight [out, in], bias)
    for node in graph.node:
        bias: np.ndarray | None = None
        bias_name = ""
        if node.op_type == "MatMul" and node.input[1] in arrays and arrays[node.input[1]].ndim == 2:
            weight = arrays[node.input[1]].T
            for add in consumers.get(node.output[0], []):
                other = [i for i in add.input if i != node.output[0]]
                if add.op_type == "Add" and other and other[0] in arrays:
                    bias, bias_name = arrays[other[0]], _param_name(other[0])
        elif node.op_type == "Gemm" and len(node.input) > 1 and node.input[1] in arrays:
            trans_b = any(a.name == "transB" and a.i == 1 for a in node.attribute)
            weight = arrays[node.input[1]] if trans_b else arrays[node.input[1]].T
            if len(node.input) > 2 and node.input[2] in arrays:
                bias, bias_name = arrays[node.input[2]], _param_name(node.input[2])
        else:
            continue
        if bias_name.endswith(".bias"):
            target = bias_name[: -len(".bias")] + ".weight"
            if target not in named:
                named[target] = _tensor(weight)
        elif _param_name(node.input[1]) not in named:
            anonymous.append((weight, bias))

    _fill_by_order(named, anonymous, path)
    return named


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32, copy=True))


def _fill_by_order(
    named: dict[str, torch.Tensor],
    anonymous: list[tuple[np.ndarray, np.ndarray | None]],
    path: Path,
) -> None:
    """Give unnamed Linear weights (and biases) the names of the missing layers, in order."""
    layer_ids = [int(m.group(1)) for k in named if (m := re.match(r"bert\.encoder\.layer\.(\d+)\.", k))]
    if not layer_ids or not anonymous:
        return
    missing = [n for n in linear_names(1 + max(layer_ids)) if f"{n}.weight" not in named]
    if len(missing) != len(anonymous):
        raise UserError(
            f"{path}: {len(missing)} Linear layers have no named weight but {len(anonymous)} "
            "unnamed MatMul weights were found; not an MLPerf-style BERT graph"
        )
    for name, (weight, bias) in zip(missing, anonymous, strict=True):
        width = weight.shape[0]
        if bias is not None and (
            bias.shape != (width,) or f"{name}.bias" in named and named[f"{name}.bias"].shape != (width,)
        ):
            raise UserError(
                f"{path}: unnamed MatMul weight of shape {list(weight.T.shape)} does not fit "
                f"{name}; not an MLPerf-style BERT graph"
            )
        named[f"{name}.weight"] = _tensor(weight)
        if bias is not None and f"{name}.bias" not in named:
            named[f"{name}.bias"] = _tensor(bias)
