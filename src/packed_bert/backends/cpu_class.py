"""Which class of matrix hardware this CPU has, from the flags in ``/proc/cpuinfo``.

The fastest CPU recipe depends on it: AMX tiles (``amx_int8``/``amx_bf16``, Intel Xeon 4th gen
on) make bf16 and int8 matmuls several times faster than AVX-512 VNNI/BF16 (AMD EPYC Zen 4/5,
older Xeons), and those several times faster than AVX2 alone (AMD EPYC Zen 2/3, Xeons before
Skylake-SP), where oneDNN has no bf16 kernels at all. A system file names a recipe per class
(``[precision_by_cpu.CLASS]``), each with the measurement behind it in docs/performance.md.

Classes, best first: ``amx`` (amx_int8 and amx_bf16), ``avx512-bf16`` (avx512_vnni and
avx512_bf16), ``avx512-vnni`` (avx512_vnni), ``avx2`` (avx2 and fma), ``other`` (also every
aarch64 CPU, whose /proc/cpuinfo lists "Features": recorded, no class of its own measured).

oneDNN's ISA cap (``ONEDNN_MAX_CPU_ISA``, or its older name ``DNNL_MAX_CPU_ISA``) makes oneDNN
and OpenVINO run the kernels of an older CPU; with it set, the flags here are those the cap
leaves, so the class and its recipes are the capped CPU's. That is how a class without a machine
of its own is emulated (docs/performance-history.md, the avx512-vnni class). packed-bert's AMX kernels
follow the class (unused below amx). ONNX Runtime's kernels (MLAS) and PyTorch's fp32 (MKL)
ignore the cap: MLAS's int8 picks AMX tiles on an AMX CPU under any cap, and both fp32 kernels
stay AVX-512 under a cap below it (``CAP_BLIND``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from packed_bert.errors import UserError

CPUINFO = Path("/proc/cpuinfo")
UNKNOWN_CPU = "unknown CPU"  # cpu_model where /proc/cpuinfo names none
CLASSES = ("amx", "avx512-bf16", "avx512-vnni", "avx2", "other")
# class -> flags it needs, best class first
REQUIRED: tuple[tuple[str, frozenset[str]], ...] = (
    ("amx", frozenset({"amx_int8", "amx_bf16", "amx_tile"})),
    ("avx512-bf16", frozenset({"avx512_vnni", "avx512_bf16"})),
    ("avx512-vnni", frozenset({"avx512_vnni"})),
    ("avx2", frozenset({"avx2", "fma"})),
)
# u8 x s8 dot products into 32-bit sums: without one of these, oneDNN's and ONNX Runtime's AVX2
# and AVX-512 int8 kernels pair products in 16 bits (``vpmaddubsw``), which saturates, so an int8
# layer is not the exact integer product (docs/performance-history.md, the avx2 class). ONNX Runtime's
# SSE4.1 kernels (no AVX2) and its aarch64 kernels sum exactly (a MatMulInteger of 255 x 127
# pairs, which ``vpmaddubsw`` saturates, is exact under QEMU's Nehalem, Cortex-A57 and Neoverse N1
# and saturates under its Haswell): ``exact_int8_products`` stays False there, which only skips
# the tests that need exact sums.
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # bf16 products in hardware, not emulated on AVX-512
BF16_CLASSES = tuple(name for name, needs in REQUIRED if not needs.isdisjoint(BF16_FLAGS))  # amx, avx512-bf16
MATRIX_FLAGS = (
    *("amx_int8", "amx_bf16", "avx512_vnni", "avx512_bf16", "avx_vnni", "avx512f", "avx2", "fma"),
    *("i8mm", "bf16", "asimddp", "sve2", "sve"),  # aarch64's names (no class of their own yet: ``other``)
)
# x86 server generations by (vendor, family, first model, last model), for records: the CPUs this
# project's classes were measured on and their neighbours (Intel's SDM and AMD's revision guides)
X86_GENERATIONS: dict[tuple[str, int, int, int], str] = {
    ("GenuineIntel", 6, 85, 85): "Skylake-SP / Cascade Lake",
    ("GenuineIntel", 6, 106, 106): "Ice Lake-SP",
    ("GenuineIntel", 6, 143, 143): "Sapphire Rapids",
    ("GenuineIntel", 6, 173, 173): "Granite Rapids",
    ("GenuineIntel", 6, 207, 207): "Emerald Rapids",
    ("AuthenticAMD", 25, 0x00, 0x0F): "Zen 3",
    ("AuthenticAMD", 25, 0x10, 0x1F): "Zen 4",
    ("AuthenticAMD", 25, 0xA0, 0xAF): "Zen 4c",
    ("AuthenticAMD", 26, 0x00, 0x1F): "Zen 5",
}
# aarch64's /proc/cpuinfo has no model name: (implementer, part) -> the core, as lscpu names it
ARM_CORES: dict[tuple[int, int], str] = {
    (0x41, 0xD07): "Cortex-A57",
    (0x41, 0xD08): "Cortex-A72",
    (0x41, 0xD0C): "Neoverse-N1",
    (0x41, 0xD40): "Neoverse-V1",
    (0x41, 0xD49): "Neoverse-N2",
    (0x41, 0xD4F): "Neoverse-V2",
}

CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")  # the first one set counts
_AMX = ("amx_",)
_AVX512 = ("amx_", "avx512")
# oneDNN's cap -> prefixes of the flags a CPU of that ISA lacks (names as oneDNN spells them,
# upper case; ALL and DEFAULT cap nothing)
CAPS: dict[str, tuple[str, ...]] = {
    "ALL": (),
    "DEFAULT": (),
    "AVX10_1_512_AMX_FP16": (),
    "AVX512_CORE_AMX_FP16": (),
    "AVX10_1_512_AMX": ("amx_fp16",),
    "AVX512_CORE_AMX": ("amx_fp16",),
    "AVX10_1_512": _AMX,
    "AVX512_CORE_FP16": _AMX,
    "AVX512_CORE_BF16": (*_AMX, "avx512_fp16"),
    "AVX512_CORE_VNNI": (*_AMX, "avx512_fp16", "avx512_bf16"),
    "AVX512_CORE": (*_AMX, "avx512_fp16", "avx512_bf16", "avx512_vnni", "avx_vnni"),
    "AVX2_VNNI_2": _AVX512,
    "AVX2_VNNI": (*_AVX512, "avx_vnni_int8", "avx_ne_convert"),
    "AVX2": (*_AVX512, "avx_vnni"),
    "AVX": (*_AVX512, "avx_vnni", "avx2", "fma"),
    "SSE41": (*_AVX512, "avx_vnni", "avx2", "fma", "avx"),
}
# (runtime, precision) -> the flags whose loss under a cap its matmul does not notice: it picks
# its kernels from the CPU itself. ONNX Runtime's MLAS picks AMX tiles or VNNI for int8 on a CPU
# that has them whatever the cap; its fp32 and PyTorch's (MKL) run AVX-512 FMA under a cap
# below AVX-512 (torch's fp32 matmul read 164 GFLOP/s on one core capped at SSE41, whose peak is
# about 25 there: 2026-12-05)
_FP32_KERNEL_FLAGS = frozenset({"avx512f", "avx2", "fma", "avx"})
CAP_BLIND: dict[tuple[str, str], frozenset[str]] = {
    ("onnxruntime", "int8"): frozenset({"amx_int8", "avx512_vnni", "avx_vnni", "avx512bw", "avx2"}),
    ("onnxruntime", "fp32"): _FP32_KERNEL_FLAGS,
    ("torch", "fp32"): _FP32_KERNEL_FLAGS,
    # packed-bert's own kernels ("amx") follow the cap: amx_kernels.tiles_here reads the capped
    # flags, and below AMX the library is built without it (kernels/soft_tiles.h)
}


def _field(text: str, key: str) -> str:
    """The value of the first ``key : value`` line of cpuinfo text, or ""."""
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip() == key:
            return value.strip()
    return ""


def _read(cpuinfo: str | None) -> str:
    if cpuinfo is not None:
        return cpuinfo
    try:
        return CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: no flags known
        return ""


def isa_cap() -> str:
    """oneDNN's ISA cap in effect (upper case), or "" where none is set; a value oneDNN does not
    know is a one-line error naming the variable and the values it takes."""
    for name in CAP_VARIABLES:
        given = os.environ.get(name, "").strip()
        value = given.upper()
        if value:
            if value not in CAPS:
                raise UserError(f"{name}={given}: not an ISA oneDNN knows; use one of {', '.join(CAPS)}, or unset it")
            return "" if value in ("ALL", "DEFAULT") else value
    return ""


def runs_own_kernels(runtime: str, options: Mapping[str, Any]) -> bool:
    """Whether ``runtime`` with its ``options`` runs packed-bert's own kernels (torch with
    kernel=amx: backends/amx_kernels.py, on AMX tiles or their AVX-512 stand-ins)."""
    return runtime == "torch" and options.get("kernel") == "amx"


def emulates_bf16(runtime: str, options: Mapping[str, Any]) -> bool:
    """Whether ``runtime`` (with its ``options``) leaves its bf16 matmuls to oneDNN, which emulates
    them where the CPU has no bf16 hardware (50-300x slower than fp32): every runtime but
    packed-bert's own kernels (``runs_own_kernels``), whose bf16 products run as FMAs there
    (kernels/soft_tiles.h: 312-347 GFLOP/s at 2048^3 on 2 cores, emulated avx512-vnni, where oneDNN's
    bf16 read 81)."""
    return not runs_own_kernels(runtime, options)


def ignores_cap(runtime: str, precision: str, cpuinfo: str | None = None) -> bool:
    """Whether oneDNN's ISA cap took away a flag that ``runtime``'s ``precision`` matmul picks its
    kernels by without asking oneDNN (``CAP_BLIND``): a measurement of it would be the uncapped
    CPU's, not the emulated class's."""
    text = _read(cpuinfo)  # once, for both readings
    lost = cpu_flags(text, capped=False) - cpu_flags(text)
    return not lost.isdisjoint(CAP_BLIND.get((runtime, precision), frozenset()))


def cpu_flags(cpuinfo: str | None = None, *, capped: bool = True) -> frozenset[str]:
    """The first processor's flags (``cpuinfo``: the text of /proc/cpuinfo; default: read it),
    less those oneDNN's ISA cap takes away (``isa_cap``) unless ``capped`` is False."""
    text = _read(cpuinfo)
    flags = frozenset((_field(text, "flags") or _field(text, "Features")).split())  # x86, aarch64
    cap = isa_cap() if capped else ""
    if not cap:
        return flags
    return frozenset(f for f in flags if not f.startswith(CAPS[cap]))


def cpu_class(cpuinfo: str | None = None) -> str:
    """The best class whose flags this CPU has (``CLASSES``)."""
    flags = cpu_flags(cpuinfo)
    return next((name for name, needs in REQUIRED if needs <= flags), "other")


def cpu_model(cpuinfo: str | None = None) -> str:
    """The processor's model name, e.g. ``Intel(R) Xeon(R) Processor``; on aarch64 the core its
    implementer and part numbers name (``Neoverse-N1 (implementer 0x41, part 0xd0c)``); else
    ``UNKNOWN_CPU``."""
    text = _read(cpuinfo)
    name = _field(text, "model name")
    implementer, part = _field(text, "CPU implementer"), _field(text, "CPU part")
    if name or not (implementer and part):
        return name or UNKNOWN_CPU
    try:
        core = ARM_CORES.get((int(implementer, 16), int(part, 16)), "Arm CPU")
    except ValueError:
        core = "Arm CPU"
    return f"{core} (implementer {implementer}, part {part})"


def cpu_generation(cpuinfo: str | None = None) -> str:
    """An x86 CPU's family, model and stepping, with its generation where ``X86_GENERATIONS``
    knows it (``family 6 model 207 stepping 2, Emerald Rapids``): a virtual machine's model name
    is often generic (``Intel(R) Xeon(R) Processor``), and a figure must say which CPU ran it.
    "" where /proc/cpuinfo has no x86 family (aarch64: ``cpu_model`` names the core)."""
    text = _read(cpuinfo)
    vendor, family, model = _field(text, "vendor_id"), _field(text, "cpu family"), _field(text, "model")
    if not family.isdigit() or not model.isdigit():
        return ""
    stepping = _field(text, "stepping")
    label = f"family {family} model {model}" + (f" stepping {stepping}" if stepping.isdigit() else "")
    for (known_vendor, known_family, first, last), name in X86_GENERATIONS.items():
        if vendor == known_vendor and int(family) == known_family and first <= int(model) <= last:
            return f"{label}, {name}"
    return label


def matrix_flags(cpuinfo: str | None = None) -> list[str]:
    """The matrix-relevant flags the CPU has, in a fixed order (for records)."""
    flags = cpu_flags(cpuinfo)
    return [f for f in MATRIX_FLAGS if f in flags]


def exact_int8_products(cpuinfo: str | None = None) -> bool:
    """Whether this CPU's int8 kernels sum u8 x s8 products exactly (``INT8_DOT_FLAGS``)."""
    return not cpu_flags(cpuinfo).isdisjoint(INT8_DOT_FLAGS)


def native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies bf16 in hardware (``BF16_FLAGS``); without it oneDNN and
    OpenVINO emulate bf16 on AVX-512, slower than fp32."""
    return not cpu_flags(cpuinfo).isdisjoint(BF16_FLAGS)
