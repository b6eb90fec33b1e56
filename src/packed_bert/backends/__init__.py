"""Runtimes behind one interface: ``create(name, model_spec, precision, device) -> Runner``.

``null`` and ``sim`` import nothing heavy; ``torch``, ``onnxruntime`` and ``openvino`` load the model from
``model_spec`` (``random``, ``tiny`` or a path; see ``model.weights.load_model``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from packed_bert.backends.base import BatchLike, Runner, describe
from packed_bert.backends.recipes import check_precision, default_recipe
from packed_bert.errors import UserError

if TYPE_CHECKING:
    import torch

BACKENDS = ("null", "sim", "torch", "onnxruntime", "openvino")

__all__ = ["BACKENDS", "BatchLike", "Runner", "create", "default_recipe", "describe"]


def create(
    name: str,
    model_spec: str | torch.nn.Module = "random",
    precision: str = "fp32",
    device: str = "cpu",
    *,
    model: str | None = None,
    **options: Any,
) -> Runner:
    """Prepare ``model_spec`` (random | tiny | a path | a built module) on ``device`` at ``precision`` with runtime ``name``.

    ``model`` (``bert-99`` / ``bert-99.9``), when given, is checked against the precision
    recipes. Options by backend: null ``max_rows``; sim ``timing`` (``SimTiming``) or
    ``overhead_s``/``row_time_s``/``static_shape``, ``logits`` (real weights: the fp32 model's,
    computed on this CPU); torch ``cuda_graphs``,
    ``threads``, ``varlen``; onnxruntime ``quant`` (dynamic|mixed|static|rows|...), ``graph`` (fused|traced|sequence), ``static_rows``,
    ``threads``; openvino ``threads``, ``dynamic_quant``, ``attention`` (sequence | mask); torch ``compile`` (``torch.compile``, not
    batch-invariant) and with it ``freezing`` (Inductor's freezing pass, CPU), ``kernel`` (int8: onednn | amx; bf16 and
    int8-bf16: amx), ``bf16_layers`` (int8-bf16: the layers kept in bf16, ``model.linears.LINEAR_KINDS``) and
    ``residual`` (kernel=amx: the residual stream in fp32 or bf16) and ``attention`` (kernel=amx: attention's products
    in bf16, both in int8 or Q K^T alone in int8, ``amx_kernels.ATTENTION_KINDS``) and ``kept`` (int8-bf16 on
    kernel=amx: its kept layers in bf16 or int12, 12-bit inputs per row x int8 weights on the soft-tile builds,
    ``amx_kernels.KEPT_PRECISIONS``).
    """
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "sim" and device == "cpu":
        device = "sim:0"
    check_precision(name, device, precision, model)
    try:
        if name == "null":
            from packed_bert.backends.null import NullRunner

            return NullRunner(precision, device, **options)
        if name == "sim":
            from packed_bert.backends.sim import SimRunner, SimTiming

            timing = options.pop("timing", None)
            if timing is None:
                keys = ("overhead_s", "row_time_s", "static_shape")
                timing = SimTiming(**{k: options.pop(k) for k in keys if k in options})
            return SimRunner(timing, precision, device, weights=model_spec, **options)
        if name == "torch":
            from packed_bert.backends.torch_backend import TorchRunner

            return TorchRunner(model_spec, precision, device, **options)
        if name == "openvino":
            from packed_bert.backends.openvino_backend import OvRunner

            return OvRunner(model_spec, precision, device, **options)
        from packed_bert.backends.onnxruntime_backend import OrtRunner

        return OrtRunner(model_spec, precision, device, **options)
    except TypeError as exc:  # an option the backend does not take
        if "unexpected keyword" in str(exc):
            raise UserError(f"backend {name!r}: {exc}") from exc
        raise
