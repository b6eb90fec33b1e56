"""``packed-bert accuracy``: score an MLPerf accuracy log as the official SQuAD script does."""

import argparse
import json
from pathlib import Path
from typing import Any

from packed_bert.errors import UserError
from packed_bert.squad.accuracy_log import DTYPES


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "accuracy",
        help="score an mlperf_log_accuracy.json on SQuAD v1.1 (EM/F1)",
        description="Score an MLPerf BERT accuracy log; the last line is "
        '{"exact_match": X, "f1": Y}, as the official MLPerf script prints it.',
    )
    p.add_argument("--log", type=Path, required=True, help="mlperf_log_accuracy.json")
    p.add_argument("--dataset", type=Path, help="dev-v1.1.json (default: $PACKED_BERT_SQUAD, cache, download)")
    p.add_argument("--vocab", type=Path, help="BERT uncased vocab.txt (default: $PACKED_BERT_VOCAB, cache, download)")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="payload type (default float32)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from packed_bert.squad.accuracy_log import read_payloads
    from packed_bert.squad.features import load_features
    from packed_bert.squad.scoring import score_logits

    payloads = read_payloads(args.log, args.dtype)
    if not payloads:
        raise UserError(
            f"{args.log}: holds no responses (a performance run logs none); score an accuracy "
            "run's mlperf_log_accuracy.json"
        )
    features = load_features(args.dataset, args.vocab)
    r = score_logits(payloads, features, args.dtype, source=str(args.log))
    print(
        f"scored {r.questions_scored} of {r.questions_total} questions "
        f"({r.features_scored} of {features.num_features} features)"
    )
    print(json.dumps(r.as_dict()))
    return 0
