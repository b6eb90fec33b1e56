"""Errors that mean the user's input is wrong (as opposed to a bug in packed-bert).

The CLI prints a ``UserError`` as one line naming the input and the fix, and exits with
status 2; it never shows a traceback for one.
"""


class UserError(Exception):
    """Bad input: a missing or corrupt file, an unknown name, an impossible setting."""

    exit_code = 2
