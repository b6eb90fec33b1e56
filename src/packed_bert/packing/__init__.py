"""Packing several sequences into one fixed-length row, and the batches every strategy builds.

Pure numpy: no runtime is imported here.
"""

from packed_bert.packing.batch import PackedBatch, build_batch, rows_to_matrix
from packed_bert.packing.infer import batches_of, infer_sequences
from packed_bert.packing.packer import mix_rows, pack, pack_matrix, pack_order, pack_strategies
from packed_bert.packing.stats import PackingStats, packing_stats
from packed_bert.packing.strategies import (
    pack_batch,
    padded_batches,
    sorted_batches,
    sorted_groups,
)
from packed_bert.packing.unpack import unpack
from packed_bert.packing.varlen import VarlenBatch, to_varlen, varlen_to_rows

__all__ = [
    "PackedBatch",
    "PackingStats",
    "VarlenBatch",
    "batches_of",
    "build_batch",
    "pack",
    "pack_batch",
    "pack_matrix",
    "pack_order",
    "infer_sequences",
    "mix_rows",
    "pack_strategies",
    "packing_stats",
    "padded_batches",
    "rows_to_matrix",
    "sorted_batches",
    "sorted_groups",
    "to_varlen",
    "unpack",
    "varlen_to_rows",
]
