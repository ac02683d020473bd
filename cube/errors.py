"""Errors of a training run that the user can act on (no torch import, so CLIs can catch them cheaply)."""


class TrainingDiverged(ValueError):
    """The training loss became NaN or infinite."""


class CheckpointMismatch(ValueError):
    """The checkpoint directory holds another run's checkpoint (other config or data)."""
