"""packed-bert's own CPU kernels on Intel AMX tiles (``kernels/amx.c``), for the torch int8 and bf16
recipes with ``kernel="amx"`` (``torch_int8``, ``torch_amx``): the linear layer (static int8 or
bf16), attention per sequence, and the residual add with LayerNorm.

One linear call quantizes the input (SmoothQuant factors and the calibrated uint8 grid, as
oneDNN's path does), multiplies it by the int8 weight on AMX tiles with int32 sums, and applies
the scales, the bias and, for the FFN input layer, GELU (the erf form, from a table of
polynomials) before it writes fp32, bf16 or, for a layer that feeds only the next one, that
layer's uint8 input. A bf16 layer (``AmxLinearWeights.bf16``) rounds an fp32 input to bf16,
multiplies it by the bf16 weight in fp32 sums and adds the bias (and GELU) the same way; a layer
that feeds another writes bf16 rows it reads in place. On the soft-tile builds below AMX an int12
layer (``AmxLinearWeights.int12``, torch option ``kept=int12``) puts each bf16 input row on a
12-bit grid of its own and sums int16 pairs by int8 weights on ``vpdpwssd``; on every build an
int8-rows layer (``int8_rows``) puts each row, after SmoothQuant factors, on an 8-bit grid of its
own, and an int8-hybrid one (``int8_hybrid``) has its producer write it on a fixed grid, each row
past that on its own (``kernels/grids.h``). The vector units
finish one block of sums while the tiles compute the next. Why it exists: on the Xeon here oneDNN's u8 x s8 kernels run 1.2-2.0 TOP/s at one sample's rows, and the AMX units issue 12.4 TOP/s on
two cores (docs/performance-history.md, "The amx class, tenth session").

Attention runs each sequence alone, on bf16 tiles: Q K^T in fp32 sums, softmax in fp32, the
weights rounded to bf16 for P V, fp32 sums rounded to bf16 at the end. It reads Q, K and V
straight from the Q|K|V layer's output and needs a head dimension of 32 or 64 (otherwise the
plain matmuls of ``model.attention.matmul_attention`` run). Every kernel works row by row or
sequence by sequence, so a sample's logits are the same in any batch.

The C source (``kernels/amx.c``, which includes its parts from the same folder: the tiles,
GELU, what the kernels share, linear layers, attention, add+LayerNorm, the embeddings and QA
head, the encoder) is compiled at first use, as one translation unit, with the system compiler
(``-march=native``: the machine that runs it) into the cache, keyed by every file of the source,
the flags, the compiler's version and the CPU's flags; a compiler without AMX intrinsics (GCC 11+, Clang 12+) gets a one-line error naming
the fallback.
On a CPU without AMX but with AVX-512 VNNI and BF16 (AMD Zen 4 and 5; the avx512-bf16 class) the
same source is built without AMX (``tiles_here``, ``build(tiles="avx512-bf16")``): ``kernels/soft_tiles.h``
runs each tile operation on vector instructions (vpdpbusd, vdpbf16ps), and the linear layers' K loop
keeps its sums in registers. int8 sums are exact either way, so int8 layers give the tiles' bits;
bf16 sums may differ in their last bit. Without BF16 either (Intel Xeon 2nd and 3rd gen: the
"avx512-vnni" build), bf16 products run as two fp32 FMAs and conversions to bf16 in integers, each
with the BF16 instructions' rounding. oneDNN's ISA cap picks these builds on an AMX Xeon too
(``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16`` or ``AVX512_CORE_VNNI``: the classes EMULATED).
The library links OpenMP by its soname, so once torch is imported it shares torch's OpenMP
threads (``torch.set_num_threads`` applies to it).
"""

from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
from functools import cache
from pathlib import Path

import numpy as np
import torch

from packed_bert.backends.cpu_class import cpu_flags
from packed_bert.backends.onnx_int8 import quantize_weight
from packed_bert.cache import atomic_path, cache_dir
from packed_bert.errors import UserError
from packed_bert.model.attention import AttentionCore

SOURCE = Path(__file__).with_name("kernels") / "amx.c"  # the root; its parts (*.h) sit beside it
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared")
TILE_K = 64  # the kernel's K step (bytes of one tile row: 64 int8 or 32 bf16 values)
CACHE_LINE = 64  # bytes
ATTENTION_DIMS = (32, 64)  # head dimensions the attention kernel takes
MAX_SEQUENCE = 512  # tokens of one sequence the attention kernel takes
BLOCK_N = 32  # the kernel's column step (two tiles of 16)
BLOCK_M = 32  # the kernel's row step (two tiles of 16)
AS_FP32, AS_BF16, AS_U8 = 0, 1, 2  # the kernel's input and output kinds
FLOAT_KINDS = {torch.float32: AS_FP32, torch.bfloat16: AS_BF16}  # the kinds torch dtypes take
TILE_KINDS = {torch.uint8: AS_U8, torch.bfloat16: AS_BF16}  # the tiles' input kinds
# the kernel's weight kinds: int8 (u8 inputs), bf16 (bf16 inputs), int8 values for inputs on a
# 12-bit grid per row (int16 pairs on vpdpwssd; the soft-tile builds only: AMX has no int16 tiles),
# and int8 for inputs on an 8-bit grid per row (u8 around zero point 128; every build)
W_S8, W_BF16, W_S16, W_S8R = 0, 1, 2, 3
ROW_GRID_LEVELS = 2047  # W_S16's input grid: steps each side of zero, max|row| / this a step (kernels/linear.h)
ROW_GRID_MAX_K = 8260  # the longest K whose int32 sums cannot overflow: 2,047 x 127 x K < 2^31
ROW_GRID_U8_LEVELS = 127  # W_S8R's input grid: steps each side of its zero point 128 (kernels/linear.h)
# the precision of the layers int8-bf16 keeps out of its static int8 (torch option kept=NAME) -> what
# a run's record says: bf16 on the tiles; int12 (W_S16: the row's 12-bit grid x int8 weights per
# column, int32 sums; soft-tile builds); int8-rows (W_S8R: SmoothQuant, then an 8-bit grid per row);
# int8-hybrid (W_S8R's input on a fixed grid its producer writes, rows past it on their own: grids.h)
KEPT_PRECISIONS = {
    "bf16": "bf16",
    "int12": "12-bit inputs per row x int8 weights",
    "int8-rows": "8-bit inputs per row after SmoothQuant x int8 weights",
    "int8-hybrid": "8-bit inputs on a fixed grid per layer (rows past it on their own) after SmoothQuant x int8 weights",
}
INT8_KEPT = ("int8-rows", "int8-hybrid")  # the kept precisions on int8 products, after row_smoothing's factors
SOFT_TILES = ("avx512-bf16", "avx512-vnni")  # the builds whose tiles are vector instructions (W_S16 runs there)
# attention's products in the kernel (torch option attention=NAME) -> pb_attention's kind: bf16, both in
# int8, or Q K^T alone in int8 (kernels/attention_int8.h)
ATTENTION_KINDS = {"bf16": 0, "int8": 1, "int8-scores": 2}
AMX_FLAGS = frozenset({"amx_int8", "amx_bf16", "amx_tile"})
_AVX512_VNNI = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni"})
# what the tile operations run on (kernels/soft_tiles.h below AMX), best first, and the CPU flags
# each needs: the AMX units; AVX-512 VNNI with BF16 (AMD Zen 4 and 5); AVX-512 VNNI alone (Intel
# Xeon 2nd and 3rd gen), whose bf16 products and conversions run on fp32 and integer instructions
TILES: dict[str, frozenset[str]] = {
    "amx": AMX_FLAGS,
    "avx512-bf16": _AVX512_VNNI | {"avx512_bf16"},
    "avx512-vnni": _AVX512_VNNI,
}
# a build below AMX leaves out every instruction such a CPU may lack, whatever -march=native allows
NO_TILE_FLAGS: dict[str, tuple[str, ...]] = {
    "amx": (),
    "avx512-bf16": ("-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16", "-mno-avx512fp16"),
    "avx512-vnni": ("-mno-amx-tile", "-mno-amx-int8", "-mno-amx-bf16", "-mno-avx512fp16", "-mno-avx512bf16"),
}
FALLBACK = "or name openvino:int8 (bert-99) or openvino:bf16 (bert-99.9) in a system file's [precision_by_cpu.CLASS] (docs/usage.md)"


def has_amx() -> bool:
    """Whether this CPU has AMX tiles with int8 and bf16 products."""
    return cpu_flags() >= AMX_FLAGS


@cache
def tiles_here() -> str | None:
    """What the kernels' tile operations run on here (``TILES``): the AMX units where the CPU has
    them, else AVX-512 VNNI, with BF16 (AMD Zen 4 and 5) or without; None on any other CPU.
    oneDNN's ISA cap applies (``cpu_class.cpu_flags``): ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16`` on
    an AMX Xeon runs the "avx512-bf16" build, as that class would. Read once a process, as oneDNN
    reads its cap (``library`` asks on every kernel call: reading /proc/cpuinfo took 30 us)."""
    flags = cpu_flags()
    return next((kind for kind, needs in TILES.items() if flags >= needs), None)


def fits(k: int, n: int, item_bytes: int = 1) -> bool:
    """Whether a [k, n] weight of ``item_bytes`` a value fits the kernel's tiles (K a multiple of
    64 int8 or 32 bf16 values, N of 32)."""
    return (k * item_bytes) % TILE_K == 0 and n % BLOCK_N == 0


def line_aligned(array: np.ndarray) -> torch.Tensor:
    """A copy of ``array`` that starts on a 64-byte cache line: each 64-byte tile row then reads
    one line, not two (numpy's buffers start 16 bytes apart; unaligned weights cost our layers
    about 1.6x at one sample's rows)."""
    buffer = torch.empty(array.nbytes + CACHE_LINE, dtype=torch.uint8)
    start = -buffer.data_ptr() % CACHE_LINE
    out = buffer[start : start + array.nbytes].view(torch.from_numpy(array).dtype).view(array.shape)
    out.copy_(torch.from_numpy(array))
    return out


def block_rows(rows: int, cols: int, dtype: torch.dtype = torch.uint8, fill: float | None = None) -> torch.Tensor:
    """A [rows, cols] input (uint8 or bf16) for a kernel that reads whole blocks of ``BLOCK_M``
    rows: a view of a buffer padded to the next block (``fill``: its value everywhere; else left
    as it is)."""
    shape = (-(-rows // BLOCK_M) * BLOCK_M, cols)
    buffer = torch.empty(shape, dtype=dtype) if fill is None else torch.full(shape, fill, dtype=dtype)
    return buffer[:rows]


def holds_blocks(x: torch.Tensor, rows: int, row_bytes: int) -> bool:
    """Whether contiguous ``x``'s storage runs on to the end of its last block of rows."""
    padded = -(-rows // BLOCK_M) * BLOCK_M
    return (
        x.is_contiguous() and x.untyped_storage().nbytes() - x.storage_offset() * x.element_size() >= padded * row_bytes
    )


def c_compiler() -> str | None:
    """The system C compiler on PATH (cc, gcc or clang, in that order), or None."""
    return next((path for path in map(shutil.which, ("cc", "gcc", "clang")) if path), None)


def source_texts() -> list[str]:
    """``SOURCE`` and the parts beside it that it includes, in a fixed order (the build's key)."""
    parts = sorted(SOURCE.parent.glob("*.h"))
    return [SOURCE.read_text(), *(f"{p.name}\n{p.read_text()}" for p in parts)]


def kernels_label() -> str:
    """What runs a kernel=amx recipe here, for a run's record: the AMX kernels, or their AVX-512
    build (soft tiles)."""
    kind = tiles_here()
    return "packed-bert's AMX kernels" if kind in (None, "amx") else f"packed-bert's kernels on {kind} soft tiles"


def build(out_dir: Path | None = None, defines: tuple[str, ...] = (), tiles: str = "amx") -> Path:
    """The compiled library for this machine (built once, then taken from the cache); ``defines``
    (``-D`` names) build a variant, such as ``PB_PHASE_TIMES`` for ``benchmarks/amx_phases.py``;
    ``tiles`` (``TILES``) what its tile operations run on."""
    cc = c_compiler()
    if cc is None:
        raise UserError(f"torch kernel=amx: no C compiler (cc, gcc or clang) on PATH; install gcc 11+, {FALLBACK}")
    if tiles not in TILES:
        raise ValueError(f"tiles must be one of {', '.join(TILES)}, got {tiles!r}")
    flags = (*FLAGS, *NO_TILE_FLAGS[tiles], *(f"-D{name}" for name in defines))
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False).stdout
    # -march=native: a cache shared between machines keeps one per CPU (its own flags, whatever
    # oneDNN's ISA cap)
    machine = " ".join(sorted(cpu_flags(capped=False)))
    key = hashlib.sha256(b"\0".join(x.encode() for x in (*source_texts(), " ".join(flags), version, machine)))
    key_hex = key.hexdigest()[:16]
    lib = (out_dir or cache_dir() / "kernels") / f"{tiles}-{key_hex}.so"
    if lib.exists():
        return lib
    with atomic_path(lib) as tmp:
        done = subprocess.run([cc, *flags, str(SOURCE), "-o", str(tmp)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            first = (done.stderr.strip().splitlines() or ["no message"])[0]
            raise UserError(
                f"torch kernel=amx: {cc} could not build {SOURCE.name} ({first}); install gcc 11+, {FALLBACK}"
            )
    return lib


def library() -> ctypes.CDLL:
    """The kernels for this CPU (``tiles_here``), loaded, with AMX tiles granted to this process
    where they run on them."""
    tiles = tiles_here()
    if tiles is None:
        raise UserError(
            "torch kernel=amx: this CPU has no AMX tiles (int8, bf16) nor AVX-512 VNNI; "
            f"for int8 use kernel=onednn, {FALLBACK}"
        )
    return loaded(tiles)


@cache
def loaded(tiles: str) -> ctypes.CDLL:
    """The kernels built for ``tiles`` (``TILES``), loaded: what ``library`` returns, or the other
    build side by side (tests and benchmarks on an AMX CPU)."""
    lib = ctypes.CDLL(str(build(tiles=tiles)))
    if lib.pb_amx_enable() != 0:
        raise UserError(
            f"torch kernel=amx: the kernel (Linux 5.16+) refused AMX tile state; for int8 use kernel=onednn, {FALLBACK}"
        )
    p, i, n = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
    lib.pb_linear.argtypes = [p, i, n, n, p, i, p, i, n, p, p, p, i, p, i, p, i, p]
    lib.pb_linear.restype = i
    f = ctypes.c_float
    lib.pb_hybrid_feed.argtypes = [p, i, n, n, p, i, p, i, n, p, p, p, i, p, p, f, p, i, p]
    lib.pb_hybrid_feed.restype = i
    lib.pb_attention.argtypes = [p, p, p, n, i, i, ctypes.c_float, p, i, p, i, i, n]
    lib.pb_attention.restype = i
    lib.pb_add_layernorm.argtypes = [p, i, p, i, p, p, ctypes.c_float, n, n, p, i, p, i, p, i]
    lib.pb_add_layernorm.restype = i
    lib.pb_encoder.argtypes = [p, i, n, i, i, ctypes.c_float, p, p, n, i, p, i]
    lib.pb_encoder.restype = i
    lib.pb_embeddings.argtypes = [p, n, p, p, n, p, p, n, p, n, n, p, p, f, p, i]
    lib.pb_embeddings.restype = i
    lib.pb_qa_head.argtypes = [p, i, n, n, p, p, p]
    lib.pb_qa_head.restype = i
    lib.pb_forward.argtypes = [p, p, p, p, p, n, n, n, p]
    lib.pb_forward.restype = i
    lib.pb_tile_row_bytes.argtypes = [n]
    lib.pb_tile_row_bytes.restype = n
    lib.pb_tiles_kind.restype = i
    lib.pb_amx_int8_issue_rate.argtypes = [n]
    lib.pb_amx_int8_issue_rate.restype = ctypes.c_double
    return lib


def issue_rate(iterations: int = 2_000_000) -> float:
    """int8 operations per second (TOP/s) the AMX units issue on every thread at once: back-to-back
    tile products on registers only, the ceiling no kernel passes (``benchmarks/amx_ceiling.py``)."""
    return float(library().pb_amx_int8_issue_rate(iterations)) / 1e12


def pack_weight(wq: np.ndarray) -> np.ndarray:
    """An int8 weight [K, N] in the kernel's tile order: [N/16][K/64][16][64], each tile row 16
    columns of 4 consecutive K bytes (AMX's VNNI layout)."""
    k, n = wq.shape
    if not fits(k, n):
        raise UserError(
            f"torch int8 kernel=amx: a [{k}, {n}] weight does not fit its tiles (K % 64, N % 32); use kernel=onednn, {FALLBACK}"
        )
    return _tile_order(wq, 4)


def _tile_order(values: np.ndarray, group: int) -> np.ndarray:
    """[K, N] values in AMX's B-tile order, each tile row 16 columns of ``group`` consecutive K
    values (4 bytes): [N/16][K/(16 group)][16][16][group]."""
    k, n = values.shape
    tiles = values.reshape(
        k // (16 * group), 16, group, n // 16, 16
    )  # (k block, tile row, value, column block, column)
    return np.ascontiguousarray(tiles.transpose(3, 0, 1, 4, 2))


def pack_weight_bf16(w: np.ndarray) -> np.ndarray:
    """A float weight [K, N] rounded to bf16 (to nearest even) in the kernel's tile order, its
    bits as int16: [N/16][K/32][16][16][2], each tile row 16 columns of 2 consecutive K values."""
    k, n = w.shape
    if not fits(k, n, 2):
        raise UserError(
            f"torch bf16 kernel=amx: a [{k}, {n}] weight does not fit its tiles (K % 32, N % 32); drop kernel=amx"
        )
    bits = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)).to(torch.bfloat16).view(torch.int16).numpy()
    return _tile_order(bits, 2)


class AmxLinearWeights:
    """One layer's constants in the kernel's form: for weight ``wq`` [K, N] (int8) with column
    scales ``weight_scale`` and bias, the input's per-channel multiplier ``in_scale`` (SmoothQuant
    division and grid step in one) and the grid's zero point; or (``bf16``) a float weight in bf16
    with its bias."""

    w_kind = W_S8
    input_dtype = torch.uint8  # what the tiles read in place

    def __init__(
        self,
        wq: np.ndarray,
        weight_scale: np.ndarray,
        bias: np.ndarray,
        in_scale: np.ndarray,
        grid_scale: float,
        zero_point: int,
        *,
        gelu: bool = False,
    ) -> None:
        self.k, self.n = wq.shape
        self.packed = line_aligned(pack_weight(wq))
        self.in_scale = torch.from_numpy(np.ascontiguousarray(in_scale, dtype=np.float32))
        self.zero_point = int(zero_point)
        colsum = wq.astype(np.int64).sum(axis=0)
        self.colsum_zp = torch.from_numpy((colsum * self.zero_point).astype(np.int32))
        self.col_scale = torch.from_numpy((weight_scale.astype(np.float64) * grid_scale).astype(np.float32))
        self.bias = torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32))
        self.gelu = gelu
        self.feeds: AmxLinearWeights | None = None
        self.handed: tuple[torch.Tensor, torch.Tensor] | None = None  # (a tensor, its twin as our tiles' input)
        self.fixed_scale: torch.Tensor | None = None  # int8_hybrid: its input's fixed grid per column ...
        self.fixed_step = 0.0  # ... and that grid's step
        self.steps: tuple[int, torch.Tensor] | None = None  # int8_hybrid: (an input's address, its rows' steps)

    @classmethod
    def bf16(cls, w: np.ndarray, bias: np.ndarray, *, gelu: bool = False) -> AmxLinearWeights:
        """A bf16 layer: float weight ``w`` [K, N] rounded to bf16, fp32 ``bias``."""
        return cls._bf16_input(W_BF16, pack_weight_bf16(w), w.shape, bias, gelu)

    @classmethod
    def _bf16_input(
        cls, w_kind: int, packed: np.ndarray, shape: tuple[int, ...], bias: np.ndarray, gelu: bool
    ) -> AmxLinearWeights:
        """A layer whose producer writes bf16 rows (W_BF16 and W_S16): ``packed`` weights of ``shape``
        [K, N] in bf16's tile order; the int8 input's constants unused (empty)."""
        layer = cls.__new__(cls)
        layer.k, layer.n = shape
        layer.w_kind, layer.input_dtype = w_kind, torch.bfloat16
        layer.packed = line_aligned(packed)
        layer.bias = torch.from_numpy(np.ascontiguousarray(bias, dtype=np.float32))
        layer.in_scale = layer.col_scale = torch.empty(0, dtype=torch.float32)  # int8 constants: unused
        layer.colsum_zp, layer.zero_point = torch.empty(0, dtype=torch.int32), 0
        layer.gelu, layer.feeds, layer.handed = gelu, None, None
        layer.fixed_scale, layer.fixed_step, layer.steps = None, 0.0, None
        return layer

    @classmethod
    def int12(cls, w: np.ndarray, bias: np.ndarray, *, gelu: bool = False) -> AmxLinearWeights:
        """A layer of float weight ``w`` [K, N] in int8 per column (``onnx_int8.quantize_weight``)
        whose input the kernel puts on a 12-bit grid per row (``ROW_GRID_LEVELS``): int16 pairs into
        int32 sums, twice a bf16 FMA's products an instruction where the CPU has no bf16 products
        (the avx512-vnni class). Its producer writes bf16 rows, as for a bf16 layer. Runs on the
        soft-tile builds only (``SOFT_TILES``)."""
        if tiles_here() not in SOFT_TILES:
            raise UserError(
                f"torch kernel=amx: kept=int12 runs on the {' and '.join(SOFT_TILES)} builds (vpdpwssd); "
                f"this CPU's kernels are {tiles_here()}: drop kept=int12"
            )
        if w.shape[0] > ROW_GRID_MAX_K:
            raise UserError(
                f"torch kernel=amx: kept=int12 sums at most {ROW_GRID_MAX_K} products in int32, "
                f"this layer {w.shape[0]}: drop kept=int12"
            )
        if not fits(w.shape[0], w.shape[1], 2):
            raise UserError(f"torch kernel=amx: a {list(w.shape)} weight does not fit its tiles (K % 32, N % 32)")
        wq, scale = quantize_weight(np.asarray(w, dtype=np.float32))
        layer = cls._bf16_input(W_S16, _tile_order(wq.astype(np.int16), 2), w.shape, bias, gelu)
        layer.col_scale = torch.from_numpy(scale.astype(np.float32))  # the weight's step per column
        return layer

    @classmethod
    def int8_rows(cls, w: np.ndarray, bias: np.ndarray, smooth: np.ndarray, *, gelu: bool = False) -> AmxLinearWeights:
        """A layer of float weight ``w`` [K, N] times its input's SmoothQuant factors ``smooth`` [K],
        in int8 per column, whose input the kernel divides by the factors and puts on an 8-bit grid
        per row (uint8 with zero point 128, the row's step in the epilogue). Its producer writes
        bf16 rows. Runs on every build (u8 x s8 products)."""
        s = np.asarray(smooth, dtype=np.float32)
        wq, scale = quantize_weight(np.asarray(w, dtype=np.float32) * s[:, None])
        layer = cls(wq, scale, bias, (1.0 / s).astype(np.float32), 1.0, 128, gelu=gelu)
        layer.w_kind, layer.input_dtype = W_S8R, torch.bfloat16
        return layer

    @classmethod
    def int8_hybrid(
        cls, w: np.ndarray, bias: np.ndarray, smooth: np.ndarray, bound: float, *, gelu: bool = False
    ) -> AmxLinearWeights:
        """``int8_rows``' layer whose producer writes its input as uint8 itself (kernels/grids.h): on
        one fixed grid, ``bound`` (of the input divided by ``smooth``) at the grid's last step, for
        every row within it, and on the row's own grid for each row past it, every row's step
        handed on (``hand_steps``). A float input is put on its own grid per row, as int8_rows does."""
        if not bound > 0:
            raise ValueError(f"int8_hybrid: the grid's bound must be positive, got {bound}")
        layer = cls.int8_rows(w, bias, smooth, gelu=gelu)
        layer.input_dtype = torch.uint8
        levels = np.float32(ROW_GRID_U8_LEVELS)
        layer.fixed_scale = torch.from_numpy(layer.in_scale.numpy() * (levels / np.float32(bound)))
        layer.fixed_step = float(np.float32(bound) / levels)
        return layer

    def feed(self, consumer: AmxLinearWeights) -> None:
        """Write outputs as ``consumer``'s tile input (uint8 on its grid, after its SmoothQuant
        factors, or bf16), for a layer whose output goes nowhere else (the FFN input layer's GELU
        output): the consumer then reads it in place (uint8: a quarter of fp32's bytes)."""
        self.feeds = consumer

    def hand_steps(self, ready: torch.Tensor, steps: torch.Tensor) -> None:
        """``steps`` [rows] are the grid steps of ``ready``'s rows, this int8_hybrid layer's tile
        input: the next call with that input reads them."""
        self.steps = (ready.data_ptr(), steps)

    def hand(self, x: torch.Tensor, ready: torch.Tensor) -> None:
        """``ready`` is ``x`` as this layer's tile input (uint8 on its grid, or bf16; rows padded to
        whole blocks), written by the kernel that produced ``x``: the next call with ``x`` itself
        uses it."""
        self.handed = (x, ready)

    def __call__(self, x: torch.Tensor, out_dtype: torch.dtype) -> torch.Tensor:
        """``x`` [..., K] fp32 or bf16, or uint8 from a layer that feeds this one -> [..., N] in
        ``out_dtype`` (fp32 or bf16), or the tile input of the layer this one feeds."""
        handed, self.handed = self.handed, None
        if handed is not None and handed[0] is x:  # its producer wrote our input already
            x = handed[1].reshape(*x.shape)
        steps, self.steps = self.steps, None
        flat = x.reshape(-1, self.k)
        rows = flat.shape[0]
        if flat.dtype == self.input_dtype:  # read in place: whole row blocks (``block_rows``)
            if not holds_blocks(flat, rows, self.k * flat.element_size()):
                if flat.dtype == torch.uint8:
                    raise RuntimeError("amx int8 kernel: a uint8 input needs the feeding layer's padded rows")
                flat = block_rows(rows, self.k, flat.dtype).copy_(flat)
            kind = TILE_KINDS[flat.dtype]
        else:
            if flat.dtype not in FLOAT_KINDS or self.w_kind == W_BF16:
                flat = flat.float()
            flat = flat.contiguous()
            kind = FLOAT_KINDS[flat.dtype]
        consumer = self.feeds
        if consumer is not None:
            out = block_rows(rows, self.n, consumer.input_dtype)
            out_kind, out_zero = TILE_KINDS[consumer.input_dtype], consumer.zero_point
        else:
            out = torch.empty(rows, self.n, dtype=out_dtype)
            out_kind, out_zero = FLOAT_KINDS.get(out_dtype, AS_FP32), 0
        if rows == 0:
            return out.reshape(*x.shape[:-1], self.n)
        int8 = self.w_kind in (W_S8, W_S8R)  # uint8 inputs: per-channel factors and column sums
        scaled = self.w_kind != W_BF16  # int32 sums: scales per column
        layer_args = (  # this layer's constants and its input and output, as pb_linear takes them
            flat.data_ptr(), kind, rows, self.k, self.in_scale.data_ptr() if int8 else None, self.zero_point,
            self.packed.data_ptr(), self.w_kind, self.n, self.colsum_zp.data_ptr() if int8 else None,
            self.col_scale.data_ptr() if scaled else None, self.bias.data_ptr(), int(self.gelu), out.data_ptr(),
        )  # fmt: skip
        if consumer is not None and consumer.fixed_scale is not None:  # its fixed grid, rows past it on their own
            row_steps = torch.empty(rows, dtype=torch.float32)
            status = library().pb_hybrid_feed(
                *layer_args, consumer.fixed_scale.data_ptr(), consumer.fixed_step, consumer.in_scale.data_ptr(),
                consumer.zero_point, row_steps.data_ptr(),
            )  # fmt: skip
            consumer.hand_steps(out, row_steps)
        else:
            x_steps = None
            if self.fixed_scale is not None and kind == AS_U8:  # rows on grids: their steps came with them
                if steps is None or steps[0] != flat.data_ptr():
                    raise RuntimeError("amx int8-hybrid kernel: a uint8 input needs the feeding layer's row steps")
                x_steps = steps[1].data_ptr()
            # a uint8 output: on the consumer's grid, its SmoothQuant factors per column
            out_scale = consumer.in_scale.data_ptr() if consumer is not None and out_kind == AS_U8 else None
            status = library().pb_linear(*layer_args, out_kind, out_scale, out_zero, x_steps)
        if status != 0:
            raise RuntimeError(f"amx linear kernel: status {status} for [{rows}, {self.k}] x [{self.k}, {self.n}]")
        return out.reshape(*x.shape[:-1], self.n)


def q_multiplier(head_dim: int) -> np.float32:
    """1/sqrt(head dimension) in float32, as C's ``1.f / sqrtf`` gives it: the kernels' multiplier
    of Q (or what the Q layer's weights take in)."""
    return np.float32(1) / np.sqrt(np.float32(head_dim))


def sequence_spans(seq_lens: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(first token, token count) of every sequence of rows [R, ``length``] holding ``seq_lens``
    [R, K], tokens counted over the flattened rows; empty slots left out."""
    lens = seq_lens.detach().to("cpu", torch.int64)
    starts = torch.cumsum(lens, dim=1) - lens + torch.arange(lens.shape[0])[:, None] * length
    used = lens > 0
    return starts[used].contiguous(), lens[used].contiguous()


class SequenceAttention:
    """A core (``model.attention``) for rows [R, ``length``] holding the sequences ``seq_lens``
    [R, K]: each sequence alone in the AMX kernel, when Q, K and V are bf16 views of one Q|K|V
    tensor with a head dimension it takes; ``fallback`` (a core) otherwise. ``attend_qkv`` takes
    the Q|K|V tensor itself and can hand its output to the next layer as its tile input. Positions
    outside every sequence get zeros. ``q_scaled``: Q already holds 1/sqrt(head dim) (the Q
    layer's weights took it), so the kernel does not scale it, and there is no fallback.
    ``attention``: the kernel's products (``ATTENTION_KINDS``)."""

    def __init__(
        self,
        seq_lens: torch.Tensor,
        length: int,
        fallback: AttentionCore,
        *,
        q_scaled: bool = False,
        attention: str = "bf16",
    ) -> None:
        self.starts, self.lens = sequence_spans(seq_lens, length)
        self.longest = int(self.lens.max()) if self.lens.numel() else 0
        self.covered = int(self.lens.sum()) == seq_lens.shape[0] * length  # no position outside a sequence
        self.fallback = fallback
        self.q_scaled = q_scaled
        self.attention_kind = ATTENTION_KINDS[attention]

    def token_index(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(the positions of the sequences' tokens in the flat rows, in order; each sequence's first
        token among those alone): the sequences back to back, without the positions outside them."""
        first = torch.cumsum(self.lens, 0) - self.lens
        within = torch.arange(int(self.lens.sum())) - torch.repeat_interleave(first, self.lens)
        return torch.repeat_interleave(self.starts, self.lens) + within, first.contiguous()

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        rows, tokens, heads, dim = q.shape
        hidden = heads * dim
        step = q.element_size() * hidden
        views = (
            q.stride() == (tokens * 3 * hidden, 3 * hidden, dim, 1)
            and k.data_ptr() == q.data_ptr() + step
            and v.data_ptr() == q.data_ptr() + 2 * step
        )
        out = self._attend(q, rows * tokens, heads, dim) if views else None
        return self._fallback(q, k, v) if out is None else out.reshape(q.shape)

    def _fallback(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if self.q_scaled:
            raise RuntimeError("amx attention: Q holds 1/sqrt(head dim), so only the AMX kernel may attend")
        return self.fallback(q, k, v)

    def attend_qkv(self, qkv: torch.Tensor, heads: int, feeds: AmxLinearWeights | None = None) -> torch.Tensor | None:
        """Attention of a contiguous Q|K|V tensor [..., 3 x hidden] -> [..., hidden]: bf16, or the
        tile input of ``feeds`` (the attention output layer); None where the kernel does not apply."""
        tokens, dim = qkv[..., 0].numel(), qkv.shape[-1] // (3 * heads)
        out = self._attend(qkv, tokens, heads, dim, feeds) if qkv.is_contiguous() else None
        return None if out is None else out.reshape(*qkv.shape[:-1], heads * dim)

    def _attend(
        self, qkv: torch.Tensor, tokens: int, heads: int, dim: int, feeds: AmxLinearWeights | None = None
    ) -> torch.Tensor | None:
        if qkv.dtype != torch.bfloat16 or dim not in ATTENTION_DIMS or not 0 < self.longest <= MAX_SEQUENCE:
            if self.q_scaled and self.longest:
                raise RuntimeError("amx attention: Q holds 1/sqrt(head dim), so only the AMX kernel may attend")
            return None
        hidden = heads * dim
        scale, zero, kind = None, 0, AS_BF16
        if feeds is not None:  # whole row blocks for the next layer's tiles; a zero elsewhere, on its grid
            # (the padding rows past `tokens` only reach output rows the next layer never stores)
            kind = TILE_KINDS[feeds.input_dtype]
            if kind == AS_U8:
                scale, zero = feeds.in_scale.data_ptr(), feeds.zero_point
            out = block_rows(tokens, hidden, feeds.input_dtype, fill=None if self.covered else zero)
        else:
            make = torch.empty if self.covered else torch.zeros
            out = make(tokens, hidden, dtype=torch.bfloat16)
        q_mul = 1.0 if self.q_scaled else float(q_multiplier(dim))
        status = library().pb_attention(
            qkv.data_ptr(), self.starts.data_ptr(), self.lens.data_ptr(), len(self.lens), heads, dim, q_mul,
            out.data_ptr(), kind, scale, zero, self.attention_kind, 0,
        )  # fmt: skip
        if status != 0:
            raise RuntimeError(f"amx attention kernel: status {status} for {len(self.lens)} sequences of {heads}x{dim}")
        return out


def add_layernorm(
    x: torch.Tensor,
    residual: torch.Tensor,
    norm: torch.nn.LayerNorm,
    feeds: AmxLinearWeights | None = None,
    out_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """``norm(x + residual)`` computed in fp32 for x and residual fp32 or bf16 [..., H], written in
    ``out_dtype`` (default: the residual's, the residual stream's kind), in one pass over memory
    (H a multiple of 16, at most 8,192; torch's otherwise); results over 64 MiB are stored around
    the caches (no line is read before it is overwritten). Each row alone: the same bits in any
    batch. With ``feeds`` (the layer that takes the result next) the pass also writes that layer's
    tile input (uint8 on its grid, or bf16) from the unrounded result and hands it over
    (``AmxLinearWeights.hand``)."""
    hidden = x.shape[-1]
    out_dtype = out_dtype or residual.dtype
    if not {x.dtype, residual.dtype, out_dtype} <= set(FLOAT_KINDS) or hidden % 16 or hidden > 8192:
        return norm(x.float() + residual.float()).to(out_dtype)
    a, b = x.reshape(-1, hidden).contiguous(), residual.reshape(-1, hidden).contiguous()
    rows = a.shape[0]
    out = torch.empty(b.shape, dtype=out_dtype)
    gamma, beta = norm.weight.detach().float().contiguous(), norm.bias.detach().float().contiguous()
    handed = None if feeds is None else block_rows(rows, hidden, feeds.input_dtype)
    hand_kind = AS_U8 if feeds is None else TILE_KINDS[feeds.input_dtype]
    status = library().pb_add_layernorm(
        a.data_ptr(), FLOAT_KINDS[x.dtype], b.data_ptr(), FLOAT_KINDS[residual.dtype], gamma.data_ptr(), beta.data_ptr(),
        norm.eps, rows, hidden, out.data_ptr(), FLOAT_KINDS[out_dtype],
        None if handed is None else handed.data_ptr(),
        hand_kind,
        feeds.in_scale.data_ptr() if feeds is not None and hand_kind == AS_U8 else None,
        0 if feeds is None else feeds.zero_point,
    )  # fmt: skip
    if status != 0:
        raise RuntimeError(f"amx add+LayerNorm kernel: status {status} for rows of {hidden}")
    result = out.reshape(x.shape)
    if feeds is not None and handed is not None:
        feeds.hand(result, handed)
    return result
