"""Shared pieces of the benchmarks: SQuAD dev lengths, synthetic features, FLOP counting."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

HERE = Path(__file__).resolve().parent
LENGTHS_FILE = HERE / "data" / "squad_dev_lengths.npy"  # the 10,833 SQuAD dev feature lengths


def squad_lengths() -> np.ndarray:
    """Token lengths of the 10,833 SQuAD v1.1 dev features (max_seq_length 384)."""
    return np.load(LENGTHS_FILE).astype(np.int64)


def sample_features(count: int, seed: int = 0, vocab: int = 30522) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` features with SQuAD dev lengths (a seeded subset) and random token ids."""
    lengths_all = squad_lengths()
    rng = np.random.default_rng(seed)
    lengths = lengths_all[rng.choice(lengths_all.size, size=count, replace=False)]
    ids = np.zeros((count, 384), np.int32)
    seg = np.zeros((count, 384), np.int32)
    for i, length in enumerate(lengths):
        ids[i, :length] = rng.integers(1000, vocab, length)
        ids[i, 0] = 101
        seg[i, length // 3 : length] = 1
    return ids, seg, lengths


def token_flops(tokens: float, sum_of_squares: float, hidden: int = 1024, inter: int = 4096, layers: int = 24) -> float:
    """Multiply-add FLOPs of sequences holding ``tokens`` real tokens in all, their lengths'
    squares summing to ``sum_of_squares``: per token per layer 2*(4h^2 + 2hi) for the projections
    and FFN, plus 4*h*len for attention scores and the weighted sum."""
    return float(layers * (2.0 * (4 * hidden * hidden + 2 * hidden * inter) * tokens + 4.0 * hidden * sum_of_squares))


def real_token_flops(lengths: np.ndarray, hidden: int = 1024, inter: int = 4096, layers: int = 24) -> float:
    """``token_flops`` of sequences of these lengths."""
    lens = np.asarray(lengths, dtype=np.float64)
    return token_flops(float(lens.sum()), float((lens * lens).sum()), hidden, inter, layers)


def flops_by_format(
    lengths: np.ndarray, precision: str, hidden: int = 1024, inter: int = 4096, layers: int = 24
) -> dict[str, float]:
    """``real_token_flops`` split by the format each part runs in (``split_by_format``)."""
    lens = np.asarray(lengths, dtype=np.float64)
    return split_by_format(float(lens.sum()), float((lens * lens).sum()), precision, hidden, inter, layers)


def work_formats(precision: str, options: Mapping[str, Any]) -> str:
    """The precision whose formats a recipe's FLOPs run in (``split_by_format``): its own, except
    int8-bf16 with torch option kept=int12, whose kept layers run 12-bit x int8 products
    ("int8-int12", its yardstick the int12 layer's own matmul), or kept=int8-rows or int8-hybrid,
    all of whose layers then run int8 products ("int8")."""
    from packed_bert.backends.amx_kernels import INT8_KEPT

    kept = str(options.get("kept", "bf16"))
    if precision != "int8-bf16" or kept == "bf16":
        return precision
    return "int8" if kept in INT8_KEPT else f"int8-{kept}"


def split_by_format(
    tokens: float, sum_of_squares: float, precision: str, hidden: int = 1024, inter: int = 4096, layers: int = 24
) -> dict[str, float]:
    """``token_flops`` split by the format each part runs in: int8-bf16, int8-fp32 and int8-int12
    (``work_formats``) keep the FFN output layer in bf16, fp32 or int12 and run the rest in int8
    (attention counted with int8, as a plain int8 recipe's is); any other precision runs all of it
    in its own."""
    total = token_flops(tokens, sum_of_squares, hidden, inter, layers)
    if not precision.startswith("int8-"):
        return {precision: total}
    ffn_output = layers * 2.0 * hidden * inter * tokens
    return {"int8": total - ffn_output, precision.removeprefix("int8-"): ffn_output}


class Probe(Protocol):
    """A matmul yardstick: its FLOP/s now (``matmul_peak.MatmulProbe``, ``CompositeProbe``)."""

    def rate(self) -> float: ...


class CompositeProbe:
    """The peak of a recipe whose FLOPs run in several formats: each format's probe read in turn,
    the parts' times added (``shares``: each format's fraction of the FLOPs)."""

    def __init__(self, probes: dict[str, Probe], shares: dict[str, float]) -> None:
        self.probes, self.shares = probes, shares

    def rate(self) -> float:
        return 1.0 / sum(share / self.probes[p].rate() for p, share in self.shares.items())


PERFORMANCE_DOC = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def write_doc_section(begin: str, end: str, text: str, doc: Path = PERFORMANCE_DOC) -> None:
    """Put ``text`` between the ``begin``/``end`` markers of ``doc`` (appended when absent)."""
    current = doc.read_text(encoding="utf-8") if doc.exists() else "# Performance\n"
    block = f"{begin}\n{text.rstrip()}\n{end}"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        current = head + block + rest.split(end, 1)[1]
    else:
        current = current.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(current, encoding="utf-8")


def cpu_label() -> str:
    """The CPU a figure ran on, for a table's caption: model, matrix flags and class."""
    from packed_bert.backends.cpu_class import cpu_class, cpu_generation, cpu_model, isa_cap, matrix_flags

    generation = cpu_generation()
    model = f"{cpu_model()}, {generation}" if generation else cpu_model()
    label = f"{model} ({', '.join(matrix_flags()) or 'no matrix extensions'}; class {cpu_class()})"
    cap = isa_cap()
    return f"{label}, EMULATED: oneDNN capped at {cap} on a CPU with more" if cap else label


def class_markers(name: str) -> tuple[str, str]:
    """The begin/end markers of benchmark ``name``'s section for this machine's CPU class: the
    winner depends on the class, so each class keeps its own table (``backends/cpu_class.py``)."""
    from packed_bert.backends.cpu_class import cpu_class

    cls = cpu_class()
    return f"<!-- {name}:{cls}:begin -->", f"<!-- {name}:{cls}:end -->"


def publish(table: str, name: str, write_docs: bool) -> None:
    """Print a benchmark's table and, with ``--write-docs``, keep it as this CPU class's section
    ``name`` of docs/performance.md."""
    print(table)
    if write_docs:
        write_doc_section(*class_markers(name), table)


def run_main(main: Callable[[], int]) -> int:
    """A benchmark's entry point: bad input (a missing dataset, an unknown recipe) is one line on
    stderr and a non-zero exit, as with the ``packed-bert`` command, not a traceback."""
    from packed_bert.errors import UserError, one_line

    try:
        return main()
    except UserError as exc:
        print(f"{Path(sys.argv[0]).name}: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
