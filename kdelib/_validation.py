"""The single input funnel: every public entry point validates through these helpers.

Each helper returns a clean float64 array (or float) or raises ``ValueError`` with a message
that names the argument, the problem and the fix.
"""

import numbers

import numpy as np

__all__ = [
    "as_1d_float",
    "as_float_array",
    "check_bandwidth",
    "check_n_samples",
    "check_probability",
    "check_weights",
]


def as_1d_float(x, name="x", *, min_size=1):
    """Return ``x`` as a finite 1-D float64 array of at least ``min_size`` elements.

    A scalar becomes a one-element array. A column vector of shape (n, 1) is accepted and
    flattened; any other 2-D shape is rejected, because silently ravelling a matrix hides bugs.
    """
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    elif arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    elif arr.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (or a single column of shape (n, 1)); got shape {arr.shape}. "
            "Pass one variable at a time, e.g. X[:, j]."
        )
    if arr.size < min_size:
        raise ValueError(f"{name} needs at least {min_size} value(s); got {arr.size}.")
    _check_finite(arr, name)
    return arr


def as_float_array(x, name="x"):
    """Return ``x`` as a finite float64 array of any shape (evaluation points)."""
    arr = np.asarray(x, dtype=float)
    _check_finite(arr, name)
    return arr


def _check_finite(arr, name):
    if not np.all(np.isfinite(arr)):
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(np.isinf(arr).sum())
        raise ValueError(
            f"{name} contains {n_nan} NaN and {n_inf} infinite value(s); "
            "remove or impute them before calling."
        )


def check_weights(weights, n, name="weights"):
    """Return non-negative weights of length ``n`` normalised to sum to one, or ``None``."""
    if weights is None:
        return None
    w = as_1d_float(weights, name)
    if w.size != n:
        raise ValueError(f"{name} has {w.size} entries but the data has {n}; give one weight per point.")
    if np.any(w < 0):
        raise ValueError(f"{name} must be non-negative; found {int((w < 0).sum())} negative entries.")
    total = w.sum()
    if not total > 0:
        raise ValueError(f"{name} sum to zero; at least one point needs a positive weight.")
    return w / total


def check_bandwidth(bandwidth, name="bandwidth"):
    """Return a positive, finite float bandwidth (kernel standard deviation in data units)."""
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, numbers.Real):
        raise ValueError(f"{name} must be a positive float; got {bandwidth!r}.")
    h = float(bandwidth)
    if not (np.isfinite(h) and h > 0):
        raise ValueError(f"{name} must be positive and finite; got {h!r}.")
    return h


def check_probability(q, name="q"):
    """Return ``q`` as a float64 array with every entry in [0, 1]."""
    arr = np.asarray(q, dtype=float)
    bad = ~((arr >= 0) & (arr <= 1))  # also catches NaN
    if np.any(bad):
        raise ValueError(
            f"{name} must lie in [0, 1]; {int(bad.sum())} value(s) do not "
            f"(first: {arr[bad].flat[0]!r}). For tail probabilities below 1e-300 use the "
            "log-space methods."
        )
    return arr


def check_n_samples(n_samples):
    """Return ``n_samples`` as an int, or raise unless it is a non-negative integer."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 0:
        raise ValueError(f"n_samples must be a non-negative integer; got {n_samples!r}.")
    return int(n_samples)
