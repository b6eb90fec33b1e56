"""``packed-bert submission``: build (and check) the MLPerf submission tree from run directories."""

import argparse
import json
from pathlib import Path

from packed_bert.rounds import ROUNDS, get_round
from packed_bert.submission.builder import build
from packed_bert.submission.check import check_tree


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser("submission", help="build the MLPerf submission tree from results", description=__doc__)
    p.add_argument("--results", type=Path, required=True, help="results directory holding the run directories")
    p.add_argument("--out", type=Path, required=True, help="where to build <division>/<submitter>/")
    p.add_argument("--submitter", required=True, help="organisation name")
    p.add_argument("--division", default="closed", choices=("closed", "open"))
    p.add_argument("--round", default=None, help=f"MLPerf round rules and layout ({', '.join(ROUNDS)}; default newest)")
    p.add_argument("--check", action="store_true", help="then validate the tree as MLPerf's checker would")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    rnd = get_round(args.round)
    root = build(args.results, args.out, args.submitter, args.division, rnd)
    print(f"submission {rnd.name} ({rnd.layout} layout): {root}")
    summary: dict[str, object] = {"submission": str(root), "round": rnd.name, "layout": rnd.layout,
                                  "division": args.division, "submitter": args.submitter}
    problems = check_tree(root, rnd, args.results) if args.check else []
    for problem in problems:
        print(f"CHECK FAIL: {problem}")
    if args.check:
        print("check: submission looks OK" if not problems else f"check: {len(problems)} problem(s)")
        summary.update(check="PASS" if not problems else "FAIL", problems=problems)
    print(json.dumps(summary))
    return 0 if not problems else 1
