"""Measure this machine's matrix-multiply peak at a precision (the yardstick for FLOP rates).

fp32/bf16/fp16: ``torch.matmul`` of large square matrices; int8: ``torch._int_mm`` (torch) or a
one-node ONNX ``MatMulInteger`` graph (ONNX Runtime's own int8 kernels). Best of a few repeats.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _best_seconds(fn: Callable[[], object], repeats: int, sync: Callable[[], None] | None = None) -> float:
    fn()
    if sync:
        sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        best = min(best, time.perf_counter() - start)
    return best


def torch_peak(precision: str, n: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    """FLOP/s of an n x n x n matmul in torch at ``precision`` (fp32, bf16, fp16, int8)."""
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    if precision == "int8":
        a = torch.randint(-128, 127, (n, n), dtype=torch.int8, device=device)
        b = torch.randint(-128, 127, (n, n), dtype=torch.int8, device=device)
        secs = _best_seconds(lambda: torch._int_mm(a, b), repeats, sync)
    else:
        dtype = getattr(torch, TORCH_DTYPES[precision])
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        secs = _best_seconds(lambda: torch.matmul(a, b), repeats, sync)
    return 2.0 * n**3 / secs


def ort_peak(precision: str, n: int = 2048, repeats: int = 5, threads: int | None = None) -> float:
    """FLOP/s of an n x n x n MatMul (fp32) or MatMulInteger (int8, u8 x s8) in ONNX Runtime."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    a: np.ndarray
    b: np.ndarray
    if precision == "int8":
        a_type, b = TensorProto.UINT8, rng.integers(-128, 127, (n, n), dtype=np.int8)
        node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
        out_type = TensorProto.INT32
        a = rng.integers(0, 255, (n, n), dtype=np.uint8)
    else:
        a_type, b = TensorProto.FLOAT, rng.standard_normal((n, n), dtype=np.float32)
        node = helper.make_node("MatMul", ["a", "b"], ["y"])
        out_type = TensorProto.FLOAT
        a = rng.standard_normal((n, n), dtype=np.float32)
    graph = helper.make_graph(
        [node],
        "peak",
        [helper.make_tensor_value_info("a", a_type, [n, n])],
        [helper.make_tensor_value_info("y", out_type, [n, n])],
        [onnx.numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    secs = _best_seconds(lambda: sess.run(None, {"a": a}), repeats)
    return 2.0 * n**3 / secs
