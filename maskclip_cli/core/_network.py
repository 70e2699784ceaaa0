"""Whether a download host can be reached: asked once before any download, so an offline machine
gets one clear error at once instead of a library's minutes of retries."""

from __future__ import annotations

import os
import socket


def reachable(host: str, timeout: float = 3.0) -> bool:
    """True when a TCP connection to ``host``:443 opens; False offline or with HF_HUB_OFFLINE set."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False
