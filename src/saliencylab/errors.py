"""The one exception type that the CLI turns into a one-line message."""


class UserError(Exception):
    """Bad input from the user: the message names the problem and how to fix it."""
