"""SmoothQuant factors for the layers whose input goes on an 8-bit grid per row (torch option
kept=int8-rows, ``AmxLinearWeights.int8_rows``), with the migration strength chosen per layer.

The static int8 layers share one alpha (``quantize.SMOOTHQUANT_ALPHA``): there the per-tensor
range of the smoothed input is what hurts. A row grid takes each row's own step instead, so the
best alpha differs (docs/performance-history.md, thirty-third session: 0.6 for minilm's FFN
output layers, 0.8's output error a third higher). Each layer takes the alpha of
``ROW_SMOOTHING_ALPHAS`` whose output error on the calibration set is least: the layer's
arithmetic (input / s on a symmetric 8-bit grid per row, weight x s in int8 per column), in
float, against the fp32 product, over a sample of the 100 calibration questions' real tokens.

kept=int8-hybrid also takes each layer's fixed grid bound from the same sample: the
``HYBRID_QUANTILE`` quantile of the rows' peaks of input / s at the chosen alpha, times
``HYBRID_MARGIN`` (kernels/grids.h puts the rows past it on their own grid). The bound must stay
below the few outlier rows (special tokens, whose GELU outputs are far larger than the rest): on
minilm-l6-squad, with the FFN output layers emulated in float, F1 stayed within 0.2% of per-row
grids with the bound at the 50th to 99th percentile and fell 3.5% at the 99.5th
(docs/performance-history.md, thirty-sixth session).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from packed_bert.backends.amx_kernels import ROW_GRID_U8_LEVELS
from packed_bert.backends.onnx_int8 import quantize_weight, smooth_factors
from packed_bert.backends.quantize import (
    Calibration,
    ChannelRanges,
    calibration_features,
    each_layer_input,
    extend_ranges,
    features_digest,
    layer_kind,
)
from packed_bert.cache import atomic_path

ROW_SMOOTHING_ALPHAS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # the migration strengths tried per layer
SAMPLED_TOKENS = 2048  # about this many real calibration tokens per layer judge the alphas
# kept=int8-hybrid: each layer's fixed grid reaches this quantile of the calibration rows' peaks
# times HYBRID_MARGIN. The margin: the int8 model's activations drift from the fp32 calibration
# model's. On random BERT-Large weights, whose rows' peaks lie close together, 3-52% of a layer's
# rows in an Offline batch passed the bare 95th percentile (its FFN input layer 151-173 ms against
# 121-126 for int8-rows), 1.0% on average at 1.25x, 0.1% at 1.5x; minilm-l6-squad's F1 was 100.124%,
# 100.048% and 99.873% of fp32 with these three (docs/performance-history.md, thirty-seventh session).
HYBRID_QUANTILE = 0.95
HYBRID_MARGIN = 1.25


@dataclass(frozen=True)
class RowSmoothing:
    """Per layer input name: its SmoothQuant factors [K] at its chosen alpha, the alpha, its
    relative output error at each of ``alphas``, and its fixed grid bound (``row_bound``)."""

    smooth: dict[str, np.ndarray]
    alpha: dict[str, float]
    error: dict[str, np.ndarray]
    bound: dict[str, float]
    alphas: tuple[float, ...] = ROW_SMOOTHING_ALPHAS

    def summary(self) -> str:
        """The chosen alphas and how many layers took each: ``0.6 x 5, 0.7 x 1``."""
        values, counts = np.unique(np.array(list(self.alpha.values())), return_counts=True)
        return ", ".join(f"{v:g} x {c}" for v, c in zip(values, counts, strict=True))


def row_grid_error(x: Any, weight_t: np.ndarray, smooth: np.ndarray, reference: Any = None) -> float:
    """``||x' w' - x w|| / ||x w||`` (Frobenius) for input rows ``x`` (a torch [T, K]) and weight
    [K, N], where x' is x / smooth on a symmetric 8-bit grid per row and w' is weight x smooth in
    int8 per column: the kernel's int8-rows arithmetic, in float. ``reference``: ``x w`` in fp32
    where the caller has it (one product a layer for all its alphas)."""
    import torch

    s = torch.from_numpy(np.asarray(smooth, np.float32))
    xs = x.float() / s
    step = xs.abs().amax(dim=1, keepdim=True) / ROW_GRID_U8_LEVELS
    step = torch.where(step > 0, step, torch.ones_like(step))
    xq = torch.round(xs / step) * step
    wq, w_scale = quantize_weight(np.asarray(weight_t, np.float32) * smooth[:, None])
    w_deq = torch.from_numpy(wq.astype(np.float32) * w_scale)
    if reference is None:
        reference = x.float() @ torch.from_numpy(np.asarray(weight_t, np.float32))
    norm = float(torch.linalg.norm(reference))
    return float(torch.linalg.norm(xq @ w_deq - reference)) / norm if norm > 0 else 0.0


def row_bound(x: Any, smooth: np.ndarray, quantile: float, margin: float) -> float:
    """``margin`` times the ``quantile`` quantile of input rows ``x``'s (a torch [T, K]) peaks of
    ``|x / smooth|``: kept=int8-hybrid's fixed grid reaches it."""
    import torch

    peaks = (x.float() / torch.from_numpy(np.asarray(smooth, np.float32))).abs().amax(dim=1)
    return margin * float(torch.quantile(peaks.double(), quantile))


def choose_row_smoothing(
    samples: dict[str, Any],
    channels: ChannelRanges,
    weights_t: dict[str, np.ndarray],
    alphas: tuple[float, ...] = ROW_SMOOTHING_ALPHAS,
) -> RowSmoothing:
    """Each layer's alpha of ``alphas`` with the least ``row_grid_error`` on its ``samples`` (torch
    [T, K] input rows), its factors from its ``channels`` and weight (``onnx_int8.smooth_factors``)."""
    import torch

    smooth, alpha, error, bound = {}, {}, {}, {}
    for name, x in samples.items():
        factors = [smooth_factors({name: channels[name]}, {name: weights_t[name]}, a)[0][name] for a in alphas]
        reference = x.float() @ torch.from_numpy(np.asarray(weights_t[name], np.float32))
        errors = np.array([row_grid_error(x, weights_t[name], f, reference) for f in factors])
        best = int(np.argmin(errors))
        smooth[name], alpha[name], error[name] = factors[best], alphas[best], errors
        bound[name] = row_bound(x, factors[best], HYBRID_QUANTILE, HYBRID_MARGIN)
    return RowSmoothing(smooth, alpha, error, bound, alphas)


def sample_layer_inputs(
    model: object, features: dict[str, np.ndarray], kinds: tuple[str, ...], tokens: int = SAMPLED_TOKENS
) -> tuple[dict[str, Any], ChannelRanges]:
    """About ``tokens`` real tokens' inputs (every n-th) of each layer of ``kinds`` and every such
    input's per-channel range over all real tokens, from the fp32 torch ``model``."""
    import torch

    stride = max(1, -(-int(np.sum(features["lengths"])) // tokens))
    kept: dict[str, list[torch.Tensor]] = {}
    channels: ChannelRanges = {}

    def visit(name: str, values: torch.Tensor) -> None:
        if layer_kind(name) in kinds:
            extend_ranges(channels, name, values)
            kept.setdefault(name, []).append(values[::stride].clone())

    each_layer_input(model, features, visit)
    return {name: torch.cat(parts) for name, parts in kept.items()}, channels


def calibrated_row_smoothing(
    model: object, model_spec: object, seed: int, calibration: Calibration | None, kinds: tuple[str, ...]
) -> RowSmoothing:
    """``choose_row_smoothing`` for the layers of ``kinds`` of ``model`` (loaded from
    ``model_spec``) on the calibration features, kept in the cache per weights, calibration set,
    kinds, alphas, bound quantile and margin (BERT-Large's FFN output layers: a few minutes once)."""
    import torch

    from packed_bert.backends._model import fingerprint
    from packed_bert.backends.onnx_fused import site_weight
    from packed_bert.cache import cache_dir

    features = dict(calibration_features(calibration, "kept=int8-rows"))
    weights = fingerprint(model_spec if isinstance(model_spec, str) else cast(Any, model), seed)
    tried = "-".join(f"{a:g}" for a in ROW_SMOOTHING_ALPHAS)
    key = f"{weights}-cal{features_digest(features)}-{'+'.join(kinds)}-a{tried}-t{SAMPLED_TOKENS}-q{HYBRID_QUANTILE:g}x{HYBRID_MARGIN:g}"
    path = cache_dir() / "row-smoothing" / f"{key}.npz"
    if path.exists():
        with np.load(path) as saved:
            names = [str(n) for n in saved["names"]]
            return RowSmoothing(
                {n: saved[f"smooth/{n}"] for n in names},
                {n: float(a) for n, a in zip(names, saved["alpha"], strict=True)},
                {n: saved[f"error/{n}"] for n in names},
                {n: float(b) for n, b in zip(names, saved["bound"], strict=True)},
            )
    samples, channels = sample_layer_inputs(model, features, kinds)
    state = cast(torch.nn.Module, model).state_dict()
    w = {k: v.detach().float().cpu().numpy() for k, v in state.items()}
    chosen = choose_row_smoothing(samples, channels, {n: site_weight(w, n) for n in samples})
    names = sorted(chosen.smooth)
    arrays: dict[str, Any] = {f"smooth/{n}": chosen.smooth[n] for n in names}
    arrays.update({f"error/{n}": chosen.error[n] for n in names})
    arrays.update(names=np.array(names), alpha=np.array([chosen.alpha[n] for n in names]))
    arrays.update(bound=np.array([chosen.bound[n] for n in names]))
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        np.savez(f, **arrays)
    return chosen
