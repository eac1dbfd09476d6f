"""The exception types that the CLI turns into a one-line message."""


class UserError(Exception):
    """Bad input from the user: the message names the problem and how to fix it."""


class NotApplicable(UserError):
    """A method that cannot explain this model (a CAM method on a model without a conv layer):
    `evaluate` skips it and says why; anywhere else it is a UserError like any other."""


class TrainingDiverged(UserError):
    """A training run's loss became inf or NaN: the message names the job, epoch and step."""


def a_type(value) -> str:
    """'an int', 'a list': the type of `value` with its article, for messages."""
    name = type(value).__name__
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"
