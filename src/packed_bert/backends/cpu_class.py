"""Which class of matrix hardware this CPU has, from the flags in ``/proc/cpuinfo``.

The fastest CPU recipe depends on it: AMX tiles (``amx_int8``/``amx_bf16``, Intel Xeon 4th gen
on) make bf16 and int8 matmuls several times faster than AVX-512 VNNI/BF16 (AMD EPYC Zen 4/5,
older Xeons), and those several times faster than AVX2 alone (AMD EPYC Zen 2/3, Xeons before
Skylake-SP), where oneDNN has no bf16 kernels at all. A system file names a recipe per class
(``[precision_by_cpu.CLASS]``), each with the measurement behind it in docs/performance.md.

Classes, best first: ``amx`` (amx_int8 and amx_bf16), ``avx512-bf16`` (avx512_vnni and
avx512_bf16), ``avx512-vnni`` (avx512_vnni), ``avx2`` (avx2 and fma), ``other``.
"""

from __future__ import annotations

from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
CLASSES = ("amx", "avx512-bf16", "avx512-vnni", "avx2", "other")
# class -> flags it needs, best class first
REQUIRED: tuple[tuple[str, frozenset[str]], ...] = (
    ("amx", frozenset({"amx_int8", "amx_bf16", "amx_tile"})),
    ("avx512-bf16", frozenset({"avx512_vnni", "avx512_bf16"})),
    ("avx512-vnni", frozenset({"avx512_vnni"})),
    ("avx2", frozenset({"avx2", "fma"})),
)
# u8 x s8 dot products into 32-bit sums: without one of these, oneDNN's and ONNX Runtime's int8
# kernels pair products in 16 bits (``vpmaddubsw``), which saturates, so an int8 layer is not the
# exact integer product (docs/performance.md, the avx2 class)
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # bf16 products in hardware, not emulated on AVX-512
MATRIX_FLAGS = ("amx_int8", "amx_bf16", "avx512_vnni", "avx512_bf16", "avx_vnni", "avx512f", "avx2", "fma")


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


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The first processor's flags (``cpuinfo``: the text of /proc/cpuinfo; default: read it)."""
    return frozenset(_field(_read(cpuinfo), "flags").split())


def cpu_class(cpuinfo: str | None = None) -> str:
    """The best class whose flags this CPU has (``CLASSES``)."""
    flags = cpu_flags(cpuinfo)
    return next((name for name, needs in REQUIRED if needs <= flags), "other")


def cpu_model(cpuinfo: str | None = None) -> str:
    """The processor's model name, e.g. ``Intel(R) Xeon(R) Processor``, or ``unknown CPU``."""
    return _field(_read(cpuinfo), "model name") or "unknown CPU"


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
