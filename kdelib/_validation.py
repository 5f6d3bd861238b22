"""The single input funnel: every public entry point validates through these helpers.

Each helper returns a clean float64 array (or float) or raises ``ValueError`` with a message
that names the argument, the problem and the fix.
"""

import numbers

import numpy as np

__all__ = [
    "as_1d_float",
    "as_2d_float",
    "as_2d_real",
    "as_float_array",
    "as_positive_1d",
    "check_bandwidth",
    "check_bounds",
    "check_choice",
    "check_device",
    "check_estimator_or_choice",
    "check_interval",
    "check_log_probability",
    "check_min_rows",
    "check_n_samples",
    "check_no_constant_columns",
    "check_positive_int",
    "check_probability",
    "check_real",
    "check_same_columns",
    "check_spread",
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


#: Largest data spread (max - min) whose squares and variances stay finite in float64, with room
#: for sums over many points.
MAX_SPREAD = 1e150
#: Smallest positive spread: below it squared differences, and grids or bandwidths derived from
#: the spread, fall into the subnormal range where their reciprocals overflow.
MIN_SPREAD = 1e-150


def check_spread(x, name="x"):
    """Return ``x`` (1-D) unchanged, or raise if its spread is outside what float64 can square.

    Variances of data spread over more than :data:`MAX_SPREAD` overflow float64, and spreads
    below :data:`MIN_SPREAD` underflow; the estimators that need them (bandwidth rules, EM)
    refuse such data instead of returning an infinite or subnormal bandwidth or scale. A
    spread of exactly zero passes: each rule reports it in its own words.
    """
    spread = float(np.max(x) - np.min(x)) if x.size else 0.0
    if not (spread == 0.0 or MIN_SPREAD <= spread <= MAX_SPREAD):
        raise ValueError(
            f"{name} spans {spread:.3g}, outside [{MIN_SPREAD:g}, {MAX_SPREAD:g}]: its variance "
            "over- or underflows float64. Rescale the data (e.g. by a power of ten) or pass a "
            "float bandwidth."
        )
    return x


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


def as_2d_float(x, name="X", *, min_rows=1):
    """Return ``x`` as a finite 2-D float64 array with at least ``min_rows`` rows and one column."""
    arr = as_float_array(x, name)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array with one sample per row; got shape {arr.shape}. "
            "Use x.reshape(len(x), -1) (or x[:, None] for a single variable)."
        )
    if arr.shape[0] < min_rows or arr.shape[1] == 0:
        raise ValueError(
            f"{name} is empty or too small (shape {arr.shape}); it needs at least {min_rows} "
            "row(s) and one column."
        )
    return arr


def as_positive_1d(values, name):
    """Return a scalar or 1-D sequence of positive finite numbers as a 1-D array, and its shape.

    The shape (``()`` for a scalar) lets the caller return results shaped like the input.
    """
    shape = np.shape(values)
    if len(shape) > 1:
        raise ValueError(f"{name} must be a scalar or a 1-D sequence; got shape {shape}.")
    arr = as_1d_float(values, name)
    if np.any(arr <= 0):
        raise ValueError(f"{name} must be positive; got {arr[arr <= 0].tolist()}.")
    return arr, shape


def check_real(value, name, *, low=-np.inf, high=np.inf, low_open=False, high_open=False, hint=""):
    """Return ``value`` as a float if it is a real number in the interval from ``low`` to ``high``.

    ``low_open``/``high_open`` exclude the end points. NaN never passes. ``hint`` is appended to
    the error message (say what the limit protects against, or what to do instead).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number; got {value!r}.{_suffix(hint)}")
    v = float(value)
    above = v > low if low_open else v >= low
    below = v < high if high_open else v <= high
    if not (above and below):
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must lie in {left}{low:g}, {high:g}{right}; got {value!r}.{_suffix(hint)}")
    return v


def check_bandwidth(bandwidth, name="bandwidth"):
    """Return a positive, finite float bandwidth (kernel standard deviation in data units)."""
    ok = not isinstance(bandwidth, bool) and isinstance(bandwidth, numbers.Real)
    if not (ok and np.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(
            f"{name} must be a positive and finite float (the kernel standard deviation in data "
            f"units) or the name of a rule; got {bandwidth!r}."
        )
    return float(bandwidth)


def check_interval(bounds, name, *, positive=False):
    """Return ``(lo, hi)`` as floats with ``lo < hi``, both finite (and positive if asked)."""
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of numbers (lo, hi); got {bounds!r}.") from None
    ok = np.isfinite(lo) and np.isfinite(hi) and lo < hi and (lo > 0 or not positive)
    if not ok:
        what = "0 < lo < hi" if positive else "lo < hi"
        raise ValueError(f"{name} must be two finite numbers with {what}; got {bounds!r}.")
    return lo, hi


def check_positive_int(value, name, *, minimum=1, allow_none=False):
    """Return ``value`` as an int ``>= minimum`` (``None`` passes through if ``allow_none``).

    Integral floats such as ``4.0`` are accepted; booleans are not.
    """
    if value is None and allow_none:
        return None
    valid = (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and np.isfinite(value)
        and float(value).is_integer()
        and value >= minimum
    )
    if not valid:
        default = " (or None for the default)" if allow_none else ""
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}{default}; got {value!r}.")
    return int(value)


def check_choice(value, registry, name):
    """Return the registry key named by ``value``; the error lists the valid keys.

    ``registry`` is any container of keys (a dict of implementations, or a tuple of names).
    String keys are matched after ``value.strip().lower()``; other keys (e.g. integer orders)
    exactly.
    """
    choices = ", ".join(repr(k) for k in registry)
    if all(isinstance(k, str) for k in registry):
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, one of {choices}; got {value!r}.")
        value = value.strip().lower()
    if isinstance(value, bool) or value not in registry:
        raise ValueError(f"unknown {name} {value!r}; choose one of {choices}.")
    return value


def _suffix(hint):
    return f" {hint}" if hint else ""


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


def check_log_probability(log_q, name="log_q"):
    """Return ``log_q`` as a float64 array with every entry in [-inf, 0]."""
    arr = np.asarray(log_q, dtype=float)
    bad = ~(arr <= 0)  # also catches NaN
    if np.any(bad):
        raise ValueError(
            f"{name} must be <= 0 (a log probability); {int(bad.sum())} value(s) are not "
            f"(first: {arr[bad].flat[0]!r})."
        )
    return arr


def check_n_samples(n_samples):
    """Return ``n_samples`` as an int, or raise unless it is a non-negative integer."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 0:
        raise ValueError(f"n_samples must be a non-negative integer; got {n_samples!r}.")
    return int(n_samples)


def check_bounds(bounds, name="bounds"):
    """Return ``(lower, upper)`` floats for a support; ``None`` is the whole line.

    Either end may be infinite (``-inf`` below, ``+inf`` above); NaN, a wrong length or
    ``lower >= upper`` raise ``ValueError``.
    """
    if bounds is None:
        return -np.inf, np.inf
    try:
        lower, upper = (float(v) for v in bounds)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a pair (lower, upper) of numbers (use -inf or inf for an open end); "
            f"got {bounds!r}."
        ) from None
    if np.isnan(lower) or np.isnan(upper):
        raise ValueError(f"{name} must not be NaN; got {bounds!r}. Use -inf or inf for an open end.")
    if not lower < upper or lower == np.inf or upper == -np.inf:
        raise ValueError(
            f"{name} must satisfy lower < upper with lower < inf and upper > -inf; got {bounds!r}."
        )
    return lower, upper


def check_same_columns(first, second, first_name, second_name):
    """Raise unless two 2-D arrays have the same number of columns (features per row)."""
    if first.shape[1] != second.shape[1]:
        raise ValueError(
            f"{first_name} and {second_name} must have the same number of columns (features, e.g. "
            f"pixels per image); got {first.shape[1]} and {second.shape[1]}."
        )


def check_device(device):
    """Return ``None`` for the CPU (``None`` or ``"cpu"``), else the CUDA device index.

    Accepted: ``None``, ``"cpu"``, ``"cuda"`` (device 0) and ``"cuda:N"``; case and surrounding
    spaces are ignored.
    """
    if device is None:
        return None
    name = str(device).strip().lower()
    if name == "cpu":
        return None
    if name == "cuda":
        return 0
    if name.startswith("cuda:") and name[5:].isdigit():
        return int(name[5:])
    raise ValueError(f"device must be None, 'cpu', 'cuda' or 'cuda:N'; got {device!r}.")


def as_2d_real(x, name="X"):
    """Like :func:`as_2d_float`, but a float32 array stays float32 (no copy): for large images.

    Any other input becomes float64. The checks (2-D, non-empty, finite) are those of
    :func:`as_2d_float`.
    """
    arr = np.asarray(x)
    if arr.dtype not in (np.float32, np.float64):
        return as_2d_float(arr, name)
    _check_finite(arr, name)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] == 0:
        return as_2d_float(arr, name)  # raises with the message for the shape
    return arr


def check_min_rows(n_rows, minimum, name="X", *, why=""):
    """Raise unless a data set has at least ``minimum`` rows (the message says ``n_samples = n``)."""
    if n_rows < minimum:
        raise ValueError(
            f"{name} has n_samples = {n_rows}; at least {minimum} rows are needed.{_suffix(why)}"
        )
    return int(n_rows)


def check_no_constant_columns(X, name="X"):
    """Raise if a column of the 2-D array ``X`` takes a single value (no spread to model)."""
    constant = np.flatnonzero(np.ptp(X, axis=0) == 0) if X.shape[0] else np.array([], int)
    if constant.size:
        raise ValueError(
            f"{name} has {constant.size} constant column(s) (first: column {int(constant[0])}); "
            "a density along a constant column is degenerate. Drop those columns, or add "
            "noise to discrete data (dequantise) before fitting."
        )
    return X


def check_estimator_or_choice(value, registry, name, methods):
    """Return ``(key, None)`` for a registry name or ``(None, value)`` for an estimator object.

    An object is accepted when it has every method named in ``methods``; a string must be a
    key of ``registry`` (see :func:`check_choice`).
    """
    if isinstance(value, str):
        return check_choice(value, registry, name), None
    missing = [m for m in methods if not callable(getattr(value, m, None))]
    if missing:
        choices = ", ".join(repr(k) for k in registry)
        raise ValueError(
            f"{name} must be one of {choices} or an unfitted estimator with methods "
            f"{', '.join(methods)}; got {value!r} (missing {', '.join(missing)})."
        )
    return None, value


def check_spline_knots(x, y, derivatives):
    """Return the knots, values and derivatives of a monotone spline as three 1-D float64 arrays.

    ``x`` and ``y`` must be finite and strictly increasing with at least two entries, and
    ``derivatives`` finite and positive, one per knot.
    """
    x = as_1d_float(x, "x", min_size=2)
    y = as_1d_float(y, "y", min_size=2)
    d = as_1d_float(derivatives, "derivatives", min_size=2)
    if not (x.size == y.size == d.size):
        raise ValueError(
            f"x, y and derivatives need one entry per knot; got lengths {x.size}, {y.size} and "
            f"{d.size}."
        )
    for arr, name in ((x, "x"), (y, "y")):
        with np.errstate(over="ignore"):  # an overflowing step is still positive
            steps = np.diff(arr)
        if np.any(steps <= 0):
            k = int(np.argmax(steps <= 0))
            raise ValueError(
                f"{name} must be strictly increasing; {name}[{k}] = {arr[k]!r} is not below "
                f"{name}[{k + 1}] = {arr[k + 1]!r}. Sort the knots and merge ties."
            )
    if np.any(d <= 0):
        raise ValueError(
            f"derivatives must be positive (a monotone spline); got {d[d <= 0].tolist()}."
        )
    return x, y, d
