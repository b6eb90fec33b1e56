"""The whole forward pass as the AMX kernels' calls in a row (``amx_forward.AmxForward``): the
same logits, bit for bit and padding positions included, as the model's modules, in sorted,
packed and padded batches; the modules run wherever a part is not on the kernels."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from helpers.tiny_model import calibration_of, perturbed_tiny_model, random_features

from packed_bert.backends import create
from packed_bert.backends.amx_forward import AmxForward
from packed_bert.packing import batches_of
from packed_bert.terms import CALIBRATED

pytestmark = pytest.mark.usefixtures("kernel_tiles")  # once per tile kind this CPU has (conftest)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACKED_BERT_CACHE", str(tmp_path_factory.getbasetemp() / "amx-cache"))


def _runner(precision: str, heads: int, features: tuple[np.ndarray, np.ndarray, np.ndarray], **options: str) -> Any:
    extra: dict[str, Any] = {"calibration": calibration_of(features)} if precision in CALIBRATED else {}
    return create("torch", perturbed_tiny_model(heads), precision, "cpu", kernel="amx", **extra, **options)


def _module_calls(runner: Any) -> list[int]:
    """A list that grows by one whenever the model's modules run a batch."""
    calls: list[int] = []
    model = runner.model
    real = type(model).forward

    def counted(*args: Any) -> Any:
        calls.append(1)
        return real(model, *args)

    model.forward = counted
    return calls


@pytest.mark.parametrize(
    ("precision", "options"),
    [("int8", {"residual": "bf16"}), ("bf16", {}), ("int8-bf16", {"residual": "bf16", "kept": "int8-hybrid"})],
)
def test_the_kernels_in_a_row_give_the_modules_bits_padding_included(precision: str, options: dict[str, str]) -> None:
    features = random_features(11, 9, 150)
    runner = _runner(precision, 2, features, **options)  # head dimension 32: the attention kernel's
    assert isinstance(runner._whole, AmxForward)
    calls = _module_calls(runner)
    ids, seg, lens = features
    batches = [b for strategy in ("sorted", "packed", "padded") for b in batches_of(strategy, ids, seg, lens, 4, 3)]
    whole = [runner.infer(b) for b in batches]
    assert calls == []  # the modules did not run
    runner._whole = None
    modules = [runner.infer(b) for b in batches]
    assert len(calls) == len(batches)
    for b, one, other in zip(batches, whole, modules, strict=True):
        assert one.shape == other.shape == (*b.input_ids.shape, 2)
        np.testing.assert_array_equal(one, other)
    padded = whole[-1]  # padded rows: positions outside every sequence hold the QA head's bias
    bias = runner.model.qa_outputs.bias.numpy()
    first = batches[-1]
    short = int(np.argmin(first.seq_lens.sum(axis=1)))
    tail = padded[short, int(first.seq_lens[short].sum()) :]
    assert len(tail) > 0 and (tail == bias).all()
    assert float(np.abs(whole[0]).max()) > 0


def test_a_model_not_wholly_on_the_kernels_runs_its_modules() -> None:
    features = random_features(12, 4, 60)
    plain: Any = create("torch", perturbed_tiny_model(2), "fp32", "cpu")
    assert plain._whole is None  # no kernels at all
    assert _runner("int8", 4, features)._whole is None  # head dimension 16: not the attention kernel's
    runner = _runner("int8", 2, features)
    assert isinstance(runner._whole, AmxForward)
    calls = _module_calls(runner)
    runner.model.bert.encoder.fused = False  # the encoder's modules, layer by layer
    ids, seg, lens = features
    for batch in batches_of("sorted", ids, seg, lens, 2, 1):
        assert np.isfinite(runner.infer(batch)).all()
    assert len(calls) == 2


def test_an_id_past_the_table_is_a_value_error_in_the_one_call_too() -> None:
    features = random_features(13, 3, 50)
    runner = _runner("int8", 2, features)
    assert isinstance(runner._whole, AmxForward)
    ids, seg, lens = features
    batch = next(iter(batches_of("sorted", ids, seg, lens, 3, 1)))
    bad = type(batch)(
        batch.input_ids + 10**6, batch.segment_ids, batch.position_ids, batch.seq_lens, batch.sample_index
    )
    with pytest.raises(ValueError, match="past its table"):
        runner.infer(bad)
    assert np.isfinite(runner.infer(batch)).all()  # the runner goes on
