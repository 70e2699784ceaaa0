"""User-facing errors: the CLI turns these into one line and exit code 2, never a traceback."""

import math


class MaskCLIPError(Exception):
    """An error caused by the user's input or environment, with a message that says what to do."""


class WeightsUnavailableError(MaskCLIPError):
    """CLIP weights could not be found locally nor downloaded."""


class CheckpointMismatchError(MaskCLIPError):
    """A checkpoint file does not fit the requested architecture."""


class ParameterError(MaskCLIPError):
    """A parameter outside its range. The message template holds ``{}`` for each parameter it names:
    ``str()`` shows the library's names (``short_side``), :meth:`as_flags` the CLI's (``--short-side``)."""

    def __init__(self, template: str, *names: str):
        self.template, self.names = template, names
        super().__init__(template.format(*names))

    def as_flags(self) -> str:
        return self.template.format(*(f"--{n.replace('_', '-')}" for n in self.names))


def check_range(name: str, value: float | None, low: float | None = None, high: float | None = None, *, above: bool = False) -> None:
    """Raise a :class:`ParameterError` unless ``value`` (None = not set, fine) is >= ``low`` (> with
    ``above``) and <= ``high``; a float also finite (NaN passes every comparison, so it is refused here)."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ParameterError(f"{{}} must be a finite number (got {value}).", name)
    too_low = low is not None and (value <= low if above else value < low)
    if too_low or (high is not None and value > high):
        bounds = ([f"{'>' if above else '>='} {low}"] if low is not None else []) + ([f"<= {high}"] if high is not None else [])
        raise ParameterError(f"{{}} must be {' and '.join(bounds)} (got {value}).", name)
