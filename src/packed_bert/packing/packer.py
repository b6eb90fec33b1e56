"""Shortest-pack-first histogram packing (SPFHP) of sequence lengths into fixed-length rows.

The packer works on the histogram of lengths, not on the sequences one by one: lengths are
taken from the longest to the shortest, and all sequences of one length are placed together
into the open packs whose free space fits them most tightly (best fit; the fullest pack
first). Packs that are full or already hold ``max_per_pack`` sequences are closed; sequences
that fit nowhere open new packs. Packs are kept as *strategies* (a tuple of lengths and a
count of packs that share it), so the work grows with the number of distinct lengths and
strategies, not with the number of sequences. Only at the end are real sequence indices
dealt out to the strategies, with array operations.
"""

from bisect import bisect_left, insort

import numpy as np
import numpy.typing as npt

from packed_bert.terms import MAX_SEQS_PER_ROW, SEQ_LEN

Strategy = tuple[int, ...]


def _validate(lengths: npt.ArrayLike, max_per_pack: int, row_len: int) -> np.ndarray:
    arr = np.asarray(lengths)
    if arr.ndim != 1:
        raise ValueError(f"lengths must be one-dimensional, got shape {arr.shape}")
    if max_per_pack < 1:
        raise ValueError(f"max_per_pack must be at least 1, got {max_per_pack}")
    if row_len < 1:
        raise ValueError(f"row_len must be at least 1, got {row_len}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 1 or arr.max() > row_len):
        raise ValueError(f"sequence lengths must lie in 1..{row_len}, got {int(arr.min())}..{int(arr.max())}")
    return arr


def pack_strategies(
    histogram: np.ndarray, max_per_pack: int = MAX_SEQS_PER_ROW, row_len: int = SEQ_LEN
) -> list[tuple[Strategy, int]]:
    """Pack a length histogram (``histogram[n]`` sequences of length ``n``).

    Returns ``(strategy, count)`` pairs: ``count`` packs each holding sequences of the lengths
    in ``strategy`` (longest first). Deterministic.
    """
    # open_packs[space] = {strategy: count} for packs with `space` tokens free and room for more
    open_packs: dict[int, dict[Strategy, int]] = {}
    spaces: list[int] = []  # sorted keys of open_packs
    closed: dict[Strategy, int] = {}

    def add(strategy: Strategy, space: int, count: int) -> None:
        if len(strategy) >= max_per_pack or space == 0:
            closed[strategy] = closed.get(strategy, 0) + count
            return
        group = open_packs.get(space)
        if group is None:
            group = open_packs[space] = {}
            insort(spaces, space)
        group[strategy] = group.get(strategy, 0) + count

    for length in range(len(histogram) - 1, 0, -1):
        todo = int(histogram[length])
        while todo:
            i = bisect_left(spaces, length)
            if i == len(spaces):  # no open pack has room: open new ones, filled with this length
                per_pack = min(max_per_pack, row_len // length)
                full, rest = divmod(todo, per_pack)
                if full:
                    add((length,) * per_pack, row_len - per_pack * length, full)
                if rest:
                    add((length,) * rest, row_len - rest * length, 1)
                break
            space = spaces[i]
            group = open_packs[space]
            taken: list[tuple[Strategy, int]] = []
            for strategy, count in group.items():
                use = min(count, todo)
                taken.append((strategy, use))
                todo -= use
                if not todo:
                    break
            for strategy, use in taken:
                left = group[strategy] - use
                if left:
                    group[strategy] = left
                else:
                    del group[strategy]
            if not group:
                del open_packs[space]
                spaces.pop(i)
            for strategy, use in taken:
                add((*strategy, length), space - length, use)

    result = list(closed.items())
    for space in reversed(spaces):  # fullest open packs first
        result.extend(open_packs[space].items())
    return result


def pack_matrix(lengths: npt.ArrayLike, max_per_pack: int = MAX_SEQS_PER_ROW, row_len: int = SEQ_LEN) -> np.ndarray:
    """Pack sequences into rows; int64 ``[rows, max_per_pack]`` of chunk indices, -1 = empty.

    Within a row the sequences are ordered longest first; rows come in strategy order.
    """
    arr = _validate(lengths, max_per_pack, row_len)
    if arr.size == 0:
        return np.empty((0, max_per_pack), dtype=np.int64)
    histogram = np.bincount(arr, minlength=row_len + 1)
    strategies = pack_strategies(histogram, max_per_pack, row_len)

    # Slot table: one entry per (strategy, slot) with its length and number of packs.
    n_rows = sum(count for _, count in strategies)
    slot_len = np.zeros((len(strategies), max_per_pack), dtype=np.int64)
    counts = np.fromiter((c for _, c in strategies), dtype=np.int64, count=len(strategies))
    for s, (strategy, _) in enumerate(strategies):
        slot_len[s, : len(strategy)] = strategy
    row_slot_len = np.repeat(slot_len, counts, axis=0)  # [rows, K] length per slot, 0 = empty

    # Deal out indices: for each length, its indices in chunk order, consumed row by row.
    order = np.argsort(arr, kind="stable")
    first_of_length = np.concatenate(([0], np.cumsum(histogram)))[:-1]
    flat_len = row_slot_len.reshape(-1)
    filled = flat_len > 0
    used_len = flat_len[filled]
    # rank of each filled slot among the slots of the same length, in row-major order
    by_len = np.argsort(used_len, kind="stable")
    rank = np.empty_like(by_len)
    sorted_len = used_len[by_len]
    group_start = np.searchsorted(sorted_len, sorted_len, side="left")
    rank[by_len] = np.arange(by_len.size) - group_start
    rows = np.full(n_rows * max_per_pack, -1, dtype=np.int64)
    rows[filled] = order[first_of_length[used_len] + rank]
    return rows.reshape(n_rows, max_per_pack)


def pack(lengths: npt.ArrayLike, max_per_pack: int = MAX_SEQS_PER_ROW, row_len: int = SEQ_LEN) -> list[np.ndarray]:
    """Pack sequences into rows of ``row_len`` tokens with at most ``max_per_pack`` each.

    Returns one int64 array per row: the indices (into ``lengths``) of the sequences it holds.
    """
    matrix = pack_matrix(lengths, max_per_pack, row_len)
    sizes = (matrix >= 0).sum(axis=1)
    flat = matrix[matrix >= 0]
    return np.split(flat, np.cumsum(sizes)[:-1]) if sizes.size else []


def pack_order(
    lengths: npt.ArrayLike, max_per_pack: int = MAX_SEQS_PER_ROW, row_len: int = SEQ_LEN
) -> tuple[np.ndarray, np.ndarray]:
    """The sequences in row order of one packing of all of them, and where each row ends.

    ``order`` (int64) lists the indices row by row; ``row_ends`` are the positions in ``order``
    just after each row. Cutting ``order`` only at ``row_ends`` gives chunks of whole rows, and
    packing such a chunk again needs no more rows than it held here. Rows holding one, two and
    three sequences are spread evenly through the order, so chunks of equal sample counts
    hold about equal numbers of rows (equal work for a device that costs a row per row).
    """
    matrix = mix_rows(pack_matrix(lengths, max_per_pack, row_len))
    return matrix[matrix >= 0], np.cumsum((matrix >= 0).sum(axis=1))


def mix_rows(matrix: np.ndarray) -> np.ndarray:
    """``matrix``'s rows reordered so every stretch holds its share of each row kind (rows
    with the same number of sequences): a row's key is its rank within its kind over the
    kind's size, and rows go in key order."""
    kind = (matrix >= 0).sum(axis=1)
    by_kind = np.argsort(kind, kind="stable")
    counts = np.bincount(kind)
    first = np.cumsum(counts) - counts
    rank = np.empty(kind.size, dtype=np.float64)
    rank[by_kind] = np.arange(kind.size) - first[kind[by_kind]]
    key = (rank + 0.5) / counts[kind]
    return matrix[np.argsort(key, kind="stable")]
