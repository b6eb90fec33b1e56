"""The packed batch: rows of tokens holding one or more sequences, built with array operations.

Every batching strategy (packed, padded, sorted by length) produces this one type, so the
backends run all of them the same way: padded and sorted batches are packed batches with one
sequence per row (K = 1).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from packed_bert.terms import SEQ_LEN


@dataclass(frozen=True)
class PackedBatch:
    """Rows of ``L`` tokens, each holding up to ``K`` sequences back to back.

    ``input_ids``, ``segment_ids``, ``position_ids``: int32 [R, L] (position ids restart at 0
    for each sequence; padding is 0 everywhere). ``seq_lens``: int32 [R, K], 0 = empty slot.
    ``sample_index``: int64 [R, K], the position of each sequence in the chunk it was built
    from; -1 = empty slot.
    """

    input_ids: np.ndarray
    segment_ids: np.ndarray
    position_ids: np.ndarray
    seq_lens: np.ndarray
    sample_index: np.ndarray

    @property
    def num_rows(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def row_len(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def max_per_pack(self) -> int:
        return int(self.seq_lens.shape[1])

    @property
    def num_sequences(self) -> int:
        return int((self.sample_index >= 0).sum())

    @property
    def real_tokens(self) -> int:
        return int(self.seq_lens.sum(dtype=np.int64))

    @property
    def token_efficiency(self) -> float:
        """Real tokens over all token slots computed (1.0 = no padding)."""
        total = self.input_ids.size
        return self.real_tokens / total if total else 1.0


def rows_to_matrix(rows: Sequence[npt.ArrayLike] | np.ndarray, max_per_pack: int | None = None) -> np.ndarray:
    """Rows of sequence indices (a list of arrays, or a matrix with -1 holes) as int64 [R, K]."""
    if isinstance(rows, np.ndarray) and rows.ndim == 2:
        matrix = rows.astype(np.int64, copy=False)
    else:
        arrays = [np.asarray(r, dtype=np.int64).reshape(-1) for r in rows]
        sizes = np.fromiter((a.size for a in arrays), dtype=np.int64, count=len(arrays))
        width = int(sizes.max()) if sizes.size else 1
        matrix = np.full((len(arrays), width), -1, dtype=np.int64)
        if arrays:
            flat = np.concatenate(arrays)
            row_of = np.repeat(np.arange(len(arrays)), sizes)
            col = np.arange(flat.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            matrix[row_of, col] = flat
    if max_per_pack is not None:
        if matrix.shape[1] > max_per_pack:
            raise ValueError(f"a row holds {matrix.shape[1]} sequences, more than {max_per_pack}")
        pad = max_per_pack - matrix.shape[1]
        if pad:
            matrix = np.pad(matrix, ((0, 0), (0, pad)), constant_values=-1)
    return matrix


def build_batch(
    rows: Sequence[npt.ArrayLike] | np.ndarray,
    input_ids: np.ndarray,
    segment_ids: np.ndarray,
    lengths: npt.ArrayLike,
    row_len: int = SEQ_LEN,
    max_per_pack: int | None = None,
    source_index: np.ndarray | None = None,
) -> PackedBatch:
    """Lay the sequences of ``rows`` side by side into rows of ``row_len`` tokens.

    ``rows`` holds positions in the chunk (``sample_index`` keeps them). ``source_index`` maps a
    chunk position to its row in ``input_ids``/``segment_ids`` [N, S] and ``lengths`` [N]
    (default: the identity, i.e. they hold the chunk itself). ``max_per_pack`` fixes K
    (default: the fullest row). Whole rows are copied with boolean masks, no per-token indices.
    """
    matrix = rows_to_matrix(rows, max_per_pack)
    n_rows = matrix.shape[0]
    filled = matrix >= 0
    local = np.where(filled, matrix, 0)
    source = local if source_index is None else np.asarray(source_index, dtype=np.int64)[local]
    lens = np.asarray(lengths, dtype=np.int64)
    seq_lens = np.where(filled, lens[source], 0)
    used = seq_lens.sum(axis=1)
    if n_rows and int(used.max()) > row_len:
        worst = int(np.argmax(used))
        raise ValueError(f"row {worst} holds {int(used[worst])} tokens, more than {row_len}")

    seqs = source[filled]  # row-major slot order = the order tokens are laid out in a row
    cols = min(row_len, input_ids.shape[1])
    pos = _positions(row_len)
    src_mask = pos[None, :cols] < seq_lens[filled][:, None]  # [S, cols]
    dst_mask = pos[None, :] < used[:, None]  # [R, row_len]
    outputs = []
    for arr in (input_ids, segment_ids):
        out = np.zeros((n_rows, row_len), dtype=np.int32)
        out[dst_mask] = arr[seqs, :cols][src_mask]
        outputs.append(out)
    positions = np.zeros((n_rows, row_len), dtype=np.int32)
    positions[dst_mask] = np.broadcast_to(pos[:cols], (seqs.size, cols))[src_mask]
    return PackedBatch(
        input_ids=outputs[0],
        segment_ids=outputs[1],
        position_ids=positions,
        seq_lens=seq_lens.astype(np.int32),
        sample_index=np.where(filled, matrix, -1).astype(np.int64),
    )


def _positions(row_len: int) -> np.ndarray:
    return np.arange(row_len, dtype=np.int32)
