"""The packed batch: rows of tokens holding one or more sequences, built with array operations.

Every batching strategy (packed, padded, sorted by length) produces this one type, so the
backends run all of them the same way: padded and sorted batches are packed batches with one
sequence per row (K = 1).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


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


def rows_to_matrix(
    rows: Sequence[npt.ArrayLike] | np.ndarray, max_per_pack: int | None = None
) -> np.ndarray:
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
    row_len: int = 384,
    max_per_pack: int | None = None,
) -> PackedBatch:
    """Lay the sequences of ``rows`` side by side into rows of ``row_len`` tokens.

    ``input_ids``/``segment_ids`` are [N, S] (zero-padded features of the chunk), ``lengths``
    [N]; ``rows`` indexes into them. ``max_per_pack`` fixes K (default: the fullest row).
    """
    matrix = rows_to_matrix(rows, max_per_pack)
    n_rows, width = matrix.shape
    lens = np.asarray(lengths, dtype=np.int64)
    filled = matrix >= 0
    seq_lens = np.where(filled, lens[np.where(filled, matrix, 0)], 0)
    used = seq_lens.sum(axis=1)
    if n_rows and int(used.max()) > row_len:
        worst = int(np.argmax(used))
        raise ValueError(f"row {worst} holds {int(used[worst])} tokens, more than {row_len}")

    ids_out = np.zeros((n_rows, row_len), dtype=np.int32)
    seg_out = np.zeros((n_rows, row_len), dtype=np.int32)
    pos_out = np.zeros((n_rows, row_len), dtype=np.int32)
    slot_lens = seq_lens.reshape(-1)
    total = int(slot_lens.sum())
    if total:
        # one entry per real token: where it comes from and where it goes
        starts_in_row = np.cumsum(seq_lens, axis=1) - seq_lens
        dest_start = (np.arange(n_rows)[:, None] * row_len + starts_in_row).reshape(-1)
        src_start = np.where(filled, matrix, 0).reshape(-1) * input_ids.shape[1]
        first_token = np.cumsum(slot_lens) - slot_lens
        position = np.arange(total) - np.repeat(first_token, slot_lens)
        dest = np.repeat(dest_start, slot_lens) + position
        src = np.repeat(src_start, slot_lens) + position
        ids_out.reshape(-1)[dest] = input_ids.reshape(-1)[src]
        seg_out.reshape(-1)[dest] = segment_ids.reshape(-1)[src]
        pos_out.reshape(-1)[dest] = position
    return PackedBatch(
        input_ids=ids_out,
        segment_ids=seg_out,
        position_ids=pos_out,
        seq_lens=seq_lens.astype(np.int32),
        sample_index=np.where(filled, matrix, -1).astype(np.int64),
    )
