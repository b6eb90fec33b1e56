import pytest

from packed_bert import cli
from packed_bert.errors import UserError
from packed_bert.systems import load_system, parse_system, system_names


def test_every_seed_system_loads() -> None:
    names = system_names()
    for name in ("r282_z93_q1", "r282_z93_q5", "r282_z93_q8", "r292_z93_q16", "cpu", "cuda", "null"):
        assert name in names
        spec = load_system(name)
        assert spec.batching in ("packed", "sorted", "padded")
        assert set(spec.precision) == {"bert-99", "bert-99.9"}
    q16 = load_system("R292_Z93_Q16")  # case-insensitive
    assert q16.devices == 16 and q16.simulated and q16.backend == "sim"
    assert q16.batch_size["Offline"] == 4096 and q16.batch_size["Server"] == 512
    assert q16.sim_samples_per_s["bert-99"] == pytest.approx(670.9)
    assert load_system("cuda").devices is None  # all visible GPUs


def test_unknown_system_and_bad_files_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown system"):
        load_system("nope")
    good = 'name="x"\nbackend="null"\n[precision]\n"bert-99"="fp32"\n"bert-99.9"="fp32"\n'
    good += "[batch_size]\nOffline=1\nServer=1\nSingleStream=1\n"
    for m in ("bert-99", "bert-99.9"):
        good += f'[target_qps."{m}"]\nOffline=1\nServer=1\nSingleStream=1\n'
    assert parse_system(good, "t").name == "x"
    with pytest.raises(UserError, match="unknown key"):
        parse_system("colour='red'\n" + good, "t")
    with pytest.raises(UserError, match="batching"):
        parse_system('batching="zigzag"\n' + good, "t")
    with pytest.raises(UserError, match="unknown model"):
        parse_system(good + '[batching."bert-98"]\nOffline="packed"\n', "t")
    with pytest.raises(UserError, match="must be >= 1"):
        parse_system(
            good.replace(
                "Offline=1\nServer=1\nSingleStream=1\n[target", "Offline=0\nServer=1\nSingleStream=1\n[target", 1
            ),
            "t",
        )


def test_a_model_may_have_its_own_batching_and_runtime() -> None:
    text = 'name="x"\nbackend="onnxruntime"\n[precision]\n"bert-99"="int8"\n"bert-99.9"="torch:bf16"\n'
    text += "[batch_size]\nOffline=1\nServer=1\nSingleStream=1\n"
    for m in ("bert-99", "bert-99.9"):
        text += f'[target_qps."{m}"]\nOffline=1\nServer=1\nSingleStream=1\n'
    text += '[batching]\nOffline="sorted"\nServer="sorted"\n[batching."bert-99.9"]\nOffline="packed"\n'
    spec = parse_system(text, "t")
    assert spec.batching_for("Offline", "bert-99") == "sorted"
    assert spec.batching_for("Offline", "bert-99.9") == "packed"
    assert spec.batching_for("Server", "bert-99.9") == "sorted"
    assert (spec.backend_for("bert-99"), spec.precision_for("bert-99")) == ("onnxruntime", "int8")
    assert (spec.backend_for("bert-99.9"), spec.precision_for("bert-99.9")) == ("torch", "bf16")


def test_systems_command_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["systems"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[0].split()[:5] == ["name", "devices", "simulated", "bert-99", "bert-99.9"]
    q8 = next(line for line in lines if line.startswith("r282_z93_q8"))
    assert q8.split()[1:5] == ["8", "yes", "sim:int8", "packed"]
    assert "(F1: fp32 logits on this CPU)" in q8  # a simulated card's logits come from the CPU model
    cpu = next(line for line in lines if line.startswith("cpu "))
    assert cpu.count("% of fp32)") == 2  # both defaults name their measured F1 ratio
    cuda = next(line for line in lines if line.startswith("cuda "))
    assert "F1 not measured" in cuda
    assert any(line.startswith("null ") for line in lines)


def test_a_scenario_may_give_a_runtime_its_own_options() -> None:
    from packed_bert.harness.plan import check_scenario_options

    text = 'name="x"\nbackend="onnxruntime"\nbackend_options={threads=1}\n[precision]\n"bert-99"="openvino:int8"\n'
    text += '"bert-99.9"="fp32"\n[batch_size]\nOffline=1\nServer=1\nSingleStream=1\n'
    for m in ("bert-99", "bert-99.9"):
        text += f'[target_qps."{m}"]\nOffline=1\nServer=1\nSingleStream=1\n'
    spec = parse_system(
        text + '[backend_options_by_scenario.SingleStream.openvino]\nattention="mask"\n'
        '[backend_options_by_scenario.SingleStream."openvino:fp32"]\nthreads=2\n',
        "t",
    )
    assert spec.options_for("openvino", "SingleStream", "int8") == {"threads": 1, "attention": "mask"}
    assert spec.options_for("openvino", "SingleStream", "fp32") == {"threads": 2, "attention": "mask"}
    assert spec.options_for("openvino", "Offline", "fp32") == {"threads": 1}
    assert spec.options_for("onnxruntime", "SingleStream", "fp32") == {"threads": 1}
    assert spec.describe()["backend_options_by_scenario"]["SingleStream"]["openvino"] == {"attention": "mask"}
    check_scenario_options(spec)
    with pytest.raises(UserError, match="'Streaming' is not one of"):
        parse_system(text + '[backend_options_by_scenario.Streaming.openvino]\nattention="mask"\n', "t")
    with pytest.raises(UserError, match="SingleStream.openvino is not a table"):
        parse_system(text + '[backend_options_by_scenario.SingleStream]\nopenvino="mask"\n', "t")
    typo = parse_system(text + '[backend_options_by_scenario.SingleStream.openvno]\nattention="mask"\n', "t")
    with pytest.raises(UserError, match="unknown runtime"):
        check_scenario_options(typo)
