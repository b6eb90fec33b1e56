"""Export the packed model to ONNX (inputs input_ids, segment_ids, position_ids, seq_lens;
output logits [R, L, 2]; the block-diagonal mask is built inside the graph from seq_lens), and
the cache of exported and quantized models.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from packed_bert.cache import atomic_path, cache_dir

if TYPE_CHECKING:
    import torch

INPUT_NAMES = ("input_ids", "segment_ids", "position_ids", "seq_lens")
OUTPUT_NAME = "logits"
OPSET = 17
# bump when an exported graph or the quantization recipe changes (2: additive mask, 3: fused
# graph, 4: the static int8 Q|K|V grid no longer shares its initializer's name with 1/sqrt(d), 5:
# per-sequence attention gathers Q, K and V apart and takes 1/sqrt(d) in Q's weights, 6: sequence-ort
# attention over blocks of lengths the host picks per batch)
EXPORT_VERSION = 6


def library_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def cache_path(weights_id: str, config: object, precision: str, variant: str = "") -> Path:
    """Where the model for these weights/config/precision/library versions lives."""
    key = json.dumps(
        {
            "weights": weights_id,
            "config": repr(config),
            "precision": precision,
            "variant": variant,
            "versions": library_versions(),
            "export": EXPORT_VERSION,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return cache_dir() / "onnx" / f"bert-{precision}{'-' + variant if variant else ''}-{digest}.onnx"


def export(model: torch.nn.Module, path: Path) -> Path:
    """Write ``model`` (fp32, CPU) as ONNX with dynamic rows, length and slots; atomic."""
    import torch

    model = model.float().cpu().eval()
    rows, length = 2, 16
    ids = torch.ones(rows, length, dtype=torch.int32)
    seg = torch.zeros(rows, length, dtype=torch.int32)
    pos = torch.arange(length, dtype=torch.int32).repeat(rows, 1)
    lens = torch.tensor([[10, 6], [16, 0]], dtype=torch.int32)
    dims = {0: "rows", 1: "length"}
    dynamic = {name: dims for name in INPUT_NAMES[:3]}
    dynamic["seq_lens"] = {0: "rows", 1: "slots"}
    dynamic[OUTPUT_NAME] = dims
    with atomic_path(path) as tmp, torch.no_grad():
        torch.onnx.export(
            model,
            (ids, seg, pos, lens),
            str(tmp),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    return path
