"""``packed-bert submission``: build (and check) the MLPerf submission tree from run directories.

The round is the runs' own (``--round`` picks one when the results directory holds several);
the category the round allows for BERT and the system claims (``--category``, else the first
whose scenarios the runs hold); the runs the best of each kind (``--use DIR`` names one).
``--check`` runs the checks MLPerf's checker of that round runs; ``--official PATH`` also runs an
official checker (mlcommons/inference tools/submission) and reports its findings.
"""

import argparse
import json
from pathlib import Path

from packed_bert.rounds import ROUNDS
from packed_bert.submission.builder import build
from packed_bert.submission.check import check_findings, summarize
from packed_bert.submission.official import run_official


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = sub.add_parser(
        "submission",
        help="build the MLPerf submission tree from results",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--results", type=Path, required=True, help="results directory holding the run directories")
    p.add_argument("--out", type=Path, required=True, help="a new (or empty) directory for <division>/<submitter>/")
    p.add_argument("--submitter", required=True, help="organisation name")
    p.add_argument("--division", default="closed", choices=("closed", "open"))
    p.add_argument("--round", default=None, help=f"MLPerf round ({', '.join(ROUNDS)}; default: the runs' own)")
    p.add_argument(
        "--category",
        default=None,
        choices=("edge", "datacenter"),
        help="system_type (default: the system file's first that the round allows for BERT and whose "
        "scenarios the runs hold, else its first the round allows)",
    )
    p.add_argument(
        "--use",
        type=Path,
        action="append",
        default=[],
        metavar="RUN_DIR",
        help="take this run (accuracy, performance, compliance or power) for its kind; repeatable",
    )
    p.add_argument(
        "--allow-test-runs",
        action="store_true",
        help="build a test tree from test-length runs or a simulated system (its notes say so)",
    )
    p.add_argument("--check", action="store_true", help="then validate the tree as MLPerf's checker of the round would")
    p.add_argument(
        "--official",
        type=Path,
        default=None,
        metavar="PATH",
        help="then also run this official checker (mlcommons/inference, tools/submission)",
    )
    p.add_argument("--official-python", default=None, metavar="PYTHON", help="the Python to run --official with")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    built = build(
        args.results, args.out, args.submitter, args.division, args.round, args.category, args.allow_test_runs, args.use
    )
    rnd, root = built.round, built.root
    cats = ", ".join(f"{s} {c}" for s, c in built.categories.items())
    print(f"submission {rnd.name} ({rnd.layout} layout; {cats}): {root}")
    for e in built.entries:
        print(
            f"  {e.name}: "
            + ", ".join(
                f"{label} {p.name}"
                for label, p in (
                    ("accuracy", e.accuracy),
                    ("performance", e.performance),
                    ("power", e.power),
                    *((t, p) for t, p in e.compliance.items()),
                )
                if p
            )
        )
    for note in built.notes:
        print(f"  {note}")
    if built.test_runs:
        print(f"  TEST TREE: {len(built.test_runs)} test-length runs or simulated systems (said in the systems' notes)")
    summary: dict[str, object] = {
        "submission": str(root),
        "round": rnd.name,
        "layout": rnd.layout,
        "division": args.division,
        "submitter": args.submitter,
        "categories": {s: str(c) for s, c in built.categories.items()},
        "test_tree": bool(built.test_runs),
    }
    failed = False
    if args.check:
        problems, test_runs = summarize(check_findings(root, rnd, args.results))
        for problem in problems:
            print(f"CHECK FAIL: {problem}")
        for line in test_runs:
            print(f"CHECK TEST RUN: {line}")
        verdict = (
            "submission looks OK"
            if not problems and not test_runs
            else (f"{len(problems)} problem(s), {len(test_runs)} test-length run(s)")
        )
        print(f"check: {verdict}")
        summary.update(
            check="PASS" if not problems and not test_runs else "FAIL", problems=problems, test_runs=test_runs
        )
        failed = bool(problems or test_runs)
    if args.official is not None:
        result = run_official(args.official, args.out, rnd.name, args.submitter, args.official_python)
        for line in result.errors:
            print(f"OFFICIAL: {line}")
        print(
            f"official checker ({result.checker}): exit {result.returncode}, {len(result.errors)} ERROR line(s)"
            f"{'; ' + result.summary if result.summary else ''}"
        )
        summary.update(official={"checker": str(result.checker), "exit": result.returncode, "errors": result.errors})
        failed = failed or result.returncode != 0
    print(json.dumps(summary))
    return 1 if failed else 0
