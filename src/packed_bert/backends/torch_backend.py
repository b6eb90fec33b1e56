"""PyTorch runner: CPU fp32/bf16 (``kernel="amx"``: bf16 in packed-bert's AMX kernels, ``torch_amx``)
and static int8 (bert-99, ``torch_int8``; ``int8-bf16`` keeps some layers in bf16 on our AMX kernels,
bert-99.9 on AMX CPUs); CUDA fp32/fp16/bf16 and fp8/int8 (bert-99), CUDA graphs for
static packed shapes, and the unpadded varlen path for sorted or arrival-order batches.

CUDA graphs: a batch of 384-token rows runs as calls of ``GRAPH_ROWS`` sizes (545 rows: 512 + 32
+ 8 with 7 blank rows), one graph per size, captured by ``warm`` before a timed run and sharing
one memory pool. On the H200 the rate hardly moves between 64 and 512 rows a call (3,756 and
3,840 samples/s), and capturing a graph per row count inside a LoadGen run cost 12% of a short
Offline run.

On the CPU a sample's logits are bit for bit the same alone, sorted, padded or packed: eagerly
every Linear layer runs on fixed 512-row tiles and attention per sequence (``torch_invariant``);
compiled (``compile=True``), every call has one shape per sequence length (``sequence_rows``).
A module passed in is copied first (converted and restructured in the copy).

One runner per device: ``infer`` reuses static buffers (CUDA graphs) and is not safe to call
from two threads at once (the device pool's per-device lock sees to that).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from packed_bert.backends._model import load
from packed_bert.backends.amx_kernels import ATTENTION_KINDS, INT8_KEPT, KEPT_PRECISIONS
from packed_bert.backends.base import BatchLike, batch_shape
from packed_bert.backends.length_buckets import LENGTH_STEP, blank_rows, bucket_lengths
from packed_bert.backends.quantize import SMOOTHQUANT_ALPHA, Calibration, calibrated_smoothquant
from packed_bert.errors import UserError
from packed_bert.terms import CALIBRATED, MAX_SEQS_PER_ROW, SEQ_LEN, Precision

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# the residual stream's dtype on our AMX kernels (residual=NAME): each add+LayerNorm reads and writes it
RESIDUALS = {name: DTYPES[name] for name in ("fp32", "bf16")}
GRAPH_ROWS = (512, 256, 128, 64, 32, 16, 8)  # row counts of the CUDA graphs; a batch runs as calls of these
CALL_ROWS = 16  # rows per call of a compiled batch-invariant runner not told otherwise (nor warmed)


class TorchRunner:
    """``model_spec`` (random | tiny | path | module) on ``device`` (cpu | cuda[:N])."""

    name = "torch"
    simulated = False

    def __init__(
        self,
        model_spec: str | torch.nn.Module = "random",
        precision: str = "fp32",
        device: str = "cpu",
        *,
        cuda_graphs: bool | None = None,
        varlen: bool | None = None,
        threads: int | None = None,
        seed: int = 0,
        variant: str | None = None,
        batch_invariant: bool | None = None,
        compile: bool = False,  # noqa: A002 - the option's name on the command line
        freezing: bool = False,
        rows: int | None = None,
        calibration: Calibration | None = None,
        kernel: str | None = None,
        bf16_layers: str | Sequence[str] = (),
        residual: str = "fp32",
        attention: str = "bf16",
        kept: str = "bf16",
    ) -> None:
        if variant not in (None, "mixed") or (variant == "mixed" and precision != "bf16"):
            raise UserError(f"torch backend: variant must be 'mixed' (bf16 only), got {variant!r} for {precision}")
        self.precision = precision
        self.device = device
        self._dev = torch.device(device)
        cuda = self._dev.type == "cuda"
        if cuda and not torch.cuda.is_available():
            raise UserError(f"torch backend: device {device!r} asked for, but this torch has no CUDA")
        if threads:
            torch.set_num_threads(threads)
        model = load(model_spec, seed).eval()
        cpu_int8 = precision in CALIBRATED and not cuda  # batch-invariant by construction (torch_int8), not tiled
        amx_bf16 = precision == "bf16" and not cuda and kernel == "amx"  # likewise (torch_amx)
        own_kernels = cpu_int8 or amx_bf16
        self.batch_invariant = (not cuda and variant is None) if batch_invariant is None else batch_invariant
        tiled = self.batch_invariant and not own_kernels and not compile  # torch_invariant restructures the layers
        # compiled: one call shape per sequence length (sequence_rows), ``rows`` rows per call
        self.fixed_shapes = self.batch_invariant and compile and not own_kernels
        if rows is not None and (rows < 1 or not self.fixed_shapes):
            raise UserError("torch backend: rows=N (N >= 1) is for compile=True with batch_invariant on the CPU")
        self._rows_option = rows
        self.rows = rows or CALL_ROWS
        if kernel is not None and not own_kernels:
            raise UserError(
                "torch backend: kernel=NAME chooses the CPU's int8 linear kernel (onednn or amx), or kernel=amx for bf16"
            )
        keep_bf16 = tuple(filter(None, bf16_layers.split(","))) if isinstance(bf16_layers, str) else tuple(bf16_layers)
        if precision == Precision.INT8_BF16:
            from packed_bert.model.linears import FFN_OUTPUT

            keep_bf16 = keep_bf16 or (FFN_OUTPUT,)
            if cuda or kernel != "amx":
                raise UserError("torch backend: int8-bf16 runs on packed-bert's AMX kernels: add kernel=amx (CPU)")
        elif keep_bf16:
            raise UserError("torch backend: bf16_layers names the layers precision int8-bf16 keeps in bf16")
        if kept not in KEPT_PRECISIONS:
            raise UserError(f"torch backend: kept must be one of {', '.join(KEPT_PRECISIONS)}, got {kept!r}")
        if kept != "bf16" and precision != Precision.INT8_BF16:
            raise UserError(f"torch backend: kept={kept} sets the precision of the layers int8-bf16 keeps out of int8")
        if residual not in RESIDUALS:
            raise UserError(f"torch backend: residual must be one of {', '.join(RESIDUALS)}, got {residual!r}")
        if residual != "fp32" and kernel != "amx":
            raise UserError(
                "torch backend: residual=bf16 keeps the residual stream in bf16 on our AMX kernels: add kernel=amx"
            )
        residual_dtype = RESIDUALS[residual]
        if attention not in ATTENTION_KINDS:
            raise UserError(f"torch backend: attention must be one of {', '.join(ATTENTION_KINDS)}, got {attention!r}")
        if attention != "bf16" and kernel != "amx":
            raise UserError(
                f"torch backend: attention={attention} runs attention's products on our AMX kernels: add kernel=amx"
            )
        if own_kernels and (compile or variant is not None):
            raise UserError(
                f"torch backend: {precision} on the CPU's int8 or AMX kernels runs eagerly (kernel calls); drop compile=True"
                " and variant"
            )
        if self.batch_invariant and (cuda or variant is not None):
            raise UserError("torch backend: batch_invariant runs on the CPU, without a variant")
        if isinstance(model_spec, torch.nn.Module) and not own_kernels:
            # .to() converts in place and the CPU path restructures the layers (torch_invariant):
            # the caller's module stays as it was (torch_int8 copies it itself)
            model = copy.deepcopy(model)
        self.quant_detail = ""
        if variant == "mixed":
            from packed_bert.backends.torch_mixed import bf16_matmuls

            model = model.to(device=self._dev, dtype=torch.float32)
            self.quant_detail = f", {bf16_matmuls(model)} Linear layers and attention in bf16, the rest fp32"
        elif amx_bf16:  # bf16 in our AMX kernels (torch_amx copies the module)
            from packed_bert.backends.amx_kernels import kernels_label
            from packed_bert.backends.torch_amx import bf16_model

            model = bf16_model(model, residual_dtype, attention)
            self.quant_detail = f", bf16 encoder linears and {attention} per-sequence attention in {kernels_label()}"
        elif precision in DTYPES:
            model = model.to(device=self._dev, dtype=DTYPES[precision])
        elif cpu_int8:  # static int8 with SmoothQuant (torch_int8 copies the module)
            from packed_bert.backends.amx_kernels import kernels_label
            from packed_bert.backends.torch_int8 import AMX, ONEDNN, quantize_model

            smooth, ranges = calibrated_smoothquant(model, model_spec, seed, calibration)
            kept_as = KEPT_PRECISIONS[kept]
            bounds: dict[str, float] = {}
            if kept in INT8_KEPT:  # their own alpha per layer (row_smoothing)
                from packed_bert.backends.row_smoothing import HYBRID_MARGIN, HYBRID_QUANTILE, calibrated_row_smoothing

                row_grids = calibrated_row_smoothing(model, model_spec, seed, calibration, keep_bf16)
                smooth, bounds = {**smooth, **row_grids.smooth}, row_grids.bound
                kept_as += f", SmoothQuant alpha per layer by calibration error: {row_grids.summary()}"
                if kept == "int8-hybrid":
                    kept_as += (
                        f"; fixed grids to {HYBRID_MARGIN:g}x the calibration rows' {HYBRID_QUANTILE:.0%} quantile peak"
                    )
            model = quantize_model(
                model, smooth, ranges, kernel or ONEDNN, keep_bf16, residual_dtype, attention, kept, bounds
            )
            kernel_name = kernels_label() if kernel == AMX else "oneDNN"
            kept_detail = f" ({', '.join(keep_bf16)} in {kept_as})" if keep_bf16 else ""
            self.quant_detail = (
                f", static int8 encoder linears{kept_detail} ({kernel_name} u8 x s8, SmoothQuant alpha {SMOOTHQUANT_ALPHA}, "
                f"calibrated), {attention} per-sequence attention"
            )
        elif precision in ("fp8", "int8") and cuda:
            from packed_bert.backends.cuda_quant import fp8_supported, quantize_linears

            if precision == "fp8" and not fp8_supported(self._dev):
                raise UserError(f"torch backend: {device} has no fp8 (needs compute capability 8.9+)")
            model = model.to(device=self._dev, dtype=torch.bfloat16)
            count = quantize_linears(model, precision)
            self.quant_detail = f", {count} Linear layers in {precision}"
        else:
            raise UserError(f"torch backend: precision {precision!r} is not available on {device}")
        if tiled:  # logits independent of batch-mates (torch_invariant)
            from packed_bert.backends.torch_invariant import make_batch_invariant

            make_batch_invariant(model)
        if freezing and (cuda or not compile):
            raise UserError("torch backend: freezing=True is Inductor's CPU pass; it needs compile=True on the cpu")
        self.freezing = freezing
        self.compiled = compile
        if freezing:  # a forward compiled earlier in this process without freezing would be reused as is
            torch._dynamo.reset()
        self.model: Any = torch.compile(model, dynamic=True) if compile else model
        self._whole: Callable[[BatchLike], np.ndarray | None] | None = None  # the whole pass in one kernel call
        if own_kernels and kernel == "amx":
            from packed_bert.backends.amx_forward import AmxForward

            self._whole = AmxForward.of(model)
        self.static_shape = bool(cuda if cuda_graphs is None else cuda_graphs) and cuda
        self.varlen = bool(cuda if varlen is None else varlen)
        # compiled or graphed: the harness warms it up before any timed run (``warm``)
        self.prepares_per_shape = compile or self.static_shape
        self._graphs: dict[int, _Graph] = {}
        self._graph_pool: Any = None
        self.detail = (
            f"torch {torch.__version__} {precision} on {device}"
            f"{', CUDA graphs for [R,{SEQ_LEN}] batches' if self.static_shape else ''}"
            f"{', varlen for other shapes' if self.varlen else ''}{self.quant_detail}"
            f"{', the residual stream in bf16' if residual == 'bf16' else ''}"
            f"{', tiled matmuls and per-sequence attention (batch-invariant)' if tiled else ''}"
            f"{', torch.compile (dynamic shapes)' if compile else ''}"
            f"{', frozen (weights packed for oneDNN, epilogues fused)' if freezing else ''}"
            f"{', sequences one per row, one call shape per length step (batch-invariant)' if self.fixed_shapes else ''}"
        )

    def infer(self, batch: BatchLike) -> np.ndarray:
        rows, length = batch_shape(batch)
        with torch.inference_mode():
            if self.static_shape and length == SEQ_LEN:
                return self._run_graphs(batch)
            if self.varlen and self._dev.type == "cuda":
                return self._run_varlen(batch)
            return self._run_rows(batch)

    @property
    def computes_padding(self) -> bool:
        """Whether a batch's positions outside every sequence cost compute: not where packed-bert's
        fused AMX encoder runs (it runs the sequences' tokens alone, in any layout)."""
        from packed_bert.backends.amx_encoder import AmxEncoder

        encoder = getattr(getattr(self.model, "bert", None), "encoder", None)
        return not (isinstance(encoder, AmxEncoder) and encoder.fused)

    @property
    def call_rows(self) -> int | None:
        """Rows per call with fixed call shapes (``None``: calls take each batch as it comes)."""
        return self.rows if self.fixed_shapes else None

    def warm(self, rows: int) -> int:
        """Prepare before a timed run. CUDA graphs: capture the graph of every ``GRAPH_ROWS``
        size a batch of up to ``rows`` rows runs as (compiling first, with ``compile=True``).
        Compiled (``compile=True``: the first call compiles, 30-40 s for BERT-Large on the CPU,
        75 s on the H200): one blank batch of ``rows`` rows and one of a single row (Dynamo
        compiles a size of 1 apart); lengths are dynamic. A batch-invariant runner's calls have
        ``rows`` rows from now on (unless its ``rows`` option says otherwise): it compiles that size
        and runs each of its call shapes once (oneDNN's first call at a row count costs more, which
        a short run pays at every length step). Returns how many batches ran (0: nothing to do)."""
        if self.static_shape:
            sizes = [size for size in GRAPH_ROWS if size <= max(rows, GRAPH_ROWS[-1])]
            # as ``infer`` does: with autograd on, a capture keeps every activation for a backward
            # pass (BERT-Large fp16 ran out of the H200's 140 GB) and compiling traces a backward
            with torch.inference_mode():
                for size in sizes:
                    self._graph_for(size)
            return len(sizes)
        if not self.compiled:
            return 0
        if self.fixed_shapes:
            self.rows = self._rows_option or rows
            lengths = bucket_lengths(LENGTH_STEP)
            for length in lengths:
                self.infer(blank_rows(self.rows, length))
            return len(lengths)
        sizes = sorted({rows, 1})
        for count in sizes:
            self.infer(blank_rows(count, 2 * LENGTH_STEP))
        return len(sizes)

    def _tensors(self, batch: BatchLike) -> list[torch.Tensor]:
        # compiled: one slot count for sorted and packed batches (Dynamo compiles a size of 1 apart)
        seq_lens = all_slots(batch.seq_lens) if self.compiled else batch.seq_lens
        arrays = (batch.input_ids, batch.segment_ids, batch.position_ids, seq_lens)
        return [torch.from_numpy(np.ascontiguousarray(a)).to(self._dev, non_blocking=True) for a in arrays]

    def _run_rows(self, batch: BatchLike) -> np.ndarray:
        if self.fixed_shapes:
            return self._run_sequences(batch)
        return self._forward(batch)

    def _run_sequences(self, batch: BatchLike) -> np.ndarray:
        """Every sequence in its own row, ``self.rows`` rows a call, all of one ``LENGTH_STEP`` length."""
        from packed_bert.backends.sequence_rows import gather, plan_calls, scatter

        rows, length = batch_shape(batch)
        out = np.zeros((rows, length, 2), np.float32)
        for call in plan_calls(batch.seq_lens, self.rows, LENGTH_STEP):
            scatter(out, call, self._forward(gather(batch, call, self.rows)))
        return out

    def _forward(self, batch: BatchLike) -> np.ndarray:
        logits = self._whole(batch) if self._whole is not None else None
        if logits is not None:
            return logits
        if self.freezing:  # compiling happens at a call (the first, or a new shape): freeze there
            import torch._inductor.config as inductor_config

            with inductor_config.patch(freezing=True):
                out = self.model(*self._tensors(batch))
        else:
            out = self.model(*self._tensors(batch))
        return out.float().cpu().numpy()

    def _run_varlen(self, batch: BatchLike) -> np.ndarray:
        from packed_bert.packing import to_varlen, varlen_to_rows

        vb = to_varlen(batch)  # type: ignore[arg-type]
        ids, seg, pos, cu = (
            torch.from_numpy(np.ascontiguousarray(a)).to(self._dev, non_blocking=True)
            for a in (vb.input_ids, vb.segment_ids, vb.position_ids, vb.cu_seqlens)
        )
        out = self.model.forward_varlen(ids, seg, pos, cu, vb.max_seqlen)
        return varlen_to_rows(batch, out.float().cpu().numpy())  # type: ignore[arg-type]

    @property
    def graph_rows(self) -> tuple[int, ...]:
        """Row counts of the CUDA graphs captured so far, largest first."""
        return tuple(sorted(self._graphs, reverse=True))

    def _run_graphs(self, batch: BatchLike) -> np.ndarray:
        arrays = (batch.input_ids, batch.segment_ids, batch.position_ids, all_slots(batch.seq_lens))
        parts = [
            self._graph_for(size).run([a[start : start + count] for a in arrays])
            for start, count, size in graph_calls(batch.input_ids.shape[0])
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _graph_for(self, rows: int) -> _Graph:
        graph = self._graphs.get(rows)
        if graph is None:
            if self._graph_pool is None:
                self._graph_pool = torch.cuda.graph_pool_handle()
            graph = _Graph(self.model, self._dev, rows, SEQ_LEN, MAX_SEQS_PER_ROW, self._graph_pool)
            self._graphs[rows] = graph
        return graph


def all_slots(seq_lens: np.ndarray) -> np.ndarray:
    """``seq_lens`` [R, K] widened with empty slots to [R, MAX_SEQS_PER_ROW]."""
    return np.pad(seq_lens, ((0, 0), (0, MAX_SEQS_PER_ROW - seq_lens.shape[1])))


def graph_calls(rows: int) -> list[tuple[int, int, int]]:
    """(first row, rows, graph size) of each call a batch of ``rows`` 384-token rows runs as:
    the largest ``GRAPH_ROWS`` sizes that fit, the rest in the smallest (padded with blank rows)."""
    calls: list[tuple[int, int, int]] = []
    start = 0
    for size in GRAPH_ROWS:
        while rows - start >= size:
            calls.append((start, size, size))
            start += size
    if start < rows:
        calls.append((start, rows - start, GRAPH_ROWS[-1]))
    return calls


class _Graph:
    """One captured forward pass for [rows, length] inputs with ``slots`` sequences per row; the
    graphs of one runner share ``pool`` (they never run at once: one thread per runner)."""

    def __init__(
        self, model: torch.nn.Module, device: torch.device, rows: int, length: int, slots: int, pool: Any
    ) -> None:
        self.rows = rows
        self.inputs = [torch.zeros(rows, length, dtype=torch.int32, device=device) for _ in range(3)]
        self.seq_lens = torch.zeros(rows, slots, dtype=torch.int32, device=device)
        self.host_out = torch.empty(rows, length, 2, dtype=torch.float32).pin_memory()
        args: list[Any] = [*self.inputs, self.seq_lens]
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                model(*args)
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.output = model(*args).float()

    def run(self, arrays: list[np.ndarray]) -> np.ndarray:
        """``arrays``: input ids, segment ids, positions [r, length] and seq_lens [r, slots], r <= rows."""
        rows = arrays[0].shape[0]
        for dst, src in zip([*self.inputs, self.seq_lens], arrays, strict=True):
            dst[:rows].copy_(torch.from_numpy(np.ascontiguousarray(src)), non_blocking=True)
            if rows < self.rows:
                dst[rows:].zero_()
        self.graph.replay()
        self.host_out.copy_(self.output, non_blocking=False)
        return self.host_out[:rows].numpy().copy()
