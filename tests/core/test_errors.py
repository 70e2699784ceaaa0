"""check_range: the one range check every options class uses."""

from __future__ import annotations

import math

import pytest

from maskclip_cli.core.errors import ParameterError, check_range
from maskclip_cli.engine.config import MaskCLIPConfig


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_check_range_refuses_nan_and_infinity(value):
    """NaN passes every comparison, so `--proxy-beta nan` (no bounds) and `--proxy-gamma nan` (> 0)
    were accepted and labelled every image from NaN attention."""
    for bounds in ((), (0,), (0, 1)):
        with pytest.raises(ParameterError, match="must be a finite number") as info:
            check_range("proxy_beta", value, *bounds)
        assert info.value.as_flags().startswith("--proxy-beta")
    check_range("proxy_beta", 1.2)
    check_range("workers", 10 ** 400, 0)  # a huge int is not a float: no OverflowError


@pytest.mark.parametrize("field", ["proxy_beta", "proxy_gamma"])
def test_proxy_beta_nan(field):
    with pytest.raises(ParameterError, match=f"{field} must be a finite number"):
        MaskCLIPConfig(method="proxyclip", **{field: math.nan})
