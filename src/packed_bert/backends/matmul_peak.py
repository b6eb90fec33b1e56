"""Measure this machine's matrix-multiply peak at a precision (the yardstick for FLOP rates).

fp32/bf16/fp16: ``torch.matmul`` of large square matrices; int8: ``torch._int_mm`` (torch) or a
one-node ONNX ``MatMulInteger`` graph (ONNX Runtime's own int8 kernels); fp32/bf16 in OpenVINO
too; int8/bf16 on packed-bert's own AMX kernels (``amx``) where the CPU has the tiles. Which
runtime is fastest at a precision depends on the CPU (on an AMD EPYC Zen 5, torch's fp32 matmul
ran at half ONNX Runtime's and OpenVINO's bf16 at half torch's; on the AMX Xeon our kernels' int8
outran ONNX Runtime's), so ``fastest_matmul`` tries each and keeps the best: the precision's peak
on this machine.

``torch_peak``/``ort_peak`` give the best of a few repeats: the machine's peak when it is
quiet. ``MatmulProbe`` gives the mean rate over a short window, to be taken right beside a
timed piece of work on a shared machine: the work and its probe then see the same load, and
their ratio is the fraction of the peak the work reached under that load.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from packed_bert.backends.cpu_class import ignores_cap

TORCH_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
SETTLE_S = 0.5  # seconds of matmuls before a runtime's rate counts (fastest_matmul)


def best_seconds(fn: Callable[[], object], repeats: int, warm: bool = True) -> float:
    """Best of ``repeats`` calls, after a warm-up call unless the caller made one (``fn``
    synchronises itself on a GPU)."""
    if warm:
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def torch_matmul(precision: str, n: int = 2048, device: str = "cpu") -> Callable[[], object]:
    """One n x n x n matmul in torch at ``precision`` (fp32, bf16, fp16, int8), synchronised."""
    import torch

    if precision == "int8":
        a = torch.randint(-128, 127, (n, n), dtype=torch.int8, device=device)
        b = torch.randint(-128, 127, (n, n), dtype=torch.int8, device=device)
        op: Callable[[], object] = lambda: torch._int_mm(a, b)  # noqa: E731
    else:
        dtype = getattr(torch, TORCH_DTYPES[precision])
        x = torch.randn(n, n, device=device).to(dtype)
        y = torch.randn(n, n, device=device).to(dtype)
        op = lambda: torch.matmul(x, y)  # noqa: E731
    if not device.startswith("cuda"):
        return op

    def synced() -> object:
        out = op()
        torch.cuda.synchronize()
        return out

    return synced


def ort_matmul(precision: str, n: int = 2048, threads: int | None = None) -> Callable[[], object]:
    """One n x n x n MatMul (fp32) or MatMulInteger (int8, u8 x s8) in an ONNX Runtime session."""
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
    return lambda: sess.run(None, {"a": a})


def openvino_matmul(precision: str, n: int = 2048, threads: int | None = None) -> Callable[[], object]:
    """One n x n x n MatMul (fp32 weights) compiled by OpenVINO's CPU plugin at ``precision``
    (fp32 or bf16: ``INFERENCE_PRECISION_HINT``)."""
    import openvino as ov
    from openvino import opset13

    rng = np.random.default_rng(0)
    a = opset13.parameter([n, n], ov.Type.f32, name="a")
    b = opset13.constant(rng.standard_normal((n, n), dtype=np.float32))
    model = ov.Model([opset13.matmul(a, b, False, False)], [a])
    config: dict[str, object] = {"INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision]}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
    x = rng.standard_normal((n, n), dtype=np.float32)
    return lambda: request.infer({0: x})


def amx_matmul(precision: str, n: int = 2048) -> Callable[[], object]:
    """One n x n x n linear layer on packed-bert's own AMX kernels (``amx_kernels``): int8 (u8 x
    s8, int32 sums), bf16, or int12 (bf16 rows on 12-bit grids x int8; the soft-tile builds), bf16
    out, as the recipes' layers run (at 2048^3 its int8 read 4.9-5.8 TOP/s on the Xeon where ONNX
    Runtime's ``MatMulInteger`` read 4.1-4.5; docs/performance.md)."""
    import torch

    from packed_bert.backends.amx_kernels import AmxLinearWeights, block_rows, library, tiles_here
    from packed_bert.errors import UserError

    if precision not in ("int8", "bf16", "int12") or tiles_here() is None:
        raise RuntimeError(f"packed-bert's AMX kernels: no {precision} matmul on this CPU")
    try:
        library()  # built here (no compiler, or tiles refused: no such matmul)
    except UserError as exc:
        raise RuntimeError(str(exc)) from exc
    rng = np.random.default_rng(0)
    if precision == "int8":
        wq = rng.integers(-127, 128, (n, n), dtype=np.int8)
        ones = np.ones(n, np.float32)
        layer = AmxLinearWeights(wq, ones, np.zeros(n, np.float32), ones, 1.0, 128)
        x = block_rows(n, n, torch.uint8).copy_(torch.from_numpy(rng.integers(0, 256, (n, n), dtype=np.uint8)))
    else:
        w = rng.standard_normal((n, n), dtype=np.float32)
        make = AmxLinearWeights.int12 if precision == "int12" else AmxLinearWeights.bf16
        try:  # int12 (bf16 rows put on their 12-bit grids, x int8) runs on the soft-tile builds only
            layer = make(w, np.zeros(n, np.float32))
        except UserError as exc:
            raise RuntimeError(str(exc)) from exc
        x = block_rows(n, n, torch.bfloat16).copy_(torch.randn(n, n, dtype=torch.bfloat16))
    return lambda: layer(x, torch.bfloat16)


# runtimes with a CPU matmul at each precision, for fastest_matmul
MATMUL_RUNTIMES: dict[str, tuple[str, ...]] = {
    "fp32": ("torch", "onnxruntime", "openvino"),
    "bf16": ("torch", "openvino", "amx"),
    "int8": ("torch", "onnxruntime", "amx"),
    "int12": ("amx",),  # int8-bf16's kept layers with torch option kept=int12: ours alone
}


def runtime_matmul(runtime: str, precision: str, n: int = 2048, threads: int | None = None) -> Callable[[], object]:
    """One n x n x n matmul at ``precision`` in ``runtime`` (torch, onnxruntime, openvino, amx)."""
    if runtime == "torch":
        return torch_matmul(precision, n)
    if runtime == "onnxruntime":
        return ort_matmul(precision, n, threads)
    if runtime == "amx":
        return amx_matmul(precision, n)
    return openvino_matmul(precision, n, threads)


def fastest_matmul(
    precision: str, n: int = 2048, threads: int | None = None, repeats: int = 3, passes: int = 2
) -> tuple[str, Callable[[], object]]:
    """(runtime, matmul) of the runtime whose ``precision`` matmul is fastest here: each settles
    for ``SETTLE_S`` first (the first calls of a runtime run up to 30% slow while its threads
    and buffers warm up, which once made the slower runtime the yardstick), then the best of
    ``repeats`` probe windows in each of ``passes`` rounds over the runtimes counts (a runtime
    measured only once, in a slow moment of a shared machine, once lost to one 30% slower: our
    AMX kernels' int8 read below ONNX Runtime's, an hour later 5,700 against 4,000 GOP/s); a
    runtime that cannot build it (not installed, no kernel) is skipped, and so is one that ignores
    oneDNN's ISA cap where one is set (``cpu_class.ignores_cap``: it would measure the uncapped
    CPU)."""
    probes: dict[str, tuple[MatmulProbe, Callable[[], object]]] = {}
    for runtime in MATMUL_RUNTIMES[precision]:
        if ignores_cap(runtime, precision):
            continue
        try:
            matmul = runtime_matmul(runtime, precision, n, threads)
            probe = MatmulProbe(matmul, n)
            probe.rate(SETTLE_S)
        except (ImportError, RuntimeError):
            continue
        probes[runtime] = (probe, matmul)
    if not probes:
        raise RuntimeError(f"no runtime here has a {precision} matmul")
    rates = dict.fromkeys(probes, 0.0)
    for _ in range(passes):
        for runtime, (probe, _matmul) in probes.items():
            rates[runtime] = max(rates[runtime], *(probe.rate() for _ in range(repeats)))
    runtime = max(rates, key=lambda r: rates[r])
    return runtime, probes[runtime][1]


def torch_peak(precision: str, n: int = 2048, repeats: int = 5, device: str = "cpu") -> float:
    """Best-of-``repeats`` FLOP/s of an n x n x n matmul in torch at ``precision``."""
    return 2.0 * n**3 / best_seconds(torch_matmul(precision, n, device), repeats)


def ort_peak(precision: str, n: int = 2048, repeats: int = 5, threads: int | None = None) -> float:
    """Best-of-``repeats`` FLOP/s of an n x n x n MatMul/MatMulInteger in ONNX Runtime."""
    return 2.0 * n**3 / best_seconds(ort_matmul(precision, n, threads), repeats)


class MatmulProbe:
    """Mean FLOP/s of one prepared matmul over a short window, taken as often as needed."""

    def __init__(self, matmul: Callable[[], object], n: int) -> None:
        self._matmul = matmul
        self._flops = 2.0 * n**3
        matmul()  # warm-up

    def rate(self, window_s: float = 0.2) -> float:
        """FLOP/s averaged over whole matmuls filling at least ``window_s`` seconds, after one
        untimed call (after a second or two idle the first call ran up to 2x slow: 984 against
        1,606-1,724 GOP/s for torch int8 on an AMD EPYC Zen 5, its threads asleep)."""
        self._matmul()
        count = 0
        start = time.perf_counter()
        while True:
            self._matmul()
            count += 1
            elapsed = time.perf_counter() - start
            if elapsed >= window_s:
                return count * self._flops / elapsed
