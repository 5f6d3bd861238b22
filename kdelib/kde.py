r"""One-dimensional Gaussian kernel density estimate with exact tails.

Data ``x`` has shape (n,) (or (n, 1)); evaluation points may have any shape, and every
method returns an array of that shape.
"""

import numpy as np
import scipy.fft
from scipy.special import ndtr, ndtri
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from . import normal_mixture as nm
from ._validation import (
    as_1d_float,
    as_float_array,
    check_bandwidth,
    check_bounds,
    check_choice,
    check_n_samples,
    check_real,
    check_weights,
)
from .bandwidth import linear_binning, select_bandwidth
from .base import DensityMixin
from .bounded import BOUNDARY_METHODS, Reflected, Transformed

__all__ = ["GaussianKDE", "KDE_METHODS"]

#: Evaluation methods: ``"exact"`` sums every kernel; ``"binned"`` interpolates an FFT grid.
KDE_METHODS = {
    "exact": "sum of all n kernel terms at every point (log space in the tails)",
    "binned": "linear binning + FFT convolution on a grid, absolute error <= tol",
}

#: Largest binned grid (points) before ``fit`` refuses: three float64 tables of this size.
MAX_GRID_POINTS = 1 << 23
#: Smallest ``tol`` for the binned method: below it FFT round-off is no longer negligible.
MIN_BINNED_TOL = 1e-12

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)
# max_z |z^2 - 1| exp(-z^2/4) = 4 exp(-5/4), attained at z^2 = 5 (see binned_spacing).
_PDF_CURVATURE = 4.0 * np.exp(-1.25) * np.sqrt(2.0)
# max_z |z| phi(z) = phi(1), the largest curvature of Phi.
_CDF_CURVATURE = np.exp(-0.5) / np.sqrt(2.0 * np.pi)


class GaussianKDE(nm.MixtureDistribution, BaseEstimator):
    r"""Gaussian kernel density estimate of one variable, exact in the far tails.

    Parameters
    ----------
    bandwidth : float or str, default="scott"
        Kernel standard deviation :math:`h` in data units, or the name of a rule in
        :data:`kdelib.bandwidth.BANDWIDTH_SELECTORS` (``"scott"``, ``"silverman"``, ``"isj"``,
        ``"cv"``, ``"sj"``). A float works for a single data point; the rules need at least two
        distinct values.
    method : {"exact", "binned"}, default="exact"
        How :meth:`pdf`, :meth:`cdf` and :meth:`sf` are evaluated (see Notes). The log-space
        methods and the quantiles are always exact.
    tol : float, default=1e-8
        Absolute error allowed by ``method="binned"``: ``|cdf error| <= tol``, ``|sf error|
        <= tol`` and ``|pdf error| <= tol * max pdf``. Must lie in [1e-12, 0.1].
    bounds : (float, float) or None, default=None
        The support ``(lower, upper)``; either end may be infinite. ``None`` is the whole
        line (the plain KDE). Data must lie in the support (strictly inside for
        ``boundary="transform"``); outside it the density is 0.
    boundary : {"reflect", "transform"} or None, default=None
        Boundary correction for finite ``bounds`` (``None`` means ``"reflect"`` there; naming
        a method with no finite bound is an error). ``"reflect"`` reflects the kernels at each
        finite bound as often as needed; ``"transform"`` is a KDE of ``log(x - lower)``,
        ``log(upper - x)`` or the logit, mapped back with its Jacobian. See
        :mod:`kdelib.bounded`. Bandwidth rules see the data as the method uses them:
        reflection, the data themselves (the bandwidth is in data units); transformation,
        the transformed data (the bandwidth, float or rule, is in transformed units).
        Bounded estimates support only ``method="exact"``.

    Attributes
    ----------
    bandwidth_ : float
        The kernel standard deviation used.
    dataset_ : ndarray of shape (n,)
        The data, sorted.
    weights_ : ndarray of shape (n,) or None
        Normalised weights in the order of ``dataset_``, or None for equal weights.
    log_weights_ : ndarray of shape (n,) or None
        ``log(weights_)`` (``-inf`` for zero weights), or None.
    method_ : str
        The evaluation method, normalised (``"exact"`` or ``"binned"``).
    n_ : int
        Number of data points.
    support_ : tuple of float
        ``(lower, upper)``, ``(-inf, inf)`` without bounds.
    boundary_ : str or None
        The boundary method used, or None for the plain KDE.
    transformed_ : GaussianKDE or None
        For ``boundary="transform"``, the plain KDE of the transformed data.
    grid_start_, grid_step_ : float
        First node and spacing of the binned grid (``method="binned"`` only).
    grid_pdf_, grid_cdf_, grid_sf_ : ndarray
        Binned pdf, cdf and sf on the grid (``method="binned"`` only).

    See Also
    --------
    kdelib.bandwidth.select_bandwidth : The bandwidth rules.
    kdelib.GaussianMixtureCDF : The same interface for a fitted Gaussian mixture.

    Notes
    -----
    With data :math:`x_i`, weights :math:`w_i` (:math:`\sum_i w_i = 1`) and bandwidth
    :math:`h`,

    .. math::

        \hat f(x) = \sum_{i=1}^n \frac{w_i}{h}\,\phi\!\left(\frac{x - x_i}{h}\right), \qquad
        \hat F(x) = \sum_{i=1}^n w_i\,\Phi\!\left(\frac{x - x_i}{h}\right), \qquad
        \hat S(x) = \sum_{i=1}^n w_i\,\Phi\!\left(\frac{x_i - x}{h}\right).

    *Exact method.* The estimate is a Gaussian mixture with means :math:`x_i` and one scale
    :math:`h`, evaluated by :mod:`kdelib.normal_mixture`: every kernel term is summed in
    blocks of bounded memory on all cores; :math:`F` and :math:`S` come from one
    ``scipy.special.ndtr`` call per term on the smaller tail, so both keep full relative
    precision; logarithms switch to ``log_ndtr`` + ``logsumexp`` where the sums underflow.
    ``logcdf``/``logsf``/``logpdf`` are therefore finite for every finite ``x`` whose true
    value is a double, and ``-inf`` only beyond (e.g. ``(x - x_i)/h`` near ``-1e300``).

    *Binned method* (``pdf``, ``cdf``, ``sf`` only). The data are linearly binned onto a grid of
    spacing :math:`\delta`, the bin masses are convolved (FFT, ``scipy.fft``) with the kernel
    :math:`\phi_h` and with :math:`\Phi(\pm u/h)` (exact step beyond the kernel's reach, from
    cumulative masses), and the grid values are linearly interpolated to ``x``. Linear binning
    and linear interpolation each err by at most :math:`\delta^2/8` times a second
    derivative. For the cdf that derivative is at most :math:`\phi(1)/h^2`; for the pdf,
    :math:`|z^2-1|\phi(z) \le 4e^{-5/4}\sqrt2\,\phi_{\sqrt2}(z)` bounds it by
    :math:`4e^{-5/4}\sqrt2\,\max\hat f/h^2` (smoothing cannot raise the maximum). So

    .. math::

        |\Delta \hat F| \le \frac{\delta^2 \phi(1)}{4h^2}, \qquad
        |\Delta \hat f| \le \frac{\delta^2\, 4e^{-5/4}\sqrt2}{4h^2}\,\max \hat f,

    and ``fit`` takes :math:`\delta` so that each is at most ``tol/2``; the kernel is cut at
    :math:`L h` with :math:`\Phi(-L)` and :math:`\sqrt2 e^{-L^2/4}` at most ``tol/4``, and
    beyond the grid the pdf is 0 and the cdf 0 or 1 (within the same bounds). FFT
    round-off (about 1e-16 absolute) can leave values a few ulps outside [0, 1] (pdf below 0);
    they are clipped, which moves them by less than that round-off.

    The quantile :math:`\hat F^{-1}(q)` is a bracketed root-find in log space that converges
    or raises (``FloatingPointError``); it never returns an unconverged value.

    References
    ----------
    .. [1] Silverman, B. W. (1986). *Density Estimation for Statistics and Data Analysis*.
       Chapman and Hall.
    .. [2] Wand, M. P. (1994). Fast computation of multivariate kernel estimators. *Journal of
       Computational and Graphical Statistics*, 3(4), 433-445.

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib import GaussianKDE
    >>> kde = GaussianKDE(bandwidth=0.5).fit([-1.0, 0.0, 1.0])
    >>> float(kde.cdf(0.0))
    0.5
    >>> round(float(kde.logsf(60.0)), 3)  # far beyond the data, still finite
    -6968.788
    >>> round(float(kde.ppf(kde.cdf(0.3))), 12)
    0.3
    """

    def __init__(self, *, bandwidth="scott", method="exact", tol=1e-8, bounds=None, boundary=None):
        self.bandwidth = bandwidth
        self.method = method
        self.tol = tol
        self.bounds = bounds
        self.boundary = boundary

    # -- fitting ----------------------------------------------------------------------------

    def fit(self, x, y=None, sample_weight=None):
        """Store the sorted data, normalised weights and the bandwidth.

        Parameters
        ----------
        x : array_like of shape (n,) or (n, 1)
            Finite data, at least one point (two distinct values for a bandwidth rule).
        y : None
            Ignored.
        sample_weight : array_like of shape (n,), optional
            Non-negative weights of the data points, normalised to sum to one. Integer
            weights give the same estimate as repeating the points.

        Returns
        -------
        self : GaussianKDE

        Examples
        --------
        >>> from kdelib import GaussianKDE
        >>> kde = GaussianKDE(bandwidth=0.5).fit([0.0, 1.0, 1.0, 3.0], sample_weight=[1, 2, 0, 1])
        >>> kde.dataset_.tolist(), kde.weights_.tolist()
        ([0.0, 1.0, 1.0, 3.0], [0.25, 0.5, 0.0, 0.25])
        """
        method = check_choice(self.method, KDE_METHODS, "method")
        tol = check_real(
            self.tol, "tol", low=MIN_BINNED_TOL, high=0.1,
            hint="Below 1e-12 FFT round-off dominates; use method='exact' for full precision.",
        )
        data = as_1d_float(x, "x", min_size=1)
        weights = check_weights(sample_weight, data.size, "sample_weight")
        lower, upper, boundary = self._check_support(data, method)
        self.support_, self.boundary_, self.transformed_ = (lower, upper), boundary, None
        self._boundary_model = None
        if boundary is not None:
            return self._fit_bounded(data, weights, boundary)
        bandwidth = self._resolve_bandwidth(data, weights)
        order = np.argsort(data, kind="stable")
        self.dataset_ = data[order]
        self.weights_ = None if weights is None else weights[order]
        self.n_ = int(data.size)
        self.bandwidth_ = bandwidth
        with np.errstate(divide="ignore"):  # zero weights become log weight -inf
            self.log_weights_ = None if weights is None else np.log(self.weights_)
        self.method_ = method
        if method == "binned":
            self._fit_grid(tol)
        return self

    def _check_support(self, data, method):
        lower, upper = check_bounds(self.bounds, "bounds")
        bounded = np.isfinite(lower) or np.isfinite(upper)
        if self.boundary is None:
            boundary = "reflect" if bounded else None
        else:
            boundary = check_choice(self.boundary, BOUNDARY_METHODS, "boundary")
            if not bounded:
                raise ValueError(
                    f"boundary={self.boundary!r} needs a finite bound; bounds={self.bounds!r} is "
                    "the whole line. Pass bounds=(lower, upper) or leave boundary=None."
                )
        if boundary is None:
            return lower, upper, None
        if method != "exact":
            raise ValueError("bounded estimates support only method='exact'; drop method='binned'.")
        strict = boundary == "transform"
        outside = (data <= lower) | (data >= upper) if strict else (data < lower) | (data > upper)
        if np.any(outside):
            where = "strictly inside" if strict else "inside"
            raise ValueError(
                f"{int(outside.sum())} data value(s) are not {where} bounds=({lower!r}, {upper!r}) "
                f"(first: {data[outside][0]!r}). Widen the bounds or remove those points"
                + (" (a log transform cannot take a point on the bound)." if strict else ".")
            )
        return lower, upper, boundary

    def _fit_bounded(self, data, weights, boundary):
        lower, upper = self.support_
        order = np.argsort(data, kind="stable")
        self.dataset_ = data[order]
        self.weights_ = None if weights is None else weights[order]
        self.n_ = int(data.size)
        with np.errstate(divide="ignore"):
            self.log_weights_ = None if weights is None else np.log(self.weights_)
        self.method_ = "exact"
        if boundary == "reflect":
            self.bandwidth_ = self._resolve_bandwidth(self.dataset_, self.weights_)
            self._boundary_model = Reflected(self.dataset_, self.log_weights_, self.bandwidth_, lower, upper)
        else:
            y = Transformed.forward(data, lower, upper)
            inner = GaussianKDE(bandwidth=self.bandwidth).fit(y, sample_weight=weights)
            self.transformed_ = inner
            self.bandwidth_ = inner.bandwidth_
            self._boundary_model = Transformed(inner, lower, upper)
        return self

    def _model(self):
        check_is_fitted(self)
        return self._boundary_model

    def _resolve_bandwidth(self, data, weights):
        if isinstance(self.bandwidth, str):
            if data.size < 2:
                raise ValueError(
                    f"bandwidth rule {self.bandwidth!r} needs at least 2 data points; got 1. "
                    "Pass a positive float bandwidth to fit a single kernel."
                )
            return float(select_bandwidth(data, self.bandwidth, weights))
        return check_bandwidth(self.bandwidth)

    def _fit_grid(self, tol):
        grid = binned_tables(self.dataset_, self.weights_, self.bandwidth_, tol)
        self.grid_start_, self.grid_step_, self.grid_pdf_, self.grid_cdf_, self.grid_sf_ = grid

    # -- evaluation -------------------------------------------------------------------------

    def _mixture_args(self):
        check_is_fitted(self)
        if self._boundary_model is not None:
            raise ValueError(
                "a bounded KDE is not a normal mixture (its kernels are reflected or "
                "transformed); use its own methods."
            )
        return self.dataset_, self.bandwidth_, self.log_weights_

    def _binned(self):
        check_is_fitted(self)
        return self.method_ == "binned"

    def pdf(self, x):
        r"""Density :math:`\hat f(x)`; binned (within ``tol * max pdf``) if ``method="binned"``.

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import GaussianKDE
        >>> x = np.random.default_rng(0).normal(size=500)
        >>> exact = GaussianKDE(bandwidth=0.3).fit(x)
        >>> binned = GaussianKDE(bandwidth=0.3, method="binned", tol=1e-8).fit(x)
        >>> t = np.linspace(-3, 3, 13)
        >>> bool(np.max(np.abs(binned.pdf(t) - exact.pdf(t))) <= 1e-8 * exact.pdf(t).max())
        True
        """
        if self._model() is not None:
            return np.exp(self.logpdf(x))
        if self._binned():
            return self._interpolate(as_float_array(x, "x"), self.grid_pdf_, 0.0, 0.0, upper_bound=np.inf)
        return super().pdf(x)

    def cdf(self, x):
        r"""Distribution function :math:`\hat F(x)`; within ``tol`` if ``method="binned"``.

        Examples
        --------
        >>> from kdelib import GaussianKDE
        >>> kde = GaussianKDE(bandwidth=0.5).fit([-1.0, 1.0])
        >>> float(kde.cdf(0.0)), bool(kde.cdf(-15.0) > 0)
        (0.5, True)
        """
        if self._model() is not None:
            return np.exp(self.logcdf(x))
        if self._binned():
            return self._interpolate(as_float_array(x, "x"), self.grid_cdf_, 0.0, 1.0)
        return super().cdf(x)

    def sf(self, x):
        r"""Survival function :math:`\hat S(x)` (never ``1 - cdf``); within ``tol`` if binned.

        Examples
        --------
        >>> from kdelib import GaussianKDE
        >>> kde = GaussianKDE(bandwidth=0.5).fit([-1.0, 1.0])
        >>> float(kde.sf(0.0)), bool(kde.sf(12.0) > 0)  # 1 - cdf(12.0) is exactly 0.0
        (0.5, True)
        """
        if self._model() is not None:
            return np.exp(self.logsf(x))
        if self._binned():
            return self._interpolate(as_float_array(x, "x"), self.grid_sf_, 1.0, 0.0)
        return super().sf(x)

    def logpdf(self, x):
        model = self._model()
        return super().logpdf(x) if model is None else model.logpdf(x)

    def logcdf(self, x):
        model = self._model()
        return super().logcdf(x) if model is None else model.log_tail(x, False)

    def logsf(self, x):
        model = self._model()
        return super().logsf(x) if model is None else model.log_tail(x, True)

    def _ppf_log(self, log_q, upper):
        model = self._model()
        return super()._ppf_log(log_q, upper) if model is None else model.ppf_log(log_q, upper)

    def _log_pdf_over_tail(self, x, upper):
        if self._model() is None:
            return super()._log_pdf_over_tail(x, upper)
        return DensityMixin._log_pdf_over_tail(self, x, upper)

    # -- pointwise uncertainty --------------------------------------------------------------

    def pdf_std(self, x):
        r"""Estimated standard deviation of :math:`\hat f(x)` over samples (variance only).

        For independent data with density :math:`f` and weights :math:`w_i`
        (:math:`\sum_i w_i = 1`), :math:`\hat f(x) = \sum_i w_i K_h(x - X_i)` has variance

        .. math::

            \operatorname{Var}\hat f(x) = \frac{(K_h^2 * f)(x) - (K_h * f)(x)^2}{n_{\mathrm{eff}}},
            \qquad n_{\mathrm{eff}} = \frac{1}{\sum_i w_i^2},

        and for a Gaussian kernel :math:`K_h(u)^2 = \phi_{h/\sqrt2}(u) / (2\sqrt\pi\, h)`. The
        estimate plugs in the data: :math:`(K_h^2 * f)(x)` becomes the KDE with bandwidth
        :math:`h/\sqrt2` divided by :math:`2\sqrt\pi h` (an unbiased estimate), and
        :math:`(K_h * f)(x)` becomes :math:`\hat f(x)` (so the estimate is low by the factor
        :math:`1 - 1/n_{\mathrm{eff}}` on average). Both sums are exact
        (:mod:`kdelib.normal_mixture`), also when ``method="binned"``. Rounding can leave the
        difference a few ulps below zero where both terms underflow towards zero; it is then
        0.

        With ``bounds``: for reflection the kernel is the sum of its images
        :math:`\sum_b \phi_h(y_b(x) - X)`, and the product of two images is again a normal
        density in :math:`X`, so :math:`E\,k^2` is a sum over pairs of images of KDEs with
        bandwidth :math:`h/\sqrt2` (see ``Reflected.pdf_variance`` in :mod:`kdelib.bounded`); for
        transformation the standard deviation is that of the transformed KDE times
        :math:`|t'(x)|`. Outside the support it is 0.

        This is the sampling spread of :math:`\hat f(x)` around its mean :math:`(K_h * f)(x)`,
        not around :math:`f(x)`: the smoothing bias :math:`(K_h * f - f)(x)` (about
        :math:`\tfrac12 h^2 f''(x)`) is not in it, so ``pdf(x) +- z * pdf_std(x)`` covers
        :math:`K_h * f`, and :math:`f` only where the bias is small against the spread.

        Parameters
        ----------
        x : array_like
            Finite evaluation points, any shape.

        Returns
        -------
        ndarray of ``x``'s shape

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import GaussianKDE
        >>> kde = GaussianKDE(bandwidth=0.5).fit(np.random.default_rng(0).normal(size=400))
        >>> bool(0 < kde.pdf_std(0.0) < 0.1 * kde.pdf(0.0))
        True
        """
        check_is_fitted(self)
        x = as_float_array(x, "x")
        return np.sqrt(self._pdf_variance(x))[()]

    def _pdf_variance(self, x):
        h = self.bandwidth_
        n_eff = self.n_ if self.weights_ is None else 1.0 / np.dot(self.weights_, self.weights_)
        if self._boundary_model is not None:
            return self._boundary_model.pdf_variance(x, n_eff)
        square = nm.mixture_pdf(x, self.dataset_, h / np.sqrt(2.0), self.log_weights_)
        mean = nm.mixture_pdf(x, self.dataset_, h, self.log_weights_)
        variance = (square / (2.0 * np.sqrt(np.pi) * h) - mean * mean) / n_eff
        return np.maximum(variance, 0.0)

    def pdf_band(self, x, level=0.95):
        r"""Pointwise variance-only band ``pdf(x) -+ z * pdf_std(x)``, ``z`` the normal quantile.

        ``z = Phi^{-1}((1 + level) / 2)``. The band describes the sampling spread of the
        estimate only (see :meth:`pdf_std`): it leaves out the smoothing bias, so its coverage
        of the true density is below ``level`` where the bias is not small. The lower edge
        may be negative.

        Parameters
        ----------
        x : array_like
            Finite evaluation points, any shape.
        level : float, default=0.95
            Nominal pointwise coverage, in (0, 1).

        Returns
        -------
        lower, upper : ndarray of ``x``'s shape

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import GaussianKDE
        >>> kde = GaussianKDE(bandwidth=0.4).fit(np.random.default_rng(0).normal(size=2000))
        >>> lower, upper = kde.pdf_band([0.0], level=0.95)
        >>> bool(np.isclose(upper[0] - kde.pdf(0.0), 1.959964 * kde.pdf_std([0.0])[0], rtol=1e-6))
        True
        """
        level = check_real(level, "level", low=0.0, high=1.0, low_open=True, high_open=True)
        centre = np.asarray(self.pdf(x), dtype=float)
        half = ndtri(0.5 + 0.5 * level) * np.asarray(self.pdf_std(x), dtype=float)
        return (centre - half)[()], (centre + half)[()]

    def sample(self, n_samples=1, random_state=None):
        """Draw ``n_samples`` points: pick data points by weight, add ``N(0, h^2)`` noise.

        With bounds, the draws are folded into the support (reflection) or drawn from the
        transformed KDE and mapped back (transformation): the distribution of the estimate.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : None, int, numpy.random.Generator or SeedSequence
            Passed to ``numpy.random.default_rng``.

        Returns
        -------
        ndarray of shape (n_samples,)

        Examples
        --------
        >>> from scipy.stats import kstest
        >>> from kdelib import GaussianKDE
        >>> kde = GaussianKDE(bandwidth=0.4).fit([-1.0, 0.0, 2.0])
        >>> draws = kde.sample(2000, random_state=0)
        >>> draws.shape, bool(kstest(draws, kde.cdf).pvalue > 0.01)
        ((2000,), True)
        """
        model = self._model()
        if isinstance(model, Transformed):
            return model.inverse(self.transformed_.sample(n_samples, random_state))
        n_samples = check_n_samples(n_samples)
        rng = np.random.default_rng(random_state)
        if self.weights_ is None:
            centres = self.dataset_[rng.integers(self.n_, size=n_samples)]
        else:
            centres = self.dataset_[rng.choice(self.n_, size=n_samples, p=self.weights_)]
        draws = centres + self.bandwidth_ * rng.standard_normal(n_samples)
        return draws if model is None else model.fold(draws)

    def _interpolate(self, x, table, left, right, upper_bound=1.0):
        """Linear interpolation of a grid table at ``x``; ``left``/``right`` beyond the grid."""
        flat = x.reshape(-1)
        position = (flat - self.grid_start_) / self.grid_step_
        inside = (position >= 0) & (position <= table.size - 1)
        out = np.where(position < 0, left, right).astype(float)
        pos = position[inside]
        index = np.minimum(pos.astype(np.intp), table.size - 2)
        frac = pos - index
        out[inside] = (1.0 - frac) * table[index] + frac * table[index + 1]
        # Only FFT round-off (~1e-16) can leave the range; see Notes.
        np.clip(out, 0.0, upper_bound, out=out)
        return out.reshape(x.shape)[()]


for _name in ("logpdf", "logcdf", "logsf"):
    getattr(GaussianKDE, _name).__doc__ = getattr(nm.MixtureDistribution, _name).__doc__
del _name


def binned_spacing(bandwidth, tol):
    r"""Grid spacing and kernel reach (in bandwidths) for an absolute error ``tol``.

    Returns ``(delta, reach)`` with

    .. math::

        \delta = h \min\left(\sqrt{\frac{2\,\mathrm{tol}}{\phi(1)}},
                             \sqrt{\frac{2\,\mathrm{tol}}{4 e^{-5/4}\sqrt2}}\right), \qquad
        L = \max\left(-\Phi^{-1}(\mathrm{tol}/4),\; 2\sqrt{\log(4\sqrt2/\mathrm{tol})}\right),

    so that binning plus interpolation error is at most ``tol/2`` for the cdf and
    ``tol/2 * max pdf`` for the pdf, and the kernel cut-off adds at most ``tol/4``.
    """
    delta = bandwidth * min(np.sqrt(2.0 * tol / _CDF_CURVATURE), np.sqrt(2.0 * tol / _PDF_CURVATURE))
    reach = max(-ndtri(tol / 4.0), 2.0 * np.sqrt(np.log(4.0 * np.sqrt(2.0) / tol)))
    return delta, reach


def binned_tables(data, weights, bandwidth, tol):
    """Return ``(start, step, pdf, cdf, sf)`` tables of the binned estimate on its grid.

    ``data`` must be sorted. Raises ``ValueError`` if the grid would exceed
    :data:`MAX_GRID_POINTS` (data range too wide for the bandwidth and ``tol``).
    """
    delta, reach = binned_spacing(bandwidth, tol)
    half = int(np.ceil(reach * bandwidth / delta))  # kernel half-width in grid steps
    span = data[-1] - data[0]
    n_grid = int(np.ceil(span / delta)) + 2 * half + 2
    if not n_grid <= MAX_GRID_POINTS:
        raise ValueError(
            f"method='binned' would need a grid of {n_grid} points (data range {span:.3g} is "
            f"{span / bandwidth:.3g} bandwidths at tol={tol:g}); the limit is {MAX_GRID_POINTS}. "
            "Use method='exact', a larger tol, or a larger bandwidth."
        )
    start = data[0] - half * delta
    mass = linear_binning(data, start, delta, n_grid, weights)
    offsets = np.arange(-half, half + 1) * (delta / bandwidth)
    kernels = (
        np.exp(-0.5 * offsets**2) / (np.sqrt(2.0 * np.pi) * bandwidth),
        ndtr(offsets),
        ndtr(-offsets),
    )
    pdf, lower, upper = _convolve_same(mass, kernels, half)
    # Beyond the kernel's reach Phi is exactly 0 or 1: add the mass lying entirely below
    # (for the cdf) or above (for the sf) each node.
    below = np.concatenate((np.zeros(half + 1), np.cumsum(mass)[: n_grid - half - 1]))
    above = np.concatenate((np.cumsum(mass[::-1])[::-1][half + 1 :], np.zeros(half + 1)))
    return start, delta, pdf, lower + below, upper + above


def _convolve_same(signal, kernels, half):
    """Convolve ``signal`` with each centred kernel (length ``2*half+1``), sharing one FFT."""
    n = signal.size
    size = scipy.fft.next_fast_len(n + 2 * half, real=True)
    spectrum = scipy.fft.rfft(signal, size)
    return [scipy.fft.irfft(spectrum * scipy.fft.rfft(k, size), size)[half : half + n] for k in kernels]
