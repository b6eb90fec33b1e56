"""CLI subcommands: each module here defines ``register(subparsers)`` and is found at start-up.

A module registers its parser with ``set_defaults(handler=...)``; the handler takes the parsed
arguments and returns the exit status.
"""
