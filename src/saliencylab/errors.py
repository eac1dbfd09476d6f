"""The exception types that the CLI turns into a one-line message."""


class UserError(Exception):
    """Bad input from the user: the message names the problem and how to fix it."""


class TrainingDiverged(UserError):
    """A training run's loss became inf or NaN: the message names the job, epoch and step."""
