"""Options of `maskclip label --engine ray`, checked before any model is loaded (no torch, no ray import).

Where the job runs (``address``), how many labelling actors (a fixed count or an autoscaling
range) with how much GPU each, how many images go to an actor call, and how many blocks may fail
after Ray's own retries before the job stops.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
from dataclasses import dataclass

from ..core.errors import MaskCLIPError, ParameterError, check_range

INSTALL_HINT = "pip install 'maskclip-cli[ray]'"


def require_ray() -> None:
    """One clear line when the optional extra is missing."""
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("pyarrow") is None:
        raise MaskCLIPError(f"--engine ray needs Ray Data, which is not installed: {INSTALL_HINT}")


def parse_actors(spec: str) -> tuple[int, int]:
    """``N`` (a fixed pool) or ``MIN-MAX`` (autoscaling) -> (min, max)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", spec)
    if match is None:
        raise ParameterError(f"{{}} must be N or MIN-MAX, e.g. 4 or 1-8 (got {spec!r}).", "actors")
    bounds = (int(match[1]), int(match[2] or match[1]))
    if bounds[0] < 1 or bounds[1] < bounds[0]:
        raise ParameterError(f"{{}} must be at least 1, and MIN <= MAX (got {spec!r}).", "actors")
    return bounds


@dataclass
class RayOptions:
    """``address``: None starts a local cluster (or joins ``RAY_ADDRESS`` when set), ``auto`` joins the
    cluster running on this machine, ``host:port`` / ``ray://host:port`` a remote one."""

    address: str | None = None
    gpus_per_actor: float = 0.0  # fractional: 0.5 puts two actors on a GPU
    actors: tuple[int, int] = (1, 1)
    batch_size: int = 16  # images per Ray block: an actor call, a manifest update (whole --batch-size batches)
    max_failures: int = 0  # blocks allowed to fail after retries before the job stops (-1: any)

    def __post_init__(self) -> None:
        check_range("gpus_per_actor", self.gpus_per_actor, 0)
        check_range("ray_batch_size", self.batch_size, 1)
        check_range("max_failures", self.max_failures, -1)
        if self.actors[0] < 1 or self.actors[1] < self.actors[0]:
            raise ParameterError("{} must be at least 1, and MIN <= MAX.", "actors")
        require_ray()

    @property
    def target(self) -> str | None:
        """The address to join: the option, else ``RAY_ADDRESS``, else None (start a local cluster)."""
        return self.address or os.environ.get("RAY_ADDRESS") or None


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse an address nothing listens on in seconds, not after Ray's minute of retries."""
    if address == "auto" or address.startswith(("http://", "https://")):
        return  # "auto" is resolved by Ray on this machine; a job-server URL is not a GCS address
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise MaskCLIPError(f"Cannot reach the Ray cluster at {address}: {exc}. Check --ray-address / RAY_ADDRESS.") from None
