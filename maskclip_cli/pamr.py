"""``maskclip_cli.pamr.pamr``: the library path the PAMR post-processing is documented under
(implemented in :mod:`maskclip_cli.engine.pamr`, with the other refinements)."""

from .engine.pamr import (
    PAMR_DILATIONS,
    PAMR_ITERATIONS,
    pamr,
    pamr_affinity,
    pamr_propagate,
)

__all__ = ["pamr", "pamr_affinity", "pamr_propagate", "PAMR_ITERATIONS", "PAMR_DILATIONS"]
