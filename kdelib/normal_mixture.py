r"""Exact numerics for weighted one-dimensional Gaussian mixtures.

A mixture with means :math:`\mu_j`, scales :math:`s_j > 0` and weights :math:`w_j \ge 0`,
:math:`\sum_j w_j = 1`, has

.. math::

    f(x) = \sum_j \frac{w_j}{s_j}\,\phi\!\left(z_j\right), \qquad
    F(x) = \sum_j w_j\,\Phi(z_j), \qquad
    S(x) = \sum_j w_j\,\Phi(-z_j), \qquad z_j = \frac{x - \mu_j}{s_j}.

A Gaussian KDE is the mixture with means = data and one common scale = bandwidth; a fitted
Gaussian mixture model is the mixture of its ``K`` components.

Shape contract: every function takes ``x`` (float64, any shape, already finite), ``means``
of shape ``(n,)``, ``scales`` (a positive scalar or shape ``(n,)``) and ``log_weights``
(shape ``(n,)`` with ``logsumexp(log_weights) == 0``, or ``None`` for equal weights) and
returns an array of ``x``'s shape (a NumPy scalar for scalar ``x``).

Numerical method
----------------
*Distribution functions.* For every term the code evaluates only the smaller tail
:math:`t_j = \Phi(-|z_j|) \le 1/2` with ``scipy.special.ndtr`` (full relative precision) and
forms the signed sum :math:`D = \sum_j w_j\,\mathrm{sign}(z_j)\,t_j` (``z_j = 0`` counts as
positive). With :math:`W_+ = \sum_{\mu_j \le x} w_j` and :math:`W_- = \sum_{\mu_j > x} w_j`
(cumulative weights of the sorted means, located with ``searchsorted``),

.. math::

    F(x) = W_+ - D, \qquad S(x) = W_- + D .

Both right-hand sides are sums of non-negative parts in which every subtracted tail is at
most half of the weight it is subtracted from, so :math:`F \ge \sum_j w_j t_j \ge |D|`:
the rounding error of :math:`D` is a few ulps *relative to F* (and to S). One special-function
call per term therefore gives both tails to full relative precision, including
:math:`1 - F` near one; nothing is computed as ``1 - cdf``.

*Logarithms.* ``log F = log(F)`` where :math:`10^{-280} < F \le 1/2`, ``log F = log1p(-S)``
where :math:`S < 1/2`; where :math:`F \le 10^{-280}` the sum has (or may have) lost digits to
underflow, and those points are recomputed fully in log space as
``logsumexp(log w_j + log_ndtr(z_j))`` (and ``F`` itself as its ``exp``, so that even
subnormal results are correctly rounded; likewise ``log F = -S`` with ``S`` from log space
where ``S <= 1e-280``). ``log S`` is symmetric with ``log_ndtr(-z_j)``. The
density uses the same switch: the plain sum of :math:`\exp(-z_j^2/2)` terms (scaled so the
largest coefficient is one) is logged where it exceeds :math:`10^{-280}`, and recomputed as
``logsumexp(log w_j - log s_j - z_j^2/2) - log(2 pi)/2`` elsewhere. Terms below
:math:`2^{-1022}` are then at most :math:`n \cdot 2^{-1074}` in total, negligible against
:math:`10^{-280}` for any feasible ``n``, so the plain sums are exact to rounding where used.

*Extreme inputs.* ``x - mu`` and ``z`` may overflow to ``+-inf`` for ``|x|`` near ``1e308``;
the terms then take their exact limits (``Phi = 0 or 1``, ``phi = 0``) and the logs become
``-inf`` only where the true value is below ``-1.8e308`` (e.g. ``log_ndtr(-1e300)``, whose
true value ``-5e599`` is not a double). Results are never NaN and are monotone up to
rounding of the sums.

*Accuracy.* Each term carries the conditioning of its special function: ``exp(-z^2/2)`` and
``ndtr(z)`` of a correctly rounded ``z`` are good to about ``z^2 * eps`` relative (1e-13 near
``|z| = 30``), so ``pdf``, ``cdf`` and ``sf`` far in the tails agree with high-precision
values to about that; their logarithms are good to a few ulps. Sums of positive terms add
at most a few ulps (pairwise summation or a BLAS dot product).

*No skipped terms.* Every term is evaluated. Terms with ``|z| > 38.5`` are exactly 0 (or 1)
in double precision and could be skipped exactly, but for data spanning fewer than about 77
bandwidths (the usual case) that saves nothing, so it is not done.

*Cost and memory.* Work is split into blocks of evaluation points times components of about
``_BLOCK_ELEMENTS`` doubles (a couple of MB per thread), evaluated with vectorised NumPy and
SciPy ufuncs, which release the GIL, on a thread pool when the work is large. No Python loop
runs per point.

*Quantiles.* ``mixture_ppf_log`` brackets the root exactly: each component's own quantile
:math:`\mu_j + s_j \Phi^{-1}(q)` (``ndtri_exp``) bounds the mixture quantile, so
:math:`[\min_j, \max_j]` of them is a valid bracket (with unequal scales the cheaper, wider
:math:`[\min_j \mu_j + s_\ast z, \max_j \mu_j + s^\ast z]`, taking the largest or smallest
scale by the sign of :math:`z`; components of zero weight are left out). It is widened by
about 1e-9 scales so that rounding cannot invalidate it, and checked before the search.
Chandrupatla's method (``scipy.optimize.elementwise.find_root``) then solves
``log F(x) = log q`` (or ``log S(x) = log q``) element-wise; any element that does not
converge raises.

References
----------
.. [1] Chandrupatla, T. R. (1997). A new hybrid quadratic/bisection algorithm for finding the
   zero of a nonlinear function without using derivatives. *Advances in Engineering
   Software*, 28(3), 145-149.

Examples
--------
>>> import numpy as np
>>> from kdelib.normal_mixture import mixture_cdf, mixture_logcdf, mixture_ppf_log
>>> means, scales = np.array([-1.0, 2.0]), np.array([0.5, 1.0])
>>> float(mixture_cdf(-40.0, means, scales))  # underflows
0.0
>>> log_F = mixture_logcdf(-40.0, means, scales)  # exact in log space
>>> round(float(log_F), 6)
-887.350321
>>> float(mixture_ppf_log(log_F, means, scales))
-40.0
"""

from functools import partial

import numpy as np
from scipy.optimize import elementwise
from scipy.special import erfcx, log_ndtr, logsumexp, ndtr, ndtri_exp

from ._parallel import n_workers, run_tasks
from ._validation import as_float_array, check_log_probability, check_probability
from .base import DensityMixin, quantile_by_tail

__all__ = [
    "MixtureDistribution",
    "log_inverse_mills_ratio",
    "log_mills_ratio",
    "mixture_cdf",
    "mixture_log_pdf_over_tail",
    "mixture_logcdf",
    "mixture_logpdf",
    "mixture_logsf",
    "mixture_parameters",
    "mixture_pdf",
    "mixture_ppf",
    "mixture_ppf_log",
    "mixture_sf",
]

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)
_HALF_LOG_2_OVER_PI = 0.5 * np.log(2.0 / np.pi)
_SQRT_HALF = np.sqrt(0.5)
# Sums above this are far from the underflow range, so their logarithm is exact to rounding.
_SAFE_SUM = 1e-280
# Doubles per block (about 2 MB): big enough to amortise ufunc overhead, small enough for cache.
_BLOCK_ELEMENTS = 1 << 18
# Below this many kernel terms a thread pool costs more than it saves.
_PARALLEL_MIN_TERMS = 1 << 20
# Upper limit on iterations of the root finder (each halves the bracket at worst).
_PPF_MAXITER = 400


class _Mixture:
    """Components prepared once per call: sorted means, scales, weights and their sums."""

    def __init__(self, means, scales, log_weights):
        means = np.asarray(means, dtype=float).reshape(-1)
        scales = np.asarray(scales, dtype=float)
        n = means.size
        if n == 0:
            raise ValueError("a mixture needs at least one component; got zero means.")
        if scales.ndim == 0:
            scales_vec = None
        else:
            scales_vec = scales.reshape(-1)
            if scales_vec.size != n:
                raise ValueError(f"scales has {scales_vec.size} entries but there are {n} means.")
        if log_weights is not None:
            log_weights = np.asarray(log_weights, dtype=float).reshape(-1)
            if log_weights.size != n:
                raise ValueError(f"log_weights has {log_weights.size} entries but there are {n} means.")

        # Sorted means let one searchsorted give the weight of components left of x.
        if n > 1 and np.any(means[1:] < means[:-1]):
            order = np.argsort(means, kind="stable")
            means = means[order]
            scales_vec = None if scales_vec is None else scales_vec[order]
            log_weights = None if log_weights is None else log_weights[order]
        if scales_vec is not None and np.all(scales_vec == scales_vec[0]):
            scales = scales_vec[0]
            scales_vec = None

        self.n = n
        self.means = means
        self.log_weights = log_weights
        self.scales = scales_vec if scales_vec is not None else float(scales)
        self._prepare_weights()
        self._prepare_scales()

    def _prepare_weights(self):
        if self.log_weights is None:
            self.weights = None
            self.log_w_terms = None  # equal weights: add -log n after the reduction
            self.positive = slice(None)
            return
        self.weights = np.exp(self.log_weights)
        self.log_w_terms = self.log_weights
        self.positive = self.weights > 0
        # Cumulative weights from each end, so that neither tail is formed as 1 - other.
        self.cum_below = np.concatenate(([0.0], np.cumsum(self.weights)))
        self.cum_above = np.concatenate((np.cumsum(self.weights[::-1])[::-1], [0.0]))

    def _prepare_scales(self):
        s = self.scales
        with np.errstate(over="ignore", divide="ignore"):
            inv = 1.0 / s
            neg_half_inv2 = -0.5 * inv * inv
        # Multiplying by 1/s is cheaper than dividing; fall back to division where 1/s**2
        # overflows or underflows (scales outside about [1e-150, 1e150]), since 0 * inf or
        # inf * 0 would give NaN.
        tiny = np.finfo(float).tiny
        self.use_reciprocal = bool(np.all(np.isfinite(neg_half_inv2) & (neg_half_inv2 < -tiny)))
        self.inv_scales = inv
        self.neg_half_inv_scales2 = neg_half_inv2
        self.log_scales = np.log(s)
        # Density coefficients a_j = log(w_j / s_j) - log sqrt(2 pi), shifted so the largest is 0.
        log_w = 0.0 if self.log_weights is None else self.log_weights
        log_coef = log_w - self.log_scales - _LOG_SQRT_2PI
        if self.log_weights is None:
            log_coef = log_coef - np.log(self.n)
        self.log_coef = log_coef
        self.log_coef_max = float(np.max(log_coef))
        coef = np.exp(np.asarray(log_coef) - self.log_coef_max)
        # None means every coefficient is exactly one: a plain row sum suffices.
        self.pdf_coef = None if np.all(coef == 1.0) else np.broadcast_to(coef, (self.n,)).copy()

    # -- blocked, threaded driver -------------------------------------------------------------

    def reduce(self, x, kernel, combine):
        """Evaluate ``kernel(x_block, component_slice)`` over blocks and combine partials.

        ``x`` is 1-D. ``combine`` (``np.add`` or ``np.logaddexp``) merges partial results of
        one row block computed over different component slices.
        """
        m, n = x.size, self.n
        out = np.empty(m)
        if m == 0:
            return out
        cols = min(n, max(1024, _BLOCK_ELEMENTS // 8))
        rows = max(1, _BLOCK_ELEMENTS // cols)
        col_slices = [slice(j, min(j + cols, n)) for j in range(0, n, cols)]
        row_slices = [slice(i, min(i + rows, m)) for i in range(0, m, rows)]
        workers = n_workers()
        if m * n < _PARALLEL_MIN_TERMS or workers == 1:
            for rs in row_slices:
                out[rs] = self._row_block(x[rs], kernel, combine, col_slices)
            return out
        # Split the components into groups too when there are few row blocks, so that all
        # threads have work; each task returns partials for one (row block, group).
        n_groups = max(1, min(len(col_slices), -(-2 * workers // len(row_slices))))
        groups = [col_slices[g::n_groups] for g in range(n_groups)]
        tasks = [(rs, grp) for rs in row_slices for grp in groups]
        # run_tasks holds BLAS to one thread per worker: the weighted reductions are
        # matrix-vector products, and idle BLAS threads spinning on the other core slow the
        # element-wise work.
        results = run_tasks(lambda t: self._row_block(x[t[0]], kernel, combine, t[1]), tasks, workers)
        filled = set()
        for (rs, _), part in zip(tasks, results):
            if rs.start in filled:
                out[rs] = combine(out[rs], part)
            else:
                out[rs] = part
                filled.add(rs.start)
        return out

    @staticmethod
    def _row_block(xb, kernel, combine, col_slices):
        acc = None
        for cs in col_slices:
            part = kernel(xb, cs)
            acc = part if acc is None else combine(acc, part)
        return acc

    def _scaled(self, d, cs, negate=False):
        """Turn ``d = x - mu`` (or ``|x - mu|``) into ``d / s`` (or ``-d / s``) in place."""
        sign = -1.0 if negate else 1.0
        if self.use_reciprocal:
            inv = self.inv_scales if np.ndim(self.inv_scales) == 0 else self.inv_scales[cs]
            d *= sign * inv
        else:
            s = self.scales if np.ndim(self.scales) == 0 else self.scales[cs]
            d /= sign * s
        return d

    def _weighted_rowsum(self, terms, cs):
        if self.weights is None:
            return terms.sum(axis=1)
        return terms @ self.weights[cs]

    # -- kernels ------------------------------------------------------------------------------

    def _pdf_kernel(self, xb, cs):
        """Row sums of ``c_j exp(-z_j^2 / 2)`` with ``c_j = exp(a_j - max a)``."""
        d = np.subtract.outer(xb, self.means[cs])
        if self.use_reciprocal:
            np.multiply(d, d, out=d)
            c = self.neg_half_inv_scales2
            d *= c if np.ndim(c) == 0 else c[cs]
        else:
            s = self.scales if np.ndim(self.scales) == 0 else self.scales[cs]
            d /= s
            np.multiply(d, d, out=d)
            d *= -0.5
        np.exp(d, out=d)
        if self.pdf_coef is None:
            return d.sum(axis=1)
        return d @ self.pdf_coef[cs]

    def _signed_tail_kernel(self, xb, cs):
        """Row sums of ``w_j sign(z_j) Phi(-|z_j|)`` (``D`` in the module notes)."""
        d = np.subtract.outer(xb, self.means[cs])
        t = self._scaled(np.abs(d), cs, negate=True)
        ndtr(t, out=t)
        np.copysign(t, d, out=t)
        return self._weighted_rowsum(t, cs)

    def _log_kernel(self, xb, cs, which):
        z = self._scaled(np.subtract.outer(xb, self.means[cs]), cs, negate=(which == "logsf"))
        if which == "logpdf":
            np.multiply(z, z, out=z)
            z *= -0.5
            log_coef = self.log_coef if np.ndim(self.log_coef) == 0 else self.log_coef[cs]
            z += log_coef
        else:
            log_ndtr(z, out=z)
            if self.log_w_terms is not None:
                z += self.log_w_terms[cs]
        return logsumexp(z, axis=1)

    # -- public evaluations (1-D x) ----------------------------------------------------------

    def log_space(self, x, which):
        """Full log-space evaluation: ``logsumexp`` over ``log w_j + log term_j``."""
        with np.errstate(divide="ignore", over="ignore", under="ignore"):
            out = self.reduce(x, lambda xb, cs: self._log_kernel(xb, cs, which), np.logaddexp)
        if which != "logpdf" and self.log_weights is None:
            out -= np.log(self.n)
        return out

    def pdf_sum(self, x):
        with np.errstate(over="ignore", under="ignore"):
            return self.reduce(x, self._pdf_kernel, np.add)

    def logpdf(self, x):
        s = self.pdf_sum(x)
        out = np.empty_like(s)
        safe = s > _SAFE_SUM
        out[safe] = np.log(s[safe]) + self.log_coef_max
        if not np.all(safe):
            out[~safe] = self.log_space(x[~safe], "logpdf")
        return out

    def pdf(self, x):
        s = self.pdf_sum(x)
        scale = np.exp(self.log_coef_max)
        safe = s > _SAFE_SUM
        if not (np.isfinite(scale) and scale > np.finfo(float).tiny):
            safe[:] = False  # extreme scales: only the log-space route is exact
        out = np.empty_like(s)
        with np.errstate(over="ignore"):
            out[safe] = s[safe] * scale
        if not np.all(safe):
            with np.errstate(under="ignore"):
                out[~safe] = np.exp(self.log_space(x[~safe], "logpdf"))
        return out

    def raw_tails(self, x):
        """Return ``(F, S)`` at 1-D ``x`` from the signed sum, exact where above ``_SAFE_SUM``."""
        # -0.0 + 0.0 is +0.0, so x == mu always gives d = +0.0, counted on the same side as
        # searchsorted(side="right") counts mu == x.
        x = x + 0.0
        with np.errstate(over="ignore", under="ignore"):
            signed = self.reduce(x, self._signed_tail_kernel, np.add)
        k = np.searchsorted(self.means, x, side="right")
        if self.weights is None:
            lower = (k - signed) / self.n
            upper = ((self.n - k) + signed) / self.n
        else:
            lower = (self.cum_below[k] - signed) / self.cum_below[-1]
            upper = (self.cum_above[k] + signed) / self.cum_above[0]
        # Mathematically both lie in [0, 1]; cumulative-weight rounding can reach 1 + ulp.
        return np.minimum(lower, 1.0), np.minimum(upper, 1.0)

    def tails(self, x):
        """Return ``(F, S)``, with values below ``_SAFE_SUM`` redone in log space."""
        lower, upper = self.raw_tails(x)
        for values, which in ((lower, "logcdf"), (upper, "logsf")):
            small = values <= _SAFE_SUM
            if np.any(small):
                with np.errstate(under="ignore"):
                    values[small] = np.exp(self.log_space(x[small], which))
        return lower, upper

    def log_tail(self, x, upper):
        lower_p, upper_p = self.raw_tails(x)
        p, other = (upper_p, lower_p) if upper else (lower_p, upper_p)
        which, other_which = ("logsf", "logcdf") if upper else ("logcdf", "logsf")
        out = np.empty_like(p)
        direct = (p > _SAFE_SUM) & (p <= 0.5)
        out[direct] = np.log(p[direct])
        complement = (p > 0.5) & (other > _SAFE_SUM)
        out[complement] = np.log1p(-other[complement])
        # log1p(-o) = -o to rounding for o <= 1e-280; o itself comes from log space there.
        tiny_other = (p > 0.5) & ~complement
        if np.any(tiny_other):
            with np.errstate(under="ignore"):
                out[tiny_other] = -np.exp(self.log_space(x[tiny_other], other_which))
        far = ~(direct | complement | tiny_other)
        if np.any(far):
            out[far] = self.log_space(x[far], which)
        return out

    def bracket(self, log_q, upper):
        """Exact bracket ``[lo, hi]`` of the quantile from the components' own quantiles."""
        z = ndtri_exp(log_q)
        if upper:
            z = -z
        means = self.means[self.positive]
        if np.ndim(self.scales) == 0:
            lo = means[0] + self.scales * z
            hi = means[-1] + self.scales * z
        else:
            scales = self.scales[self.positive]
            # min_j (mu_j + s_j z) >= min(mu) + (max(s) if z < 0 else min(s)) * z; symmetric for max.
            lo = means.min() + np.where(z < 0, scales.max(), scales.min()) * z
            hi = means.max() + np.where(z > 0, scales.max(), scales.min()) * z
        return lo, hi


def _apply(x, func):
    x = np.asarray(x, dtype=float)
    flat = x.reshape(-1)
    return func(flat).reshape(x.shape)[()]


_SHARED_DOC = """

    Parameters
    ----------
    x : ndarray of float64, any shape
        Finite evaluation points (validated by the caller).
    means : ndarray of shape (n,)
        Component means (any order; sorted internally if needed).
    scales : float or ndarray of shape (n,)
        Component standard deviations, positive and finite.
    log_weights : ndarray of shape (n,) or None
        Log mixing weights with ``logsumexp(log_weights) == 0`` (``-inf`` for a zero
        weight), or None for equal weights ``1/n``.

    Returns
    -------
    ndarray of x's shape (a NumPy scalar for scalar x)
    """


def _documented(reference, atol=0):
    """Append the shared Parameters/Returns sections, then an example checked against scipy."""

    def decorate(func):
        example = _EXAMPLE.format(name=func.__name__, reference=reference, atol=atol)
        func.__doc__ = func.__doc__.rstrip() + _SHARED_DOC + example
        return func

    return decorate


_EXAMPLE = """
    Examples
    --------
    >>> import numpy as np
    >>> from scipy import stats
    >>> from kdelib import normal_mixture as nm
    >>> means, scales, x = np.array([-1.0, 2.0]), np.array([0.5, 1.0]), np.linspace(-9, 9, 7)
    >>> def mix(f):  # equal weights, each component from scipy.stats
    ...     return 0.5 * getattr(stats.norm(-1.0, 0.5), f)(x) + 0.5 * getattr(stats.norm(2.0, 1.0), f)(x)
    >>> bool(np.allclose(nm.{name}(x, means, scales), {reference}, rtol=1e-13, atol={atol}))
    True
"""


@_documented("mix('pdf')")
def mixture_pdf(x, means, scales, log_weights=None):
    r"""Density :math:`f(x) = \sum_j w_j \phi((x - \mu_j)/s_j)/s_j` of a Gaussian mixture."""
    return _apply(x, _Mixture(means, scales, log_weights).pdf)


@_documented("np.log(mix('pdf'))")
def mixture_logpdf(x, means, scales, log_weights=None):
    r"""Log density :math:`\log f(x)`, exact in the tails (log space where the sum underflows)."""
    return _apply(x, _Mixture(means, scales, log_weights).logpdf)


@_documented("mix('cdf')")
def mixture_cdf(x, means, scales, log_weights=None):
    r"""Distribution function :math:`F(x) = \sum_j w_j \Phi((x - \mu_j)/s_j)`."""
    return _apply(x, lambda v: _Mixture(means, scales, log_weights).tails(v)[0])


@_documented("mix('sf')")
def mixture_sf(x, means, scales, log_weights=None):
    r"""Survival function :math:`S(x) = \sum_j w_j \Phi(-(x - \mu_j)/s_j)`, not ``1 - F``."""
    return _apply(x, lambda v: _Mixture(means, scales, log_weights).tails(v)[1])


@_documented("np.log(mix('cdf'))", atol=1e-15)  # scipy's cdf rounds to 1 on the right
def mixture_logcdf(x, means, scales, log_weights=None):
    r""":math:`\log F(x)` via ``log``/``log1p`` of exact sums, or ``log_ndtr`` + ``logsumexp``."""
    return _apply(x, lambda v: _Mixture(means, scales, log_weights).log_tail(v, upper=False))


@_documented("np.log(mix('sf'))", atol=1e-15)
def mixture_logsf(x, means, scales, log_weights=None):
    r""":math:`\log S(x)` from upper-tail terms ``ndtr(-z)``/``log_ndtr(-z)``, never ``1 - F``."""
    return _apply(x, lambda v: _Mixture(means, scales, log_weights).log_tail(v, upper=True))


def mixture_ppf(q, means, scales, log_weights=None):
    r"""Quantile :math:`F^{-1}(q)` of a Gaussian mixture; ``0 -> -inf`` and ``1 -> +inf``.

    Parameters
    ----------
    q : array_like
        Probabilities in [0, 1], any shape.
    means : ndarray of shape (n,)
        Component means.
    scales : float or ndarray of shape (n,)
        Component standard deviations, positive and finite.
    log_weights : ndarray of shape (n,) or None
        Log mixing weights (``logsumexp == 0``), or None for equal weights.

    Returns
    -------
    ndarray of q's shape (a NumPy scalar for scalar q)

    Raises
    ------
    ValueError
        If any ``q`` lies outside [0, 1] or is NaN.
    FloatingPointError
        If the root-finder does not converge (never returned unconverged).

    Notes
    -----
    ``q <= 1/2`` is solved as :math:`\log F(x) = \log q` and ``q > 1/2`` as
    :math:`\log S(x) = \log(1-q)` (``log1p(-q)`` is exact there), so both tails keep their
    precision (:func:`kdelib.base.quantile_by_tail`). ``q`` itself limits the accuracy: one ulp
    of ``q`` moves the answer by about ``ulp(q) / f(x)``, large where the density is tiny
    between separated components and in the upper tail, where ``q`` near 1 holds ``1 - q``
    only to absolute precision (use :func:`mixture_ppf_log` with ``upper=True`` there).

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib.normal_mixture import mixture_ppf
    >>> round(float(mixture_ppf(0.975, np.array([0.0]), 1.0)), 6)
    1.959964
    """
    q = check_probability(q, "q")
    mix = _Mixture(means, scales, log_weights)
    return quantile_by_tail(q, partial(_ppf_log, mix))


def mixture_ppf_log(log_q, means, scales, log_weights=None, *, upper=False):
    r"""Solve :math:`\log F(x) = \log q` (or :math:`\log S(x) = \log q` with ``upper=True``).

    Parameters
    ----------
    log_q : array_like
        Log-probabilities ``<= 0``, any shape; ``-inf`` maps to ``-inf`` (``+inf`` for
        ``upper``) and ``0`` to ``+inf`` (``-inf``).
    means, scales, log_weights
        The mixture, as in :func:`mixture_ppf`.
    upper : bool, default=False
        Solve for the survival function.

    Returns
    -------
    ndarray of log_q's shape

    Raises
    ------
    ValueError
        If any ``log_q`` is positive or NaN.
    FloatingPointError
        Naming the first ``log_q`` for which the root-finder does not converge; an
        unconverged value is never returned.

    Notes
    -----
    The bracket is exact (the components' own quantiles, see the module notes);
    Chandrupatla's method stops when the bracket is narrower than
    :math:`4\varepsilon|x| + \varepsilon\min_j s_j`.

    References
    ----------
    .. [1] Chandrupatla, T. R. (1997). A new hybrid quadratic/bisection algorithm for finding
       the zero of a nonlinear function without using derivatives. *Advances in Engineering
       Software*, 28(3), 145-149.

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib.normal_mixture import mixture_ppf_log
    >>> from scipy.special import ndtri_exp
    >>> x = mixture_ppf_log(-1000.0, np.array([0.0]), 1.0)  # q = e^-1000, far below 1e-300
    >>> bool(np.isclose(x, ndtri_exp(-1000.0), rtol=1e-14))
    True
    """
    log_q = check_log_probability(log_q, "log_q")
    mix = _Mixture(means, scales, log_weights)
    return _ppf_log(mix, log_q.reshape(-1), upper).reshape(log_q.shape)[()]


def _ppf_log(mix, log_q, upper):
    """Element-wise bracketed root-find of ``log F(x) = log_q`` (or ``log S``) for 1-D log_q."""
    out = np.empty(log_q.size)
    at_zero_prob = log_q == -np.inf
    at_one = log_q == 0
    out[at_zero_prob] = np.inf if upper else -np.inf
    out[at_one] = -np.inf if upper else np.inf
    inner = ~(at_zero_prob | at_one)
    if not np.any(inner):
        return out
    target = log_q[inner]
    sign = -1.0 if upper else 1.0  # f increases with x in both cases

    def f(x, target):
        with np.errstate(over="ignore"):
            return sign * (mix.log_tail(x.reshape(-1), upper) - target.reshape(-1)).reshape(x.shape)

    lo, hi = _checked_bracket(mix, target, upper, f)
    scale_min = float(np.min(np.broadcast_to(mix.scales, (mix.n,))[mix.positive]))
    tol = {"xatol": np.finfo(float).eps * scale_min, "xrtol": 4 * np.finfo(float).eps}
    res = elementwise.find_root(f, (lo, hi), args=(target,), tolerances=tol, maxiter=_PPF_MAXITER)
    if not np.all(res.success):
        first = int(np.flatnonzero(~res.success)[0])
        q_text = f"log q = {target[first]!r}" + (" (upper tail)" if upper else "")
        raise FloatingPointError(
            f"quantile root-finding did not converge for {q_text} (status {int(res.status[first])}); "
            "no unconverged value is returned."
        )
    out[inner] = res.x
    return out


def _checked_bracket(mix, target, upper, f):
    """Widen the analytic bracket by a few ulps' worth so rounding cannot invalidate it."""
    lo, hi = mix.bracket(target, upper)
    big = np.finfo(float).max
    step = 1e-9 * np.broadcast_to(mix.scales, (mix.n,)).max() + 1e-12 * np.maximum(abs(lo), abs(hi))
    for _ in range(60):
        lo = np.clip(lo - step, -big, big)
        hi = np.clip(hi + step, -big, big)
        f_lo, f_hi = f(lo, target), f(hi, target)
        if np.all(f_lo <= 0) and np.all(f_hi >= 0):
            return lo, hi
        step = 4 * step
    bad = int(np.flatnonzero(~((f_lo <= 0) & (f_hi >= 0)))[0])
    raise FloatingPointError(
        f"could not bracket the quantile for log q = {target[bad]!r}: it lies beyond the "
        "largest finite double."
    )


class MixtureDistribution(DensityMixin):
    r"""The density contract (:class:`kdelib.base.DensityMixin`) for a weighted normal mixture.

    Subclasses implement ``_mixture_args()``, returning ``(means, scales, log_weights)`` in the
    compact form this module's functions take (a scalar scale, ``None`` for equal weights),
    after checking that the estimator is fitted. Every method validates its input once and
    evaluates the exact functions above; ``pdf``, ``cdf`` and ``sf`` are the direct sums, not
    exponentials of logarithms.

    Examples
    --------
    >>> from kdelib import GaussianKDE, GaussianMixtureCDF
    >>> from kdelib.normal_mixture import MixtureDistribution
    >>> isinstance(GaussianKDE(), MixtureDistribution), isinstance(GaussianMixtureCDF(), MixtureDistribution)
    (True, True)
    """

    def _mixture_args(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _evaluate(self, function, x):
        return function(as_float_array(x, "x"), *self._mixture_args())

    def pdf(self, x):
        return self._evaluate(mixture_pdf, x)

    def logpdf(self, x):
        return self._evaluate(mixture_logpdf, x)

    def cdf(self, x):
        return self._evaluate(mixture_cdf, x)

    def sf(self, x):
        return self._evaluate(mixture_sf, x)

    def logcdf(self, x):
        return self._evaluate(mixture_logcdf, x)

    def logsf(self, x):
        return self._evaluate(mixture_logsf, x)

    def _ppf_log(self, log_q, upper):
        return _ppf_log(_Mixture(*self._mixture_args()), log_q, upper)

    def _log_pdf_over_tail(self, x, upper):
        return mixture_log_pdf_over_tail(x, *self._mixture_args(), upper=upper)


for _name in ("pdf", "logpdf", "cdf", "logcdf", "sf", "logsf"):
    getattr(MixtureDistribution, _name).__doc__ = getattr(DensityMixin, _name).__doc__
del _name


def mixture_parameters(estimator):
    r"""Return a fitted normal-mixture estimator's ``(means, scales, log_weights)`` as arrays.

    Parameters
    ----------
    estimator : GaussianKDE or GaussianMixtureCDF
        A fitted estimator that is a weighted sum of normals (a subclass of
        :class:`MixtureDistribution`).

    Returns
    -------
    means : ndarray of shape (n,)
        Component means (the data points of a KDE).
    scales : ndarray of shape (n,)
        Component standard deviations (the bandwidth, repeated, for a KDE).
    log_weights : ndarray of shape (n,)
        Log mixing weights, ``logsumexp(log_weights) == 0``.

    Raises
    ------
    TypeError
        If ``estimator`` is not a normal mixture.
    sklearn.exceptions.NotFittedError
        If it is not fitted.

    Notes
    -----
    The estimator's density is :math:`f(x) = \sum_j e^{\ell_j}\,\phi((x-\mu_j)/s_j)/s_j`
    with these :math:`(\mu_j, s_j, \ell_j)`; every function of this module takes them.

    Examples
    --------
    >>> from kdelib import GaussianKDE
    >>> from kdelib.normal_mixture import mixture_parameters
    >>> means, scales, log_weights = mixture_parameters(GaussianKDE(bandwidth=0.5).fit([1.0, 3.0]))
    >>> means.tolist(), scales.tolist(), log_weights.round(4).tolist()
    ([1.0, 3.0], [0.5, 0.5], [-0.6931, -0.6931])
    """
    if not isinstance(estimator, MixtureDistribution):
        raise TypeError(
            f"{type(estimator).__name__} is not a normal mixture; pass a fitted GaussianKDE "
            "or GaussianMixtureCDF."
        )
    means, scales, log_weights = estimator._mixture_args()
    n = means.size
    scales = np.broadcast_to(np.asarray(scales, dtype=float), (n,)).copy()
    log_weights = np.full(n, -np.log(n)) if log_weights is None else np.array(log_weights, dtype=float)
    return np.array(means, dtype=float), scales, log_weights


# --------------------------------------------------------------------------- tail ratios
def log_mills_ratio(z):
    r"""Return :math:`\log(\Phi(z)/\phi(z))` for any ``z``, without cancellation.

    Parameters
    ----------
    z : ndarray of float64
        Any values, including :math:`\pm\infty`.

    Returns
    -------
    ndarray of z's shape

    Notes
    -----
    For :math:`z \le 0`, :math:`\Phi(z)/\phi(z) = \sqrt{\pi/2}\,\operatorname{erfcx}(-z/\sqrt2)`,
    so :math:`z^2/2` is never formed (it would lose :math:`\varepsilon z^2` and overflow for
    :math:`|z| > 1.3\times10^{154}`). For :math:`z > 0`, :math:`\Phi(z) \ge 1/2` and
    ``log_ndtr(z) + z^2/2 + log sqrt(2 pi)`` is exact to rounding.

    References
    ----------
    .. [1] Abramowitz, M. and Stegun, I. A. (1964). *Handbook of Mathematical Functions*,
       7.1.2 (the scaled complementary error function).

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib.normal_mixture import log_mills_ratio
    >>> ratio = np.exp(log_mills_ratio(np.array([0.0, -40.0])))  # Phi(z) / phi(z)
    >>> bool(np.isclose(ratio[0], np.sqrt(np.pi / 2), rtol=1e-15))  # Phi(0)/phi(0) = sqrt(pi/2)
    True
    >>> bool(np.isclose(ratio[1], 1 / 40, rtol=1e-3))  # ~ 1/|z| far in the lower tail
    True
    """
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    neg = z <= 0
    with np.errstate(divide="ignore"):  # z = -inf: erfcx(inf) = 0, log M = -inf
        out[neg] = 0.5 * np.log(0.5 * np.pi) + np.log(erfcx(-z[neg] * _SQRT_HALF))
    pos = z[~neg]  # Phi(z) >= 1/2 here, so log_ndtr is tiny and exact; z^2/2 is the whole value
    with np.errstate(over="ignore"):
        out[~neg] = log_ndtr(pos) + (pos * _SQRT_HALF) ** 2 + 0.5 * np.log(2.0 * np.pi)
    return out


def log_inverse_mills_ratio(u):
    r"""Return :math:`\log(\phi(z)/\Phi(z))` at :math:`z = -u`, ``u >= 0``, without cancellation.

    Parameters
    ----------
    u : ndarray of float64
        Non-negative distances into the lower tail.

    Returns
    -------
    ndarray of u's shape

    Notes
    -----
    :math:`\Phi(-u) = \tfrac12\operatorname{erfcx}(u/\sqrt2)\,e^{-u^2/2}`, so
    :math:`\phi(-u)/\Phi(-u) = \sqrt{2/\pi}/\operatorname{erfcx}(u/\sqrt2)`: no :math:`u^2/2`
    is formed. For large :math:`u` the ratio approaches :math:`u` (Mills, 1926).

    References
    ----------
    .. [1] Mills, J. P. (1926). Table of the ratio: area to bounding ordinate, for any portion
       of normal curve. *Biometrika*, 18(3/4), 395-400.

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib.normal_mixture import log_inverse_mills_ratio
    >>> r = np.exp(log_inverse_mills_ratio(np.array([1e6])))[0]
    >>> bool(abs(r / 1e6 - 1) < 1e-11)
    True
    """
    return _HALF_LOG_2_OVER_PI - np.log(erfcx(np.asarray(u, dtype=float) * _SQRT_HALF))


def _log_term_differences(z, means, scales, log_ws, k):
    """``a_j - a_k`` for each row, from ``z_j^2 - z_k^2 = (z_j - z_k)(z_j + z_k)``."""
    rows = np.arange(z.shape[0])
    zk, mk, sk = z[rows, k][:, None], means[k][:, None], scales[k][:, None]
    # Equal scales: z_j - z_k = (mu_k - mu_j)/s exactly, not a difference of two huge numbers.
    diff = np.where(scales == sk, (mk - means) / scales, z - zk)
    delta = log_ws - log_ws[k][:, None] - 0.5 * diff * (z + zk)
    return np.where(np.isnan(delta), -np.inf, delta)  # inf * 0 only for negligible terms


def mixture_log_pdf_over_tail(x, means, scales, log_weights=None, *, upper=False):
    r"""Return :math:`\log f(x) - \log F(x)` (or :math:`- \log S(x)`) of a normal mixture.

    Parameters
    ----------
    x : array_like
        Finite points, usually far in one tail.
    means, scales, log_weights
        The mixture, as in :func:`mixture_pdf`.
    upper : bool, default=False
        Divide by the survival function instead of the distribution function.

    Returns
    -------
    ndarray of shape (x.size,)

    Notes
    -----
    With :math:`a_j = \log w_j - \log s_j - z_j^2/2` and :math:`M(z) = \Phi(z)/\phi(z)`,

    .. math::

        \log f - \log F = \log \sum_j e^{a_j - a_k}
        - \log \sum_j e^{a_j - a_k + \log s_j + \log M(z_j)},

    for any reference component ``k``: the huge common part :math:`a_k` cancels exactly. The
    differences use :math:`z_j^2 - z_k^2 = (z_j - z_k)(z_j + z_k)`, with
    :math:`z_j - z_k = (\mu_k - \mu_j)/s` for equal scales, so each is accurate relative to
    its own size; subtracting :math:`\log f` and :math:`\log F` instead would lose
    :math:`\varepsilon z^2`. The upper tail is the lower tail of the mirrored mixture. Work is
    blocked to bounded memory.

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib.normal_mixture import mixture_log_pdf_over_tail, log_inverse_mills_ratio
    >>> got = mixture_log_pdf_over_tail(np.array([-1e8]), np.array([0.0]), 1.0)
    >>> bool(np.isclose(got[0], log_inverse_mills_ratio(np.array([1e8]))[0], rtol=1e-14))
    True
    """
    sign = -1.0 if upper else 1.0
    x = sign * np.asarray(x, dtype=float).reshape(-1)
    means = sign * np.asarray(means, dtype=float)
    n = means.size
    scales = np.broadcast_to(np.asarray(scales, dtype=float), (n,))
    log_w = np.full(n, -np.log(n)) if log_weights is None else np.asarray(log_weights, dtype=float)
    keep = np.isfinite(log_w)  # zero-weight components contribute nothing
    means, scales, log_w = means[keep], scales[keep], log_w[keep]
    log_ws = log_w - np.log(scales)
    out = np.empty(x.size)
    rows = max(1, _BLOCK_ELEMENTS // means.size)
    with np.errstate(over="ignore", invalid="ignore"):
        for start in range(0, x.size, rows):
            xb = x[start : start + rows, None]
            z = (xb - means) / scales
            # a_j themselves are rounded at the scale of z^2 (up to 1e308) and cannot rank
            # the components; the differences can. Rank against component 0, then measure
            # against the largest, so every kept term is exp(<= 0) of an accurate exponent.
            first = _log_term_differences(z, means, scales, log_ws, np.zeros(z.shape[0], np.intp))
            delta = _log_term_differences(z, means, scales, log_ws, np.argmax(first, axis=1))
            tail_terms = np.where(np.isinf(delta), -np.inf, delta + np.log(scales) + log_mills_ratio(z))
            out[start : start + rows] = logsumexp(delta, axis=1) - logsumexp(tail_terms, axis=1)
    return out
