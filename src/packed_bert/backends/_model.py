"""Loading the packed model for a runtime, and a cheap fingerprint for cache keys."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def load(model_spec: str | torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """``model_spec`` is ``random``, ``tiny``, a path, or an already built module."""
    import torch

    if isinstance(model_spec, torch.nn.Module):
        return model_spec
    from packed_bert.model.weights import load_model

    return load_model(model_spec, seed=seed)


def fingerprint(model_spec: str | torch.nn.Module, seed: int = 0) -> str:
    """Identifies the weights: the spec (with size and mtime for a path) or a sample of a module's tensors."""
    import torch

    h = hashlib.sha256()
    if isinstance(model_spec, torch.nn.Module):
        cfg: Any = getattr(model_spec, "config", None)
        h.update(repr(cfg).encode())
        for name, tensor in model_spec.state_dict().items():
            flat = tensor.detach().reshape(-1)
            h.update(name.encode())
            h.update(repr(tuple(tensor.shape)).encode())
            h.update(flat[:64].float().cpu().numpy().tobytes())
            h.update(flat[-64:].float().cpu().numpy().tobytes())
        return "module-" + h.hexdigest()[:16]
    path = Path(model_spec)
    if model_spec not in ("random", "tiny") and path.exists():
        stats = (
            [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*"))]
            if path.is_dir()
            else [(str(path.resolve()), path.stat().st_size, path.stat().st_mtime_ns)]
        )
        h.update(repr(stats).encode())
    else:
        h.update(f"{model_spec}:{seed}".encode())
    return h.hexdigest()[:16]
