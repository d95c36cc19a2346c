"""The one exception type for user errors.

A `KaggleMLCError` is something the user can fix (a bad file, column, key or missing stage output):
the CLI prints its message as one line and exits with code 2. Anything else is a bug and keeps its
traceback.
"""


class KaggleMLCError(Exception):
    """A user error: the message names the file/column/key and what to do about it."""

    exit_code = 2
