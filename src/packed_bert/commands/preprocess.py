"""``packed-bert preprocess``: the MLPerf reference SQuAD features as an .npz file."""

import argparse
import io
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from packed_bert.cache import atomic_write_bytes, check_out_file


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "preprocess",
        help="make the 10,833 SQuAD dev features (cached) and write them to an .npz",
        description="Make the MLPerf reference features of SQuAD v1.1 dev (max_seq_length 384, "
        "doc_stride 128, max_query_length 64, lower case) and write input_ids, segment_ids, "
        "lengths, example_index, token_to_orig and max_context to FILE.npz.",
    )
    p.add_argument("--dataset", type=Path, help="dev-v1.1.json (default: $PACKED_BERT_SQUAD, cache, download)")
    p.add_argument("--vocab", type=Path, help="BERT uncased vocab.txt (default: $PACKED_BERT_VOCAB, cache, download)")
    p.add_argument("--out", type=Path, required=True, help="the .npz file to write")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from packed_bert.squad.features import load_features

    check_out_file(args.out, "--out")
    t0 = time.perf_counter()
    f = load_features(args.dataset, args.vocab)
    buf = io.BytesIO()
    np.savez(
        buf,
        input_ids=f.input_ids,
        segment_ids=f.segment_ids,
        lengths=f.lengths,
        example_index=f.example_index,
        token_to_orig=f.token_to_orig,
        max_context=f.max_context,
        qas_id=np.array(f.squad.qas_ids),
    )
    atomic_write_bytes(args.out, buf.getvalue())
    print(
        f"{args.out}: {f.num_features} features of {f.num_examples} questions ({time.perf_counter() - t0:.2f} s)",
        file=sys.stdout,
    )
    return 0
