"""The CPU class from /proc/cpuinfo flags, and a system file's recipe per CPU class."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from packed_bert.backends.cpu_class import (
    CLASSES,
    cpu_class,
    cpu_flags,
    cpu_generation,
    cpu_model,
    exact_int8_products,
    ignores_cap,
    isa_cap,
    matrix_flags,
    native_bf16,
)
from packed_bert.errors import UserError
from packed_bert.harness.plan import for_this_cpu
from packed_bert.systems import load_system, parse_system

BASE = "fpu sse sse2 avx avx2 fma avx512f avx512bw avx512vl"
CPUINFO = {  # flags as /proc/cpuinfo prints them (abridged), per class
    "amx": f"{BASE} avx512_vnni avx512_bf16 avx_vnni amx_bf16 amx_tile amx_int8",  # Xeon 4th/5th gen
    "avx512-bf16": f"{BASE} avx512_vnni avx512_bf16",  # AMD EPYC Zen 4
    "avx512-vnni": f"{BASE} avx512_vnni",  # Xeon 2nd/3rd gen (Cascade Lake)
    "avx2": "fpu sse sse2 avx avx2 fma",  # AMD EPYC Zen 3
    "other": "fpu sse sse2 avx",
}


def _cpuinfo(flags: str, model: str = "Some CPU") -> str:
    cpu = f"processor\t: 0\nvendor_id\t: X\nmodel name\t: {model}\nflags\t\t: {flags}\n\n"
    return cpu + cpu.replace("processor\t: 0", "processor\t: 1")


@pytest.fixture
def amx_cpuinfo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """cpu_class reads an AMX Xeon's /proc/cpuinfo, whatever CPU runs the test."""
    from packed_bert.backends import cpu_class as cpu_class_module

    (tmp_path / "cpuinfo").write_text(_cpuinfo(CPUINFO["amx"]))
    monkeypatch.setattr(cpu_class_module, "CPUINFO", tmp_path / "cpuinfo")


@pytest.mark.parametrize("expected", list(CPUINFO))
def test_class_from_flags(expected: str) -> None:
    assert cpu_class(_cpuinfo(CPUINFO[expected])) == expected
    assert expected in CLASSES


def test_model_and_matrix_flags() -> None:
    text = _cpuinfo(CPUINFO["amx"], "Intel(R) Xeon(R) Platinum 8592+")
    assert cpu_model(text) == "Intel(R) Xeon(R) Platinum 8592+"
    assert matrix_flags(text) == [
        "amx_int8",
        "amx_bf16",
        "avx512_vnni",
        "avx512_bf16",
        "avx_vnni",
        "avx512f",
        "avx2",
        "fma",
    ]
    assert cpu_model("") == "unknown CPU" and cpu_class("") == "other"


@pytest.mark.parametrize(
    ("vendor", "family", "model", "expected"),
    [
        ("GenuineIntel", 6, 207, "family 6 model 207 stepping 2, Emerald Rapids"),
        ("GenuineIntel", 6, 143, "family 6 model 143 stepping 2, Sapphire Rapids"),
        ("AuthenticAMD", 26, 2, "family 26 model 2 stepping 2, Zen 5"),
        ("AuthenticAMD", 25, 1, "family 25 model 1 stepping 2, Zen 3"),
        ("AuthenticAMD", 25, 0x11, "family 25 model 17 stepping 2, Zen 4"),
        ("GenuineIntel", 6, 999, "family 6 model 999 stepping 2"),  # a model no entry names
        ("AuthenticAMD", 6, 207, "family 6 model 207 stepping 2"),  # Intel's numbers, not AMD's
    ],
)
def test_an_x86_cpu_generation_is_recorded_even_under_a_generic_model_name(
    vendor: str, family: int, model: int, expected: str
) -> None:
    fields = f"vendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\nstepping\t: 2\n"
    text = _cpuinfo(CPUINFO["amx"], "Intel(R) Xeon(R) Processor").replace("vendor_id\t: X\n", fields)
    assert cpu_model(text) == "Intel(R) Xeon(R) Processor"  # "model" is not "model name"
    assert cpu_generation(text) == expected
    assert cpu_generation(_cpuinfo(CPUINFO["amx"])) == ""  # no family: nothing to say


AARCH64 = (  # /proc/cpuinfo of a 2-core Neoverse V1 (Graviton3-like), abridged
    "processor\t: {n}\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd aes asimddp sha512 sve i8mm bf16 svebf16\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd40\nCPU revision\t: 1\n\n"
)


def test_an_aarch64_cpu_is_named_and_its_features_recorded_in_the_other_class() -> None:
    text = AARCH64.format(n=0) + AARCH64.format(n=1)
    assert cpu_class(text) == "other"
    assert cpu_model(text) == "Neoverse-V1 (implementer 0x41, part 0xd40)"
    assert matrix_flags(text) == ["i8mm", "bf16", "asimddp", "sve"]
    assert cpu_model(text.replace("0xd40", "0xfff")) == "Arm CPU (implementer 0x41, part 0xfff)"
    assert cpu_model(text.replace("0xd40", "zz")) == "Arm CPU (implementer 0x41, part zz)"
    assert not native_bf16(text)  # its bf16 is not x86's: no recipe here counts on it
    assert cpu_generation(text) == ""  # cpu_model names the core


@pytest.mark.parametrize(
    ("cls", "exact"), [("amx", True), ("avx512-bf16", True), ("avx512-vnni", True), ("avx2", False)]
)
def test_int8_products_are_exact_only_with_a_dot_product_instruction(cls: str, exact: bool) -> None:
    assert exact_int8_products(_cpuinfo(CPUINFO[cls])) is exact


SYSTEM = """name="x"
backend="onnxruntime"
[precision]
"bert-99"="torch:bf16"
"bert-99.9"="fp32"
[f1_ratio]
"bert-99"=99.94
"bert-99.9"=100.0
[precision_by_cpu.avx512-vnni]
"bert-99"="int8"
[f1_ratio_by_cpu.avx512-vnni]
"bert-99"=99.81
[batching_by_cpu.avx512-vnni."bert-99"]
Offline="sorted"
[batch_size]
Offline=1
Server=1
SingleStream=1
""" + "".join(f'[target_qps."{m}"]\nOffline=1\nServer=1\nSingleStream=1\n' for m in ("bert-99", "bert-99.9"))


def test_a_system_names_a_recipe_per_cpu_class() -> None:
    spec = parse_system(SYSTEM, "t")
    vnni = spec.for_cpu("avx512-vnni")
    assert (vnni.backend_for("bert-99"), vnni.precision_for("bert-99")) == ("onnxruntime", "int8")
    assert vnni.f1_ratio == {"bert-99": 99.81, "bert-99.9": 100.0}
    assert vnni.describe()["cpu_class"] == "avx512-vnni"
    assert vnni.batching_for("Offline", "bert-99") == "sorted" and spec.batching_for("Offline", "bert-99") == "packed"
    amx = spec.for_cpu("amx")  # no entry: the [precision] table
    assert (amx.backend_for("bert-99"), amx.precision_for("bert-99")) == ("torch", "bf16")
    assert amx.f1_ratio["bert-99"] == 99.94
    with pytest.raises(UserError, match="unknown model"):
        parse_system(
            SYSTEM.replace('[precision_by_cpu.avx512-vnni]\n"bert-99"', '[precision_by_cpu.amx]\n"bert-98"'), "t"
        )
    with pytest.raises(UserError, match="batching_by_cpu"):
        parse_system(SYSTEM.replace('Offline="sorted"', 'Offline="zigzag"'), "t")
    with pytest.raises(UserError, match="one table per CPU class"):
        parse_system(
            "precision_by_cpu = 1\n" + SYSTEM.replace('[precision_by_cpu.avx512-vnni]\n"bert-99"="int8"\n', ""), "t"
        )


def test_the_cpu_system_names_known_classes_with_f1_ratios() -> None:
    cpu = load_system("cpu")
    assert cpu.precision_by_cpu and set(cpu.precision_by_cpu) <= set(CLASSES)
    for cls, recipes in cpu.precision_by_cpu.items():
        assert set(recipes) <= set(cpu.f1_ratio_by_cpu.get(cls, {})) | {
            m for m in recipes if recipes[m] == cpu.precision[m]
        }
        resolved = cpu.for_cpu(cls)
        assert set(resolved.f1_ratio) == {"bert-99", "bert-99.9"}
    here = for_this_cpu(cpu)
    assert here.cpu_class == cpu_class()


def test_a_cpu_class_sizes_its_runs_with_its_own_target_qps() -> None:
    """A class whose recipe runs faster must not keep a target that ends runs before min_duration."""
    spec = parse_system(SYSTEM + '[target_qps_by_cpu.avx512-vnni."bert-99"]\nOffline=20\n', "t")
    assert spec.for_cpu("avx512-vnni").default_qps("bert-99", "Offline") == 20.0
    assert spec.for_cpu("avx512-vnni").default_qps("bert-99", "Server") == 1.0  # the rest: [target_qps]
    assert spec.for_cpu("amx").default_qps("bert-99", "Offline") == 1.0
    for bad in ("Offline=0", "Offline=-3", 'Offline="fast"', "Offlin=2"):
        with pytest.raises(UserError, match="target_qps_by_cpu"):
            parse_system(SYSTEM + f'[target_qps_by_cpu.amx."bert-99"]\n{bad}\n', "t")
    cpu = load_system("cpu")
    for cls in cpu.target_qps_by_cpu:  # every class with its own rates names its own recipe too
        assert cls in cpu.precision_by_cpu


def test_a_cpu_class_gives_its_recipe_its_own_runtime_options() -> None:
    """A class's recipe may need another graph than the runtime's default; a scenario's own
    options for that runtime still win over the class's."""
    spec = parse_system(
        SYSTEM
        + '[backend_options_by_cpu.avx512-vnni."onnxruntime:int8"]\nquant="smoothquant"\ngraph="sequence"\n'
        + '[backend_options_by_scenario.SingleStream."onnxruntime:int8"]\ngraph="fused"\n',
        "t",
    )
    vnni = spec.for_cpu("avx512-vnni")
    assert vnni.options_for("onnxruntime", "Offline", "int8") == {"quant": "smoothquant", "graph": "sequence"}
    assert vnni.options_for("onnxruntime", "SingleStream", "int8") == {"quant": "smoothquant", "graph": "fused"}
    assert vnni.options_for("onnxruntime", "Offline", "fp32") == {}  # another precision: the runtime's defaults
    amx = spec.for_cpu("amx")  # a class without options: only the scenario's own
    assert amx.options_for("onnxruntime", "Offline", "int8") == {}
    assert amx.options_for("onnxruntime", "SingleStream", "int8") == {"graph": "fused"}
    with pytest.raises(UserError, match="backend_options_by_cpu"):
        parse_system(SYSTEM + '[backend_options_by_cpu.amx]\nonnxruntime="fast"\n', "t")
    cpu = load_system("cpu")
    for cls in cpu.backend_options_by_cpu:  # a class with its own options names its own recipe too
        assert cls in cpu.precision_by_cpu


@pytest.mark.parametrize(
    ("cls", "native"), [("amx", True), ("avx512-bf16", True), ("avx512-vnni", False), ("avx2", False)]
)
def test_native_bf16_is_read_from_the_flags(cls: str, native: bool) -> None:
    assert native_bf16(_cpuinfo(CPUINFO[cls], "some CPU")) is native


@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        ("AVX512_CORE_AMX", "amx"),
        ("avx512_core_bf16", "avx512-bf16"),  # oneDNN takes either case
        ("AVX512_CORE_VNNI", "avx512-vnni"),
        ("AVX512_CORE", "avx2"),
        ("AVX2", "avx2"),
        ("AVX", "other"),
        ("ALL", "amx"),
    ],
)
def test_onednns_isa_cap_makes_the_class_the_capped_cpus(
    cap: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ONEDNN_MAX_CPU_ISA oneDNN and OpenVINO run an older CPU's kernels, so the class and
    its recipe must be that CPU's (how the avx512-vnni class is emulated on an AMX Xeon)."""
    text = _cpuinfo(CPUINFO["amx"])
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert cpu_class(text) == expected
    assert native_bf16(text) is (expected in ("amx", "avx512-bf16"))
    assert "amx_int8" in cpu_flags(text, capped=False)  # the CPU itself, for what is built with -march=native


def test_the_older_cap_variable_counts_and_a_wrong_cap_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _cpuinfo(CPUINFO["amx"])
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    assert (isa_cap(), cpu_class(text)) == ("AVX512_CORE_VNNI", "avx512-vnni")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")  # the newer name wins
    assert cpu_class(text) == "avx512-bf16"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx513")
    with pytest.raises(UserError, match="ONEDNN_MAX_CPU_ISA=avx513: not an ISA oneDNN knows"):
        cpu_class(text)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "DEFAULT")
    assert (isa_cap(), cpu_class(text)) == ("", "amx")


@pytest.mark.parametrize(
    ("cpu", "cap", "blind"),
    [
        ("amx", "AVX512_CORE_VNNI", {("onnxruntime", "int8")}),  # MLAS keeps its AMX tiles
        ("amx", "AVX2", {("onnxruntime", "int8"), ("onnxruntime", "fp32"), ("torch", "fp32")}),  # and AVX-512 FMA
        ("amx", "AVX512_CORE_AMX", set()),  # takes nothing this CPU has
        ("avx512-bf16", "AVX512_CORE_VNNI", set()),  # MLAS runs VNNI either way
        ("avx2", "AVX", {("onnxruntime", "int8"), ("onnxruntime", "fp32"), ("torch", "fp32")}),
        ("amx", "", set()),
    ],
)
def test_a_runtime_ignores_the_cap_where_it_took_a_flag_its_kernels_follow(
    cpu: str, cap: str, blind: set[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """oneDNN, OpenVINO and packed-bert's own kernels follow the cap; MLAS and MKL pick their
    kernels from the CPU itself."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    text = _cpuinfo(CPUINFO[cpu])
    pairs = {(r, p) for r in ("torch", "onnxruntime", "openvino", "amx") for p in ("fp32", "bf16", "int8")}
    assert {pair for pair in pairs if ignores_cap(*pair, cpuinfo=text)} == blind


@pytest.mark.usefixtures("amx_cpuinfo")
def test_under_a_cap_the_peak_skips_a_runtime_that_ignores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime's int8 matmul would measure the uncapped CPU's AMX tiles, not the capped ISA."""
    from packed_bert.backends import matmul_peak

    asked: list[str] = []

    def matmul(runtime: str, precision: str, n: int, threads: int | None) -> Callable[[], object]:
        asked.append(runtime)
        return lambda: None

    monkeypatch.setattr(matmul_peak, "runtime_matmul", matmul)
    monkeypatch.setattr(matmul_peak, "SETTLE_S", 0.0)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    matmul_peak.fastest_matmul("int8", 64, 1, repeats=1)
    # our kernels follow the cap (below AVX512_CORE_BF16 their matmul then finds no build to run)
    assert "onnxruntime" not in asked and "amx" in asked and "torch" in asked
    asked.clear()
    matmul_peak.fastest_matmul("fp32", 64, 1, repeats=1)  # its fp32 is AVX-512 FMA with or without this cap
    assert "onnxruntime" in asked
    asked.clear()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # below AVX-512 only OpenVINO's fp32 follows
    matmul_peak.fastest_matmul("fp32", 64, 1, repeats=1)
    assert asked == ["openvino"]
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    asked.clear()
    matmul_peak.fastest_matmul("int8", 64, 1, repeats=1)
    assert "onnxruntime" in asked


def test_a_run_records_the_cap_its_class_was_read_under(monkeypatch: pytest.MonkeyPatch) -> None:
    """An emulated class must say so in the run's record and report."""
    from packed_bert.commands.systems import table

    cpu = load_system("cpu")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    here = for_this_cpu(cpu)
    assert here.cpu_class == cpu_class() and here.cpu_isa_cap == "AVX2"
    assert here.describe()["cpu_isa_cap"] == "AVX2"
    assert here.cpu_note() == f"CPU class {cpu_class()}, EMULATED: oneDNN capped at AVX2"
    assert table()[-1] == f"this machine: {here.cpu_note()}"  # packed-bert systems
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    plain = for_this_cpu(cpu)
    assert "cpu_isa_cap" not in plain.describe() and plain.cpu_note() == f"CPU class {cpu_class()}"
    assert parse_system(SYSTEM, "t").cpu_note() == ""  # recipes not resolved for a CPU yet


def test_the_cpu_system_runs_bert_99_9_in_int8_bf16_on_amx() -> None:
    """On AMX bert-99.9 runs int8-bf16 on our kernels with the residual stream in bf16, as bert-99's
    int8 does, and its kept FFN output layer on 8-bit inputs after SmoothQuant with a calibrated
    alpha per layer, on a fixed grid per layer with the rows past it on their own (100.048% of fp32
    F1 on the trained MiniLM, 100.051% with every row on its own grid, 100.199% in bf16)."""
    amx = load_system("cpu").for_cpu("amx")
    assert (amx.backend_for("bert-99.9"), amx.precision_for("bert-99.9")) == ("torch", "int8-bf16")
    want = {"kernel": "amx", "residual": "bf16", "kept": "int8-hybrid"}
    assert amx.options_for("torch", "Offline", "int8-bf16") == want
    assert amx.options_for("torch", "Offline", "int8") == {"kernel": "amx", "residual": "bf16"}
    assert amx.f1_ratio["bert-99.9"] >= 99.95
    assert (amx.backend_for("bert-99"), amx.precision_for("bert-99")) == ("torch", "int8")


def test_the_cpu_system_runs_our_kernels_on_avx512_vnni() -> None:
    """Without bf16 hardware [precision]'s PyTorch bf16 is emulated (11-12x slower than OpenVINO
    static int8 with oneDNN capped at AVX512_CORE_VNNI), so the class names its own recipes: the
    amx class's on packed-bert's kernels, whose tiles run on VNNI there (bert-99 1.15-1.19x
    OpenVINO's int8 through LoadGen, emulated), bert-99 with attention's products in int8 too (its
    bf16 products are FMAs there: 1.07-1.12x through LoadGen, SingleStream 1.34-1.37x against 1.51x)."""
    vnni = load_system("cpu").for_cpu("avx512-vnni")
    assert (vnni.backend_for("bert-99"), vnni.precision_for("bert-99")) == ("torch", "int8")
    assert vnni.options_for("torch", "Offline", "int8") == {"kernel": "amx", "residual": "bf16", "attention": "int8"}
    assert vnni.f1_ratio["bert-99"] >= 99.5
    assert vnni.default_qps("bert-99", "SingleStream") == 12.0  # 99.6 ms a sample: 5 QPS ended short
    assert vnni.default_qps("bert-99", "Offline") == 14.0  # 11.2-12.6 samples/s: 10 ended short
    # bert-99.9: the amx class's int8-bf16 on the same kernels, Q K^T in int8 (P V in int8 as well
    # lost the unseen half's 99.9%), its kept FFN output layer 12-bit x int8 on vpdpwssd (twice
    # the multiply-adds of the bf16 FMA pairs there: 1.45-1.79x the samples/s through LoadGen)
    assert (vnni.backend_for("bert-99.9"), vnni.precision_for("bert-99.9")) == ("torch", "int8-bf16")
    want = {"kernel": "amx", "residual": "bf16", "attention": "int8-scores", "kept": "int12"}
    assert vnni.options_for("torch", "Offline", "int8-bf16") == want
    assert vnni.f1_ratio["bert-99.9"] >= 99.95
    assert vnni.batching_for("Offline", "bert-99.9") == "packed"
    assert vnni.default_qps("bert-99.9", "Offline") == 10.0  # 8.9-10.0 samples/s: 7.5 would end short


@pytest.mark.parametrize("cls", CLASSES)
def test_no_class_without_bf16_hardware_runs_a_bf16_recipe(cls: str) -> None:
    """oneDNN emulates bf16 where the CPU has none: 11-12x slower than int8 on avx512-vnni, below
    2 GFLOP/s a matmul on avx2 and below; the class that nothing measured (other) runs fp32."""
    cpu = load_system("cpu").for_cpu(cls)
    recipes = {m: cpu.precision_for(m) for m in ("bert-99", "bert-99.9")}
    if not native_bf16(_cpuinfo(CPUINFO[cls])):
        assert "bf16" not in recipes.values()
    if cls == "other":
        assert recipes == {"bert-99": "fp32", "bert-99.9": "fp32"} and cpu.backend_for("bert-99") == "onnxruntime"
        assert cpu.f1_ratio == {"bert-99": 100.0, "bert-99.9": 100.0}
        assert cpu.batching_for("Offline", "bert-99") == "sorted"


def test_a_bf16_run_says_where_the_class_has_no_bf16_hardware() -> None:
    """A user's --precision bf16 on an avx2 CPU runs a matmul at 2 GFLOP/s or less: the run says so."""
    import dataclasses

    from packed_bert.harness.config import RunConfig
    from packed_bert.harness.plan import plan_run
    from packed_bert.terms import Precision

    plan = plan_run(RunConfig(sut="cpu", model="bert-99", precision=Precision.BF16))
    cpu = load_system("cpu")
    for cls in CLASSES:
        note = dataclasses.replace(plan, system=cpu.for_cpu(cls)).cpu_note()
        assert note.startswith(f"CPU class {cls}")
        assert ("bf16 EMULATED" in note) is (cls not in ("amx", "avx512-bf16")), cls
    fp32 = dataclasses.replace(plan, precision="fp32", system=cpu.for_cpu("avx2"))
    assert fp32.cpu_note() == "CPU class avx2"
    mixed = dataclasses.replace(plan, backend="openvino", precision="int8-bf16", system=cpu.for_cpu("avx512-vnni"))
    assert "bf16 EMULATED" in mixed.cpu_note()  # its float layers are bf16 too
    # packed-bert's kernels run their bf16 products as FMAs there (the class's own bert-99.9)
    ours = dataclasses.replace(plan, backend="torch", precision="int8-bf16", system=cpu.for_cpu("avx512-vnni"))
    assert ours.cpu_note() == "CPU class avx512-vnni"
    assert dataclasses.replace(plan, system=load_system("r282_z93_q1")).cpu_note() == ""  # no CPU class


@pytest.mark.usefixtures("amx_cpuinfo")
def test_an_emulated_run_says_when_its_runtime_ignored_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Capped at AVX the class is other, whose ONNX Runtime fp32 still runs AVX-512 here."""
    import dataclasses

    from packed_bert.harness.config import RunConfig
    from packed_bert.harness.plan import plan_run

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX")
    plan = plan_run(RunConfig(sut="cpu", model="bert-99"))
    assert (plan.backend, plan.precision) == ("onnxruntime", "fp32")
    assert plan.cpu_note() == (
        "CPU class other, EMULATED: oneDNN capped at AVX (onnxruntime fp32 ignores it: this CPU's own kernels ran)"
    )
    assert dataclasses.replace(plan, backend="openvino").cpu_note() == "CPU class other, EMULATED: oneDNN capped at AVX"


def test_openvinos_int8_takes_f32_activations_under_a_cap_without_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Capped to a VNNI-only CPU's kernels OpenVINO would emulate a bf16 hint (0.99 against 3.77
    samples/s), so the recipe must ask for f32 there even on a CPU that has bf16."""
    pytest.importorskip("openvino", reason="OpenVINO is not installed")
    from packed_bert.backends.openvino_backend import HINTS, int8_activations

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_VNNI")
    assert int8_activations() == "f32"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    assert int8_activations() == (HINTS["int8"] if native_bf16() else "f32")
