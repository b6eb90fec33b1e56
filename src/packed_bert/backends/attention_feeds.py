"""The host-side inputs of per-sequence attention in the fused ONNX graphs (``onnx_fused``).

Attention per sequence gathers each sequence's tokens out of the packed rows into blocks
[sequences, block length], runs attention on the blocks and gathers the outputs back to token
order. The host computes the gather indices from ``seq_lens``, once per batch, two ways:

- ``sequence_feeds`` (graph ``sequence``, read by OpenVINO and ONNX Runtime): one call per
  bucket of ``BUCKET`` tokens, a sequence's block its own length rounded up to the bucket, each
  padding key masked by an additive bias. OpenVINO compiles a kernel per input shape, so the
  block lengths are few and fixed; a sequence's block depends on its own length only.
- ``slot_feeds`` (graph ``sequence-ort``, ONNX Runtime's ``MultiHeadAttention``): ``SLOTS``
  calls whose block lengths the host picks per batch (``slot_groups``), each sequence's length
  its key padding mask. ONNX Runtime gives a sequence's tokens the same bits whatever its block
  length (the padding keys' weights are exact zeros; checked in tests/test_sequence_attention.py),
  so blocks need not be rounded: one sample alone runs at its own length, and a batch's
  sequences fall into the few lengths that waste the least.
"""

from __future__ import annotations

import numpy as np

from packed_bert.backends.onnx_export import INPUT_NAMES

ORT_SEQUENCE = "sequence-ort"  # per-sequence attention in ONNX Runtime's own operators, on slots
PER_SEQUENCE = ("sequence", ORT_SEQUENCE)  # the graphs with per-sequence attention (``sequence``: buckets)
BUCKET = 64  # ``sequence``: per-sequence attention blocks are this many tokens long, or a multiple
BUCKETS = tuple(range(BUCKET, 384 + 1, BUCKET))
SLOTS = 6  # ``sequence-ort``: attention calls per layer, each over blocks of one length
# ONNX Runtime's MultiHeadAttention on a block of b tokens costs about b * (b + SLOT_ROW_COST): the
# products grow as b^2, the transposes in and out and the softmax as b (1.32, AMD Zen 3, 2 threads:
# 1.12 ms a 156-token block in a call of 16, 2.7 ms for one 285-token block)
SLOT_ROW_COST = 250
MASKED = -10000.0  # the bias of a padding key: its softmax weight underflows to 0


def graph_feeds(batch: object, attention: str = "mask") -> dict[str, np.ndarray]:
    """The graph's inputs for a packed batch (int32, by ``INPUT_NAMES``), with the per-sequence
    attention's gather indices for a graph whose ``attention`` is one of ``PER_SEQUENCE``."""
    feeds = {n: np.ascontiguousarray(getattr(batch, n), dtype=np.int32) for n in INPUT_NAMES}
    row_len = feeds[INPUT_NAMES[0]].shape[1]
    if attention == ORT_SEQUENCE:
        feeds.update(slot_feeds(feeds[INPUT_NAMES[3]], row_len))
    elif attention in PER_SEQUENCE:
        feeds.update(sequence_feeds(feeds[INPUT_NAMES[3]], row_len))
    return feeds


def _sequences(seq_lens: np.ndarray, row_len: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(length, flat first-token index) of each sequence of the batch, and the batch's token count."""
    lens = np.asarray(seq_lens, dtype=np.int64)
    rows = lens.shape[0]
    starts = np.cumsum(lens, axis=1) - lens + np.arange(rows)[:, None] * row_len
    keep = lens.ravel() > 0
    return lens.ravel()[keep], starts.ravel()[keep], rows * row_len


def _blocks(lens: np.ndarray, starts: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """([S, length] flat token index of each block position, padding at index 0; [S, length] real)."""
    pos = np.arange(length)
    valid = pos[None, :] < lens[:, None]
    return np.where(valid, starts[:, None] + pos[None, :], 0), valid


def _scatter(blocks: list[tuple[np.ndarray, np.ndarray]], tokens: int) -> np.ndarray:
    """``attn_scatter`` [tokens]: where each real token's output sits in the ``_blocks`` (index,
    real) concatenated in the graph's order; padding tokens: 0."""
    scatter = np.zeros(tokens, np.int64)
    offset = 0
    for index, valid in blocks:
        scatter[index[valid]] = (offset + np.arange(valid.size).reshape(valid.shape))[valid]
        offset += valid.size
    return scatter


def sequence_feeds(seq_lens: np.ndarray, row_len: int) -> dict[str, np.ndarray]:
    """The bucketed per-sequence attention inputs of a batch (graph ``sequence``).

    ``attn_index_B`` [S_B, B] int64: the flat token index (row * row_len + position) of each
    token of each sequence whose length rounds up to B, padded with index 0; ``attn_bias_B``
    [S_B, B] float32: 0 for the sequence's tokens, ``MASKED`` for the padding (S_B is 0 for a bucket no
    sequence falls in: both runtimes take the empty blocks). ``attn_scatter`` [R * row_len]:
    where each token's output sits in the concatenated blocks (padding tokens: 0).
    """
    lens, starts, tokens = _sequences(seq_lens, row_len)
    bucket = np.minimum(-(-lens // BUCKET) * BUCKET, BUCKETS[-1])
    blocks = [_blocks(lens[bucket == b], starts[bucket == b], b) for b in BUCKETS]  # [S_b, b]; S_b may be 0
    feeds: dict[str, np.ndarray] = {}
    for b, (index, valid) in zip(BUCKETS, blocks, strict=True):
        feeds[f"attn_index_{b}"] = index
        feeds[f"attn_bias_{b}"] = np.where(valid, 0.0, MASKED).astype(np.float32)
    feeds["attn_scatter"] = _scatter(blocks, tokens)
    return feeds


def slot_groups(lengths: np.ndarray, slots: int = SLOTS) -> np.ndarray:
    """Where to cut ``lengths`` (ascending) into at most ``slots`` runs, each run's blocks as long
    as its longest sequence, at the least total cost (``SLOT_ROW_COST``): the ends of the runs,
    ascending, the last ``len(lengths)``. Dynamic programming over the distinct lengths (at most
    384 of them, whatever the batch), in arrays."""
    if lengths.size == 0:
        return np.zeros(0, np.int64)
    distinct, counts = np.unique(np.asarray(lengths, dtype=np.int64), return_counts=True)
    n = distinct.size
    before = np.concatenate(([0], np.cumsum(counts)))  # sequences shorter than each distinct length
    block = np.concatenate(([0.0], distinct * (distinct + float(SLOT_ROW_COST))))  # a run ending at j - 1
    i, j = np.arange(n + 1)[:, None], np.arange(n + 1)[None, :]
    run = np.where(i < j, (before[j] - before[i]) * block[None, :], np.inf)  # the run of [i, j)
    best = np.where(np.arange(n + 1) == 0, 0.0, np.inf)  # least cost of the first j in exactly k runs
    starts, totals = [], []
    for _ in range(min(slots, n)):
        cost = best[:, None] + run
        starts.append(np.argmin(cost, axis=0))
        best = cost.min(axis=0)
        totals.append(best[n])
    ends, end = [], n
    for k in range(int(np.argmin(totals)), -1, -1):  # the fewest runs of the least cost
        ends.append(int(before[end]))
        end = int(starts[k][end])
    return np.array(ends[::-1], np.int64)


def slot_feeds(seq_lens: np.ndarray, row_len: int, slots: int = SLOTS) -> dict[str, np.ndarray]:
    """The per-sequence attention inputs of a batch for graph ``sequence-ort``: its sequences in
    ascending length cut into at most ``slots`` runs (``slot_groups``).

    ``attn_index_s{k}`` [S_k, B_k] int64: the flat token index of each token of each sequence of
    run k, padded with index 0, B_k its longest sequence (an unused slot: [0, 1]);
    ``attn_lens_s{k}`` [S_k] int32: each sequence's length, the attention's key padding mask;
    ``attn_scatter`` as in ``sequence_feeds``.
    """
    lens, starts, tokens = _sequences(seq_lens, row_len)
    order = np.argsort(lens, kind="stable")
    ends = slot_groups(lens[order], slots)
    runs = [order[first:last] for first, last in zip(np.concatenate(([0], ends))[:-1], ends, strict=True)]
    blocks = [_blocks(lens[mine], starts[mine], int(lens[mine].max())) for mine in runs]  # none: no sequence
    feeds: dict[str, np.ndarray] = {}
    for k in range(slots):
        used = k < len(runs)
        feeds[f"attn_index_s{k}"] = blocks[k][0] if used else np.zeros((0, 1), np.int64)  # unused: [0, 1]
        feeds[f"attn_lens_s{k}"] = lens[runs[k] if used else order[:0]].astype(np.int32)
    feeds["attn_scatter"] = _scatter(blocks, tokens)
    return feeds
