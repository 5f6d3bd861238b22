"""The contract's allowance for rounding in monotone functions (see :mod:`kdelib.base`)."""

import numpy as np

#: log F may fall, and log S rise, by this much times max(1, |value|) between increasing points.
ROUNDING_SLACK = 16 * np.finfo(float).eps


def assert_monotone_up_to_rounding(log_cdf, log_sf):
    """log F never falls, and log S never rises, by more than the contract's slack."""
    with np.errstate(invalid="ignore"):  # -inf - -inf in the tails beyond a bound
        cdf_drop = np.nan_to_num(log_cdf[:-1] - log_cdf[1:], nan=0.0)
        sf_rise = np.nan_to_num(log_sf[1:] - log_sf[:-1], nan=0.0)
    assert np.all(cdf_drop <= ROUNDING_SLACK * np.maximum(1.0, np.abs(log_cdf[:-1])))
    assert np.all(sf_rise <= ROUNDING_SLACK * np.maximum(1.0, np.abs(log_sf[:-1])))
