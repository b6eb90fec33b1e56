"""Errors a run can end with."""

from packed_bert.errors import UserError


class RunError(UserError):
    """The run failed (a device worker raised, LoadGen gave up): printed as one line, exit 1."""

    exit_code = 1
