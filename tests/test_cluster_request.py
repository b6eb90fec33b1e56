"""What a run asks of a Ray cluster, checked without one: resources per device kind, the
embedded node, the worker node command, the request from a plan and the identity check."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from helpers.fakes import synthetic_features

from packed_bert.cluster.identity import DeviceIdentity, check_devices, mismatch, weights_id
from packed_bert.cluster.request import (
    CPU_GROUP,
    GPU,
    NULL_DEVICE,
    SIM_CARD,
    ClusterRequest,
    ray_start_command,
    resource_for,
)
from packed_bert.errors import UserError
from packed_bert.harness.cluster_devices import cluster_request
from packed_bert.harness.config import RunConfig
from packed_bert.harness.plan import for_this_cpu, plan_run
from packed_bert.harness.qsl import SampleLibrary
from packed_bert.systems import load_system


def test_each_device_kind_is_one_unit_of_its_own_resource() -> None:
    assert [
        resource_for("sim"),
        resource_for("null"),
        resource_for("onnxruntime"),
        resource_for("torch", "cuda:0"),
        resource_for("torch"),
    ] == [SIM_CARD, NULL_DEVICE, CPU_GROUP, GPU, CPU_GROUP]
    sim = ClusterRequest("sim", "bert-99", "int8", "random", "random", True, SIM_CARD, devices_per_node=8)
    assert sim.node_resources() == {SIM_CARD: 8.0}
    assert sim.actor_resources() == {"num_cpus": 0, "resources": {SIM_CARD: 1}}
    assert sim.device_name(3) == "sim:3"
    gpu = ClusterRequest("torch", "bert-99", "fp16", "random", "random", False, GPU, devices_per_node=None)
    assert gpu.node_resources() == {} and gpu.actor_resources() == {"num_cpus": 0, "num_gpus": 1}
    assert gpu.device_name(5) == "cuda:0"  # Ray shows the actor its own card only


def test_the_worker_node_command_declares_the_devices() -> None:
    assert ray_start_command("10.0.0.1:6379", SIM_CARD, 8) == [
        "ray",
        "start",
        "--address",
        "10.0.0.1:6379",
        "--resources",
        '{"packed_bert_sim_card": 8}',
    ]
    assert ray_start_command("h:6379", GPU, None) == ["ray", "start", "--address", "h:6379"]
    assert ray_start_command("h:6379", GPU, 4)[-2:] == ["--num-gpus", "4"]
    with pytest.raises(ValueError, match="how many"):
        ray_start_command("h:6379", CPU_GROUP, None)


def test_a_plan_asks_every_device_for_its_backend_precision_weights_and_timing(shared_data: Path) -> None:
    feats = synthetic_features(200)
    plan = plan_run(RunConfig(sut="r282_z93_q8", model="bert-99.9"))
    req = cluster_request(plan, SampleLibrary.from_features(feats), devices=16)
    assert (req.backend, req.model, req.precision, req.simulated) == ("sim", "bert-99.9", "fp16", True)
    assert (req.resource, req.devices, req.devices_per_node, req.inflight) == (SIM_CARD, 16, 8, 2)
    assert req.weights == req.weights_id == "random" and req.sim_timing is not None
    assert req.sim_timing.static_shape and req.sim_timing.row_time_s > 0
    # the dev set of ../shared: an int8 recipe that calibrates reads the calibration questions from it
    squad = {
        "dataset": shared_data / "squad" / "dev-v1.1.json",
        "vocab": shared_data / "vocab" / "bert-uncased-vocab.txt",
    }
    cpu = cluster_request(plan_run(RunConfig(sut="cpu", **squad)), SampleLibrary.from_features(feats))
    here = for_this_cpu(load_system("cpu"))  # the recipe of this machine's CPU class (torch bf16 by default)
    assert (cpu.backend, cpu.resource, cpu.precision, cpu.sim_timing) == (
        here.backend_for("bert-99"),
        CPU_GROUP,
        here.precision_for("bert-99"),
        None,
    )


def _identity(**kw: object) -> DeviceIdentity:
    from packed_bert.cluster.identity import package_version

    base: dict[str, object] = dict(
        index=2,
        node_id="3f2a9c1b" + "0" * 48,
        ip="10.0.0.7",
        host="gpu7",
        pid=1,
        backend="sim",
        model="bert-99",
        precision="int8",
        simulated=True,
        weights_id="random",
        version=package_version(),
    )
    return DeviceIdentity(**{**base, **kw})  # type: ignore[arg-type]


def test_a_device_that_differs_is_named_with_every_difference(tmp_path: object) -> None:
    req = ClusterRequest("sim", "bert-99", "int8", "random", "random", True, SIM_CARD)
    check_devices([_identity(), _identity(index=3)], req, "h:6379")  # the same: no error
    got = _identity(precision="fp16", simulated=False, weights_id="other.onnx (sha256 ab)")
    assert mismatch(got, req, "random", got.version) == (
        "precision fp16 (this run: int8); real device (this run: simulated); "
        "weights other.onnx (sha256 ab) (this run: random)"
    )
    with pytest.raises(UserError) as info:
        check_devices([_identity(), got], req, "h:6379")
    assert str(info.value).startswith("--cluster h:6379: node gpu7 (10.0.0.7/3f2a9c1b) device 2: precision fp16")
    assert "\n" not in str(info.value)
    # the driver has no copy of the checkpoint: every device must hold the first one's
    no_copy = ClusterRequest("sim", "bert-99", "int8", "/ckpt/m.onnx", "", True, SIM_CARD)
    first, second = _identity(weights_id="m.onnx (sha256 aa)"), _identity(index=5, weights_id="m.onnx (sha256 bb)")
    with pytest.raises(UserError, match=r"device 5: weights m.onnx \(sha256 bb\) \(this run: m.onnx \(sha256 aa\)\)"):
        check_devices([first, second], no_copy, "h:6379")
    assert weights_id("/no/such/file.onnx") == ""
    broken = _identity(error="cannot start the runner: OSError: no such file")
    assert mismatch(broken, req, "random", broken.version) == "cannot start the runner: OSError: no such file"


def test_an_int8_run_that_calibrates_sends_its_devices_the_calibration_set(shared_data: Path) -> None:
    """A node need not have SQuAD: the driver reads the 100 calibration questions' features and
    every device actor builds its int8 model from them."""
    pytest.importorskip("openvino", reason="the openvino runtime is not installed")
    from packed_bert.cluster.actor import DeviceActor

    cfg = RunConfig(
        sut="cpu",
        dataset=shared_data / "squad" / "dev-v1.1.json",
        vocab=shared_data / "vocab" / "bert-uncased-vocab.txt",
    )
    plan = dataclasses.replace(plan_run(cfg), backend="openvino", precision="int8", weights="tiny")
    req = cluster_request(plan, SampleLibrary.from_features(synthetic_features(8)))
    assert req.calibration is not None and 100 <= len(req.calibration["lengths"]) < 130
    actor = DeviceActor(dataclasses.replace(req, backend_options={"threads": 1, "seed": 777}), 0)
    assert "SmoothQuant" in actor._build().detail
    fp32 = cluster_request(
        dataclasses.replace(plan, precision="fp32"), SampleLibrary.from_features(synthetic_features(8))
    )
    assert fp32.calibration is None


def test_a_scenario_s_own_options_reach_the_runtime_here_and_on_a_cluster(tmp_path: Path) -> None:
    from packed_bert.harness.devices import device_request

    text = (
        'name="opts"\nbackend="null"\nbackend_options={max_rows=8}\n[precision]\n"bert-99"="int8"\n"bert-99.9"="fp32"\n'
        "[batch_size]\nOffline=4\nServer=4\nSingleStream=1\n"
        + "".join(f'[target_qps."{m}"]\nOffline=10\nServer=10\nSingleStream=10\n' for m in ("bert-99", "bert-99.9"))
        + '[backend_options_by_scenario.SingleStream."null:int8"]\nmax_rows=1\n'
    )
    path = tmp_path / "opts.toml"
    path.write_text(text)
    library = SampleLibrary.from_features(synthetic_features(8))
    for scenario, model, rows in (
        ("singlestream", "bert-99", 1),
        ("offline", "bert-99", 8),
        ("singlestream", "bert-99.9", 8),
    ):
        plan = plan_run(RunConfig(sut=str(path), scenario=scenario, model=model))
        assert device_request(plan, library).options == {"max_rows": rows}
        assert cluster_request(plan, library).backend_options == {"max_rows": rows}
