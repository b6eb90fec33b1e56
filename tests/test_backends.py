"""Backends: null/sim shapes and timing, the registry's errors, torch and ONNX Runtime numerics."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from packed_bert.backends import create, describe
from packed_bert.backends.recipes import check_precision, default_recipe
from packed_bert.backends.sim import SimTiming
from packed_bert.errors import UserError
from packed_bert.packing import pack_batch, padded_batches, unpack


def _features(n: int = 9, seed: int = 0, vocab: int = 1000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 200, n)
    ids = np.zeros((n, 384), np.int32)
    seg = np.zeros((n, 384), np.int32)
    for i, length in enumerate(lengths):
        ids[i, :length] = rng.integers(1, vocab, length)
        seg[i, length // 3 : length] = 1
    return ids, seg, lengths


def test_null_returns_zeros_of_the_batch_shape() -> None:
    runner = create("null", precision="int8")
    batch = pack_batch(*_features())
    out = runner.infer(batch)
    assert out.shape == (batch.num_rows, 384, 2) and out.dtype == np.float32
    assert not out.any()
    big = runner.infer(padded_batches(*_features(80), batch_size=80)[0])
    assert big.shape == (80, 384, 2)


def test_sim_sleeps_by_its_timing_model_and_says_simulated(monkeypatch: pytest.MonkeyPatch) -> None:
    import packed_bert.backends.sim as sim

    slept: list[float] = []
    monkeypatch.setattr(sim.time, "perf_counter", lambda: 100.0)  # a clock that does not move
    monkeypatch.setattr(sim.time, "sleep", slept.append)
    timing = SimTiming(overhead_s=0.01, row_time_s=0.005)
    runner = create("sim", precision="fp16", timing=timing)
    batch = pack_batch(*_features())
    out = runner.infer(batch)
    assert out.shape == (batch.num_rows, 384, 2)
    assert slept == [pytest.approx(0.01 + 0.005 * batch.num_rows)]
    assert runner.simulated and "simulated" in describe(runner)["name"]
    assert "simulated" in describe(runner)["detail"]


def test_sim_token_model_charges_by_length_and_cards_sleep_concurrently(monkeypatch: pytest.MonkeyPatch) -> None:
    import packed_bert.backends.sim as sim

    tokens = SimTiming(overhead_s=0.0, row_time_s=0.08, static_shape=False)
    assert tokens.batch_seconds(4, 96) == pytest.approx(0.08)
    assert SimTiming(0.0, 0.08).batch_seconds(4, 96) == pytest.approx(0.32)
    # eight cards in eight threads: every card is asleep at once (a serialized card would leave
    # the barrier one short and break it)
    barrier = threading.Barrier(8)
    monkeypatch.setattr(sim.time, "sleep", lambda _s: barrier.wait(timeout=30))
    runners = [create("sim", overhead_s=0.05, row_time_s=0.0) for _ in range(8)]
    batch = pack_batch(*_features(3))
    errors: list[BaseException] = []

    def infer(r: object) -> None:
        try:
            r.infer(batch)  # type: ignore[attr-defined]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=infer, args=(r,)) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not barrier.broken


def test_sim_cheap_logits_are_the_same_packed_or_padded() -> None:
    runner = create("sim", overhead_s=0.0, row_time_s=0.0, logits="cheap")
    ids, seg, lens = _features()
    packed = unpack(pack_batch(ids, seg, lens), runner.infer(pack_batch(ids, seg, lens)))
    padded_batch = padded_batches(ids, seg, lens, batch_size=len(lens))[0]
    padded = unpack(padded_batch, runner.infer(padded_batch))
    for a, b in zip(packed, padded, strict=True):
        np.testing.assert_array_equal(a, b)


def test_sim_with_real_weights_answers_the_cpu_models_logits(monkeypatch: pytest.MonkeyPatch) -> None:
    """A simulated card cannot compute; with weights (not random) its logits are the fp32
    model's on this CPU (a few rows a call), so accuracy runs of simulated systems score real
    answers."""
    from packed_bert.backends import sim

    monkeypatch.setattr(sim, "CPU_ROWS", 2)  # several calls per batch
    cards = [create("sim", "tiny", "int8", f"sim:{d}", overhead_s=0.0, row_time_s=0.0) for d in range(2)]
    batch = pack_batch(*_features())
    want = create("onnxruntime", "tiny", "fp32", "cpu", threads=1).infer(batch)
    real = np.arange(384)[None, :] < batch.seq_lens.sum(axis=1)[:, None]
    for card in cards:
        np.testing.assert_allclose(card.infer(batch)[real], want[real], atol=1e-5, rtol=0)
        assert "logits from the fp32 model on this CPU" in describe(card)["detail"] and card.simulated
    assert not create("sim", "random", "int8", overhead_s=0.0, row_time_s=0.0).infer(batch).any()  # random: zeros


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("tpu",), "unknown backend"),
        (("onnxruntime", "random", "fp16"), "no precision"),
        (("torch", "random", "fp8", "cpu"), "no precision"),
    ],
)
def test_registry_rejects_unknown_names_in_one_line(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(UserError, match=message) as err:
        create(*args)
    assert "\n" not in str(err.value)


def test_recipes_forbid_int8_for_bert_99_9() -> None:
    with pytest.raises(UserError, match="not allowed for bert-99.9") as err:
        create("null", precision="int8", model="bert-99.9")
    assert "\n" not in str(err.value)
    check_precision("onnxruntime", "cpu", "int8", "bert-99")
    check_precision("torch", "cuda:3", "fp8", "bert-99")
    assert default_recipe("bert-99", "cpu") == ("onnxruntime", "fp32")
    assert default_recipe("bert-99.9", "cpu") == ("onnxruntime", "fp32")
    from packed_bert.systems import load_system

    cpu = load_system("cpu")  # the cpu system runs the recipes' CPU defaults
    for model in ("bert-99", "bert-99.9"):
        assert (cpu.backend_for(model), cpu.precision_for(model)) == default_recipe(model, "cpu")
    assert default_recipe("bert-99.9", "cuda:0")[1] in ("fp16", "bf16")


def test_bert_99_9_may_run_int8_only_with_layers_kept_in_bf16() -> None:
    """int8-bf16 (int8 with the FFN output layer in bf16) keeps 100.056-100.156% of fp32's F1 on the trained
    MiniLM (docs/performance.md), so bert-99.9 may run it; it runs on our AMX kernels only."""
    check_precision("torch", "cpu", "int8-bf16", "bert-99.9")
    check_precision("openvino", "cpu", "int8-bf16", "bert-99.9")  # its SmoothQuant graph, the FFN output in bf16
    with pytest.raises(UserError, match="no precision 'int8-bf16'"):
        check_precision("onnxruntime", "cpu", "int8-bf16", "bert-99.9")  # no bf16 kernels
    with pytest.raises(UserError, match="add kernel=amx") as err:
        create("torch", "tiny", "int8-bf16", "cpu", model="bert-99.9")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="bf16_layers names the layers precision int8-bf16 keeps"):
        create("torch", "tiny", "int8", "cpu", bf16_layers="ffn-output")
    from packed_bert.backends.torch_int8 import quantize_model
    from packed_bert.model.weights import load_model

    tiny = load_model("tiny")
    with pytest.raises(UserError, match="of qkv, attention-output, ffn-input, ffn-output; got ffn on kernel=amx"):
        quantize_model(tiny, {}, {}, kernel="amx", bf16_layers=("ffn",))
    with pytest.raises(UserError, match="got ffn-output on kernel=onednn"):
        quantize_model(tiny, {}, {}, kernel="onednn", bf16_layers=("ffn-output",))
    from packed_bert.terms import data_types

    assert data_types("int8-bf16") == "int8, bf16" and data_types("fp32") == "fp32"


def test_int8_fp32_is_the_smoothquant_graph_with_a_float_ffn_output() -> None:
    """ONNX Runtime and OpenVINO run int8 with the FFN output layer in fp32 as the SmoothQuant
    graph mode ``smoothquant-mixed`` (100.222% and, OpenVINO under a VNNI cap, 100.027% of fp32 F1
    on the trained MiniLM), which bert-99.9 may run; PyTorch has no such recipe."""
    from packed_bert.backends.onnxruntime_backend import int8_graph

    for runtime in ("onnxruntime", "openvino"):
        check_precision(runtime, "cpu", "int8-fp32", "bert-99.9")
    with pytest.raises(UserError, match="no precision 'int8-fp32'"):
        check_precision("torch", "cpu", "int8-fp32", "bert-99.9")
    assert int8_graph("int8-fp32", "rows", "rows") == ("int8", "smoothquant-mixed")
    assert int8_graph("int8-bf16", "smoothquant", "smoothquant") == ("int8", "smoothquant-mixed")
    assert int8_graph("int8-fp32", "smoothquant-mixed", "rows") == ("int8", "smoothquant-mixed")
    assert int8_graph("int8", "rows", "rows") == ("int8", "rows")
    with pytest.raises(UserError, match="precision int8-fp32 is quant=smoothquant-mixed; drop quant=weights"):
        int8_graph("int8-fp32", "weights", "smoothquant")


def test_unknown_option_is_a_user_error() -> None:
    with pytest.raises(UserError, match="sim"):
        create("sim", frobnicate=True)


@pytest.mark.parametrize("start_flushing", [False, True])
def test_flushed_restores_the_threads_own_mode(start_flushing: bool) -> None:
    import torch

    from packed_bert.backends.denormals import flushed, flushing

    torch.set_flush_denormal(start_flushing)
    try:
        assert flushing() is start_flushing
        with flushed():
            assert flushing()
        assert flushing() is start_flushing
    finally:
        torch.set_flush_denormal(False)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_runtimes_flush_denormals_but_hand_the_caller_its_mode_back(backend: str) -> None:
    # trained weights push some softmax exps below float32's normal range: the runtimes are asked
    # to flush them (no microcode assists), and they switch the calling thread too unless undone
    pytest.importorskip(backend, reason=f"{backend} is not installed")
    from packed_bert.backends.denormals import flushing
    from packed_bert.packing import sorted_batches

    assert not flushing()
    runner = create(backend, "tiny", "fp32", threads=1)
    runner.infer(sorted_batches(*_features(n=3), batch_size=3)[0])
    assert not flushing()  # numpy and torch in this thread keep IEEE denormals
    if backend == "onnxruntime":
        options = runner.session.get_session_options()  # type: ignore[attr-defined]
        assert options.get_session_config_entry("session.set_denormal_as_zero") == "1"
    else:
        assert runner.compiled.get_property("CPU_DENORMALS_OPTIMIZATION") is True  # type: ignore[attr-defined]
