"""Errors that mean the user's input is wrong (as opposed to a bug in packed-bert).

The CLI prints a ``UserError`` as one line naming the input and the fix, and exits with
status 2; it never shows a traceback for one.
"""


class UserError(Exception):
    """Bad input: a missing or corrupt file, an unknown name, an impossible setting."""

    exit_code = 2


def one_line(exc: BaseException) -> str:
    """The message on one line, with any absurdly long word (a pasted value) shortened."""
    words = [w if len(w) <= 120 else f"{w[:80]}...{w[-20:]}" for w in str(exc).split()]
    return " ".join(words)


def describe_os_error(exc: OSError) -> str:
    """One line for an ``OSError``: the file, what went wrong, and what to do where it is clear."""
    import errno

    where = exc.filename or "a file"
    what = exc.strerror or type(exc).__name__
    hint = {
        errno.ENOSPC: "free some space or choose another place",
        errno.EDQUOT: "free some space or choose another place",
        errno.EROFS: "choose a writable place",
        errno.EACCES: "check its permissions or choose another place",
        errno.EPERM: "check its permissions or choose another place",
        errno.ENOENT: "check the path",
    }.get(exc.errno or 0)
    return f"{where}: {what}" + (f"; {hint}" if hint else "")
