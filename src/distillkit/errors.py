"""The one exception type for user mistakes: the CLI prints its message as a single line."""


class UserError(Exception):
    """A problem the user can fix (bad input, missing file, unreachable server).

    The message names the problem and the fix, in one line.
    """
