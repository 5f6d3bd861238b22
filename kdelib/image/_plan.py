"""Exact-arithmetic planning: which arithmetic computes the squared distances, and its operands.

When every pixel value is ``k / q`` with an integer code ``0 <= k <= 255`` (MNIST: ``q = 256``,
CIFAR: ``q = 255``), squared distances are computed exactly in integers: float32 GEMMs whose
partial sums are certified below ``2**24``, float32 GEMMs over column chunks of at most
``FLOAT32_COLUMNS`` pixels summed in float64, or (for a BLAS that fails the float32 canary)
float64 GEMMs. Other data use the float64 expansion. :func:`distance_plan` reports the choice.
"""

from dataclasses import dataclass, replace

import numpy as np
from numba import njit

from .._parallel import run_tasks
from .._validation import as_2d_real, as_positive_1d, check_same_columns

#: Largest integer code accepted for the exact lattice path (8-bit pixel intensities).
MAX_CODE = 255

#: Lattice scales tried, in this order: codes/256 (MNIST), codes/255 (CIFAR), raw codes.
LATTICE_SCALES = (256, 255, 1)

#: Pixels per float32 GEMM chunk for rows without a whole-row certificate:
#: 256 * 255**2 < 2**24, so every partial sum of a chunk is an exact float32 integer.
FLOAT32_COLUMNS = 256

_FLOAT32_EXACT = 1 << 24  # every integer of magnitude <= 2**24 is a float32


@dataclass(frozen=True)
class DistancePlan:
    """How :func:`~kdelib.image.log_likelihood` computes squared distances for two arrays.

    Attributes
    ----------
    method : {"lattice", "float64"}
        ``"lattice"``: every value is ``k / scale`` with an integer code ``0 <= k <= 255``, so
        squared distances are computed exactly in integer arithmetic and scaled once.
        ``"float64"``: the expansion ``|x|^2 + |a|^2 - 2 x.a`` in float64.
    scale : int or None
        The lattice scale (256, 255 or 1), or None for ``"float64"``.
    float32_rows : int
        Data rows whose cross products run as one float32 GEMM, certified exact by a bound
        on their partial sums.
    chunked_rows : int
        Data rows whose cross products run as float32 GEMMs over chunks of at most
        ``FLOAT32_COLUMNS`` pixels (always exact for 8-bit codes), summed in float64.
        On the lattice every other row uses one float64 GEMM (exact too): that happens only
        if this BLAS fails the float32 exactness check.
    n_rows : int
        Number of data rows.
    gemm_columns : int
        Columns entering the GEMM: pixels that are zero in every training image are left out
        (their products are exactly zero).
    sigmas : tuple of float
        The sigmas the plan was made for (empty when none were given).
    sigma_paths : tuple
        Per sigma, how its kernel terms are evaluated: ``"near"`` (only the terms within the
        drop distance of the row's nearest training image, gathered once for all such sigmas:
        small sigma), ``"exp"`` (every term, one exponential each), or ``("square", j, t)``
        (every term, by ``t`` squarings of the terms of ``sigmas[j]``, whose
        ``1 / (2 sigma^2)`` is ``2**-t`` times this one's).

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib.image import distance_plan
    >>> plan = distance_plan(np.eye(3) / 256, np.ones((2, 3)) / 256)
    >>> (plan.method, plan.scale, plan.float32_rows, plan.n_rows, plan.gemm_columns)
    ('lattice', 256, 2, 2, 3)
    """

    method: str
    scale: object
    float32_rows: int
    chunked_rows: int
    n_rows: int
    gemm_columns: int
    sigmas: tuple = ()
    sigma_paths: tuple = ()

    def describe(self):
        """One line for logs and the command-line table.

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib.image import distance_plan
        >>> distance_plan(np.ones((2, 2)) / 3.7, np.ones((1, 2))).describe()
        'float64 GEMM expansion, 2 GEMM columns'
        """
        if self.method == "lattice":
            other = self.n_rows - self.float32_rows - self.chunked_rows
            gemm = (f"float32 GEMM for {self.float32_rows} of {self.n_rows} rows, "
                    f"column-chunked float32 for {self.chunked_rows}, float64 for {other}")
            text = (f"exact integer distances (values k/{self.scale}); {gemm}; "
                    f"{self.gemm_columns} GEMM columns")
        else:
            text = f"float64 GEMM expansion, {self.gemm_columns} GEMM columns"
        paths = []
        for sigma, path in zip(self.sigmas, self.sigma_paths):
            if path == "near":
                paths.append(f"{sigma:g} near terms")
            elif path == "exp":
                paths.append(f"{sigma:g} exp")
            else:
                paths.append(f"{sigma:g} = {self.sigmas[path[1]]:g} squared {path[2]}x")
        return text + (f"; sigmas: {', '.join(paths)}" if paths else "")


@dataclass
class Operands:
    """The GEMM operands shared by every block of one call."""

    plan: DistancePlan
    columns: np.ndarray  # GEMM columns (pixels not zero in every training image)
    data_source: np.ndarray  # codes (uint8) or float64 values, all columns
    data_sqnorm: np.ndarray  # |x|^2 in distance units, all columns
    train_sqnorm: np.ndarray  # |a|^2 in distance units
    train_gemm: np.ndarray  # -2 a over the GEMM columns: float32 on the lattice unless float64
    gemm_mode: np.ndarray  # per data row: "float32", "chunked" or "float64"
    delta_dtype: type  # dtype of the distance blocks: exact integers on the lattice
    units: float  # distance units per squared pixel unit (scale**2, or 1)
    n_features: int


def distance_plan(train, data, sigmas=None):
    """Return the :class:`DistancePlan` that :func:`~kdelib.image.log_likelihood` uses.

    Parameters
    ----------
    train : array-like, shape (k, d)
        Kernel centres, one flattened image per row.
    data : array-like, shape (n, d)
        Evaluation points.
    sigmas : float or array-like of shape (s,), optional
        With sigmas, the plan also says how each sigma's kernel terms are evaluated
        (``sigma_paths``), chosen as :func:`~kdelib.image.log_likelihood` chooses them: from
        the distances of the first data rows.

    Returns
    -------
    DistancePlan
        The arithmetic of the squared distances (exact integer lattice or float64), how many
        data rows take each GEMM kind, and how many pixels enter the GEMM.

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib.image import distance_plan
    >>> x = np.arange(12).reshape(3, 4) / 256
    >>> distance_plan(x, x).method
    'lattice'
    >>> distance_plan(x + 0.1, x).method
    'float64'
    >>> images = np.arange(40).reshape(10, 4) * 6 / 256
    >>> distance_plan(images, images, [0.01, 10.0, 20.0]).sigma_paths
    ('near', ('square', 2, 2), 'exp')
    """
    train = as_2d_real(train, "train")
    data = as_2d_real(data, "data")
    check_same_columns(train, data, "train", "data")
    operands = prepare(train, data)
    if sigmas is None:
        return operands.plan
    from ._kernels import make_kernel, sample_schedule, sigma_paths  # they build on this module

    sig, _ = as_positive_1d(sigmas, "sigmas")
    schedule = sample_schedule(operands, make_kernel(sig, operands))
    return replace(operands.plan, sigmas=tuple(float(v) for v in sig),
                   sigma_paths=sigma_paths(schedule, len(sig)))


@njit(nogil=True, cache=True)
def _lattice_pass(x, scale, codes, stats):
    """Codes and row statistics if every ``x[i, j] == k / scale`` with ``k`` in 0..255.

    ``k = rint(x * scale)`` is accepted when ``0 <= k <= 255`` and ``k / scale == x`` in
    float64 (for a power of two both steps are exact, so this is ``x * scale == k``, tested
    by multiplying with the exact reciprocal; for other scales float32 data pass only where
    ``k / scale`` is exactly a float32). Fills ``codes`` and ``stats`` (3, n): each row's sum,
    maximum and sum of squares of the codes, exact in int64. Returns False at the end of the
    first row that fails.
    """
    n, d = x.shape
    power_of_two = scale == 2.0 ** np.floor(np.log2(scale))
    inverse = 1.0 / scale
    for i in range(n):
        bad = 0
        total, top, squares = 0, 0, 0
        for j in range(d):
            value = np.float64(x[i, j])
            k = np.rint(value * scale)
            back = k * inverse if power_of_two else k / scale
            good = (k >= 0.0) & (k <= MAX_CODE) & (back == value)
            bad += not good
            code = np.int64(k) if good else 0
            codes[i, j] = code
            total += code
            squares += code * code
            top = top if top >= code else code
        if bad:
            return False
        stats[0, i], stats[1, i], stats[2, i] = total, top, squares
    return True


def _lattice_codes(x):
    """``(scale, codes, stats)`` if ``x == codes / scale`` exactly (codes 0..255), else None.

    ``x`` is float32 or float64; the scales of ``LATTICE_SCALES`` are tried in turn, each
    abandoned at the first row that fails. ``stats`` is ``(sum, max, sum of squares)`` of each
    row's codes (int64 arrays), as :func:`_float32_safe_rows` and the distances need them.
    """
    codes = np.empty(x.shape, dtype=np.uint8)
    stats = np.empty((3, x.shape[0]), dtype=np.int64)
    for scale in LATTICE_SCALES:
        if _lattice_pass(x, float(scale), codes, stats):
            return scale, codes, tuple(stats)
    return None


_float32_gemm_check = {}


def float32_gemm_is_exact():
    """Check once that this BLAS computes float32 products of 8-bit codes exactly.

    The canary is a GEMM large enough for the BLAS's regular kernels, with dot products up
    to 258 * 255**2 = 16,776,450 <= 2**24 that need every bit of the float32 significand;
    a BLAS with reduced internal precision fails it (then float64 is used throughout).
    """
    if "ok" not in _float32_gemm_check:
        codes = np.random.default_rng(0).integers(0, MAX_CODE + 1, size=(160, 258))
        codes[0] = MAX_CODE
        exact = codes @ codes.T
        single = codes.astype(np.float32)
        _float32_gemm_check["ok"] = bool(np.array_equal(single @ single.T, exact))
    return _float32_gemm_check["ok"]


def _float32_safe_rows(x_stats, a_stats):
    """Rows of data whose products with every training row are exact in float32.

    With non-negative integer terms every partial sum of ``x . a`` lies between 0 and the
    full sum, in any summation order, so the float32 GEMM is exact if the full sum is at
    most 2**24 (doubled by the factor -2 folded into the training operand: the even
    integers up to 2**25 are floats too). Three bounds on ``x . a`` are used, each exact in
    int64: Hoelder (1, inf), Cauchy-Schwarz and Hoelder (inf, 1). The statistics come from
    :func:`_lattice_codes` over all columns: the data rows' sums over the GEMM columns are at most
    those, so the bounds hold for the GEMM's products too.
    """
    x_l1, x_top, x_l2sq = x_stats
    a_l1, a_top, a_l2sq = (int(v.max()) for v in a_stats)
    return ((x_l1 * a_top <= _FLOAT32_EXACT)
            | (x_l2sq * a_l2sq <= _FLOAT32_EXACT**2)
            | (x_top * a_l1 <= _FLOAT32_EXACT))


def _on_both(function, first, second, *args):
    """``(function(first, *args), function(second, *args))``, in two threads when large."""
    n_threads = 1 if first.size + second.size < 1 << 20 else None
    return tuple(run_tasks(lambda x: function(x, *args), (first, second), n_threads))


def prepare(train, data):
    """Build the GEMM operands and the distance plan (exact lattice if possible).

    ``train`` and ``data`` are validated float32 or float64 arrays with equal column counts.
    """
    lattice_train, lattice_data = _on_both(_lattice_codes, train, data)
    if lattice_train:
        columns = np.flatnonzero(lattice_train[1].max(axis=0))
    else:
        columns = np.flatnonzero(np.any(train != 0, axis=0))
    if lattice_train and lattice_data and lattice_train[0] == lattice_data[0]:
        scale, a_codes, a_stats = lattice_train
        _, x_codes, x_stats = lattice_data
        if float32_gemm_is_exact():
            mode = np.where(_float32_safe_rows(x_stats, a_stats), "float32", "chunked")
        else:
            mode = np.full(len(x_codes), "float64")
        plan = DistancePlan("lattice", scale, int(np.sum(mode == "float32")),
                            int(np.sum(mode == "chunked")), len(x_codes), len(columns))
        # |a|^2 - 2 x.a lies in [-2 d 255^2, d 255^2]; int32 holds it up to d = 11,010.
        delta_dtype = np.int32 if 3 * train.shape[1] * MAX_CODE**2 < 2**31 else np.int64
        float64 = bool(np.any(mode == "float64"))
        gemm_type = np.float64 if float64 else np.float32
        train_gemm = np.multiply(np.take(a_codes, columns, axis=1), gemm_type(-2),
                                 dtype=gemm_type)
        return Operands(
            plan=plan,
            columns=columns,
            data_source=x_codes,
            data_sqnorm=x_stats[2].astype(np.float64),
            train_sqnorm=a_stats[2].astype(delta_dtype),
            train_gemm=train_gemm,
            gemm_mode=mode,
            delta_dtype=delta_dtype,
            units=float(scale) ** 2,
            n_features=train.shape[1],
        )
    plan = DistancePlan("float64", None, 0, 0, len(data), len(columns))
    train, data = train.astype(np.float64, copy=False), data.astype(np.float64, copy=False)
    return Operands(
        plan=plan,
        columns=columns,
        data_source=data,
        data_sqnorm=np.einsum("ij,ij->i", data, data),
        train_sqnorm=np.einsum("ij,ij->i", train, train),
        train_gemm=-2 * np.take(train, columns, axis=1),
        gemm_mode=np.full(len(data), "float64"),
        delta_dtype=np.float64,
        units=1.0,
        n_features=train.shape[1],
    )
