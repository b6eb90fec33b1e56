"""The four linear layers of a BERT encoder layer, named once: what a recipe option names
(``bf16_layers=ffn-output``) and the key of each kind in an int8 recipe (ONNX graphs and PyTorch
alike). This module imports no torch."""

QKV = "qkv"  # the Q|K|V projection (one layer of three widths)
ATTENTION_OUTPUT = "attention-output"  # the attention output projection
FFN_INPUT = "ffn-input"  # the FFN's input (intermediate) projection, GELU after it
FFN_OUTPUT = "ffn-output"  # the FFN's output projection: GELU's heavy-tailed output is its input
LINEAR_KINDS = (QKV, ATTENTION_OUTPUT, FFN_INPUT, FFN_OUTPUT)


def every(scheme: str, **by_kind: str) -> dict[str, str]:
    """``scheme`` for every kind, except those named by keyword (``ffn_output="fp32"``)."""
    named = {kind.replace("-", "_"): kind for kind in LINEAR_KINDS}
    unknown = sorted(set(by_kind) - set(named))
    if unknown:
        raise ValueError(f"no linear layer kind {', '.join(unknown)}; one of {', '.join(named)}")
    return {kind: by_kind.get(key, scheme) for key, kind in named.items()}
