"""The four linear layer kinds, named once (``model.linears``) for the ONNX int8 recipes and the
PyTorch ``bf16_layers`` option alike."""

from __future__ import annotations

import pytest

from packed_bert.backends.onnx_int8 import Int8Recipe
from packed_bert.backends.onnxruntime_backend import FUSED_INT8
from packed_bert.errors import UserError
from packed_bert.model.linears import FFN_OUTPUT, LINEAR_KINDS, every


def test_every_sets_one_scheme_and_the_named_exceptions() -> None:
    assert every("qdq") == dict.fromkeys(LINEAR_KINDS, "qdq")
    mixed = every("qdq", ffn_output="fp32")
    assert mixed[FFN_OUTPUT] == "fp32" and sorted(mixed.values()).count("qdq") == 3
    with pytest.raises(ValueError, match="ffn_out"):
        every("qdq", ffn_out="fp32")


def test_every_fused_int8_mode_names_each_kind_once_and_a_recipe_accepts_it() -> None:
    for mode, schemes in FUSED_INT8.items():
        assert set(schemes) == set(LINEAR_KINDS), mode
        assert Int8Recipe(schemes).key().startswith(",".join(f"{k}={schemes[k]}" for k in LINEAR_KINDS))
    with pytest.raises(UserError, match="attn_out"):
        Int8Recipe({"attn_out": "rows"})  # the graph's old spelling is no kind now
