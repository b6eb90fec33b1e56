"""``packed-bert pack-stats``: how well SQuAD features pack into 384-token rows."""

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from packed_bert.errors import UserError
from packed_bert.terms import SEQ_LEN

MAX_PER_PACK = 16
MAX_CHUNK = 10_000_000
MAX_ROW_LEN = 8192


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "pack-stats",
        help="pack SQuAD dev feature lengths and report token efficiency and speed-up",
        description="Pack the SQuAD features (whole set, or chunks as a harness batches them) "
        "and print sequences, packs, token efficiency, speed-up over padding and packing "
        "time; the last line is a JSON summary.",
    )
    parser.add_argument(
        "--max-per-pack",
        "--max_per_pack",
        type=int,
        default=3,
        metavar="K",
        help="at most K sequences per row (default 3)",
    )
    parser.add_argument(
        "--chunk",
        type=int,
        default=0,
        metavar="N",
        help="pack chunks of N features separately (default: the whole set)",
    )
    parser.add_argument(
        "--shuffle",
        type=int,
        default=None,
        metavar="SEED",
        help="cut chunks from a seeded random order, as LoadGen issues samples (default: file order)",
    )
    parser.add_argument("--row-len", "--row_len", type=int, default=SEQ_LEN, help="tokens per row")
    parser.add_argument("--dataset", type=Path, default=None, help="SQuAD json (default: dev v1.1)")
    parser.add_argument("--vocab", type=Path, default=None, help="WordPiece vocab (default: BERT uncased)")
    parser.add_argument(
        "--lengths-npz",
        type=Path,
        default=None,
        metavar="PATH",
        help="take lengths from the 'lengths' array of an .npz instead",
    )
    parser.set_defaults(handler=run)


def _lengths(args: argparse.Namespace) -> np.ndarray:
    if args.lengths_npz is not None:
        try:
            with np.load(args.lengths_npz) as data:
                return np.asarray(data["lengths"], dtype=np.int64)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, EOFError) as exc:
            raise UserError(
                f"{args.lengths_npz}: no readable 'lengths' array ({type(exc).__name__}); give an .npz with one"
            ) from None
    from packed_bert.squad.features import load_features

    return np.asarray(load_features(args.dataset, args.vocab).lengths, dtype=np.int64)


def run(args: argparse.Namespace) -> int:
    from packed_bert.packing import pack_matrix, packing_stats

    if not 1 <= args.max_per_pack <= MAX_PER_PACK:
        raise UserError(f"--max-per-pack {args.max_per_pack}: must be 1..{MAX_PER_PACK}; try 3")
    if not 0 <= args.chunk <= MAX_CHUNK:
        raise UserError(f"--chunk {args.chunk}: must be 0 (whole set) up to {MAX_CHUNK}; try 4096")
    if not 1 <= args.row_len <= MAX_ROW_LEN:
        raise UserError(f"--row-len {args.row_len}: must be 1..{MAX_ROW_LEN}; use {SEQ_LEN}")
    if args.shuffle is not None and not 0 <= args.shuffle < 2**63:
        raise UserError(f"--shuffle {args.shuffle}: a seed is an integer from 0 to 2^63-1")
    lengths = _lengths(args)
    if lengths.ndim != 1:
        raise UserError(f"{args.lengths_npz}: 'lengths' must be a 1-D array, not shape {lengths.shape}")
    if lengths.size and int(lengths.min()) < 1:
        raise UserError(f"{args.lengths_npz}: a length of {int(lengths.min())}; every length must be 1..{args.row_len}")
    if lengths.size and int(lengths.max()) > args.row_len:
        raise UserError(
            f"--row-len {args.row_len}: shorter than the longest feature ({int(lengths.max())}); use {SEQ_LEN}"
        )
    if args.shuffle is not None:
        lengths = lengths[np.random.default_rng(args.shuffle).permutation(lengths.size)]
    chunk = args.chunk or max(1, lengths.size)

    packs = 0
    start = time.perf_counter()
    for s in range(0, lengths.size, chunk):
        packs += pack_matrix(lengths[s : s + chunk], args.max_per_pack, args.row_len).shape[0]
    seconds = time.perf_counter() - start

    stats = packing_stats(lengths, packs, args.row_len)
    summary = {
        **stats.as_dict(),
        "max_per_pack": args.max_per_pack,
        "chunk": args.chunk or int(lengths.size),
        "order": "file" if args.shuffle is None else f"shuffled(seed={args.shuffle})",
        "pack_ms": seconds * 1e3,
    }
    print(f"sequences:            {stats.sequences}")
    print(f"packs:                {stats.packs} (at most {args.max_per_pack} sequences per {args.row_len}-token row)")
    print(f"chunk:                {summary['chunk']} ({summary['order']} order)")
    print(f"token efficiency:     {stats.token_efficiency:.2%} (padded: {stats.padded_efficiency:.2%})")
    print(f"speed-up vs padding:  {stats.speedup_over_padding:.3f}x")
    print(f"packing time:         {seconds * 1e3:.1f} ms")
    print(json.dumps(summary))
    return 0
