"""User-facing errors: the CLI turns these into one line and exit code 2, never a traceback."""


class MaskCLIPError(Exception):
    """An error caused by the user's input or environment, with a message that says what to do."""


class WeightsUnavailableError(MaskCLIPError):
    """CLIP weights could not be found locally nor downloaded."""


class CheckpointMismatchError(MaskCLIPError):
    """A checkpoint file does not fit the requested architecture."""
