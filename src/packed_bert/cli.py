"""The one entry point: ``packed-bert <command> ...``; a thin layer over the library.

Subcommands live in :mod:`packed_bert.commands`, one module each. The flags of the harness this
replaces (``--sut=r282_z93_q1 --model=bert-99 --mode=accuracy ...`` with no command word) are
taken as ``packed-bert run ...``.
"""

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from packed_bert import __version__, commands
from packed_bert.errors import UserError

DEFAULT_COMMAND = "run"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="packed-bert",
        description="MLPerf Inference harness for BERT-Large on SQuAD v1.1 with sequence packing.",
    )
    parser.add_argument("--version", action="version", version=f"packed-bert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def _with_default_command(argv: list[str]) -> list[str]:
    """Old harness spelling: flags with no command word mean ``run``."""
    if argv and argv[0].startswith("--") and argv[0] not in ("--help", "--version"):
        return [DEFAULT_COMMAND, *argv]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        args = parser.parse_args(_with_default_command(args_list))
        args.argv = ["packed-bert", *args_list]  # as typed, for the run's command.txt
        handler = getattr(args, "handler", None)
        if handler is None:
            parser.print_help()
            return 2
        return int(handler(args) or 0)
    except UserError as exc:
        print(f"packed-bert: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("packed-bert: interrupted; earlier results are left as they were", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
