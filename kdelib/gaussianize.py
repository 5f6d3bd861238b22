r"""Marginal Gaussianization: map each column through its fitted CDF and the normal quantile.

Shape contract: ``X`` is 2-D (n_samples, n_features); ``transform`` and ``inverse_transform``
return that shape, ``log_det_jacobian`` and ``score_samples`` return (n_samples,).
"""

import numpy as np
from scipy.special import log_ndtr, ndtri_exp
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .normal_mixture import log_inverse_mills_ratio, log_mills_ratio

__all__ = ["FAR_TAIL_LOG", "KDEGaussianizer", "MarginalGaussianizer", "MixtureGaussianizer", "SplineGaussianizer",
           "Z_LOG_MAX", "Z_MAX"]

#: Largest :math:`|z|` that ``ndtri_exp`` returns for a finite log-probability
#: (``-ndtri_exp(-1.797e308)``, about 1.896e154). Every ``z`` computed in log space lies within it.
Z_LOG_MAX = float(-ndtri_exp(-np.finfo(np.float64).max))

#: Saturation bound of the transform, the next double above :data:`Z_LOG_MAX`. Where
#: :math:`\log F(x)` (or :math:`\log S(x)`) is below the most negative double (it rounds to
#: ``-inf``), ``z`` is set to ``-Z_MAX`` (or ``+Z_MAX``): finite, and beyond every
#: non-saturated ``z``, so the transform stays monotone.
Z_MAX = float(np.nextafter(Z_LOG_MAX, np.inf))

#: Below this log tail probability, ``log_det_jacobian`` evaluates ``log f - log T`` from the
#: component sums instead of subtracting two large logarithms (whose rounding errors, about
#: ``eps * |log T|``, would exceed 1e-13 beyond it).
FAR_TAIL_LOG = 100.0


# --------------------------------------------------------------------------- one column
def _column_tails(dist, x):
    """Return ``(log F, log S, lower)``: ``lower`` marks where the lower tail is the smaller."""
    log_cdf = np.asarray(dist.logcdf(x), dtype=float)
    log_sf = np.asarray(dist.logsf(x), dtype=float)
    return log_cdf, log_sf, log_cdf <= log_sf


def _z_from_tails(log_cdf, log_sf, lower):
    """``Phi^-1(F)`` from the smaller log tail; ``-inf`` tails saturate at ``-+Z_MAX``."""
    z = np.empty_like(log_cdf)
    z[lower] = _normal_lower_quantile(log_cdf[lower])
    z[~lower] = -_normal_lower_quantile(log_sf[~lower])
    saturated = np.isinf(z)
    return np.where(saturated, np.copysign(Z_MAX, z), z), saturated


def _normal_lower_quantile(log_q):
    r"""Return :math:`\Phi^{-1}(e^{\log q})` for :math:`\log q \le \log\frac12`, to full precision.

    ``scipy.special.ndtri_exp`` is off by up to about 5e-13 relative for
    :math:`-10^7 < \log q < -10^4`; one Newton step on :math:`\log\Phi(z) = \log q`,
    :math:`z \leftarrow z - (\log\Phi(z) - \log q)\,\Phi(z)/\phi(z)`, restores full precision
    (the error is squared). The step is skipped where it is not finite (``z = -inf``, or
    :math:`|z|` so large that :math:`\log\Phi(z)` overflows).
    """
    z = ndtri_exp(log_q)
    with np.errstate(invalid="ignore", over="ignore"):
        step = (log_ndtr(z) - log_q) * np.exp(log_mills_ratio(z))
    return np.where(np.isfinite(step), z - step, z)


def _column_transform(dist, x):
    log_cdf, log_sf, lower = _column_tails(dist, x)
    return _z_from_tails(log_cdf, log_sf, lower)[0]


def _column_inverse(dist, z):
    x = np.empty_like(z)
    lower = z <= 0
    # The smaller tail of Phi(z) is exact in log space on each side of the median.
    x[lower] = dist.ppf_log(log_ndtr(z[lower]))
    x[~lower] = dist.ppf_log(log_ndtr(-z[~lower]), upper=True)
    return x


def _column_log_det(dist, x):
    r""":math:`\log f(x) - \log\phi(z)`, written as :math:`\log f - \log T - \log(\phi/\Phi)(-|z|)`.

    ``T`` is the smaller tail (``F`` or ``S``), with :math:`\log\Phi(-|z|) = \log T` by
    construction. Where :math:`\log T` is below ``-FAR_TAIL_LOG``, ``log f`` and ``log T`` are
    both large and their difference would lose digits, so :math:`\log f - \log T` comes from
    the distribution's own ``_log_pdf_over_tail`` (for normal mixtures,
    :func:`kdelib.normal_mixture.mixture_log_pdf_over_tail`, which cancels the common exponent).
    """
    log_cdf, log_sf, lower = _column_tails(dist, x)
    z, saturated = _z_from_tails(log_cdf, log_sf, lower)
    log_tail = np.where(lower, log_cdf, log_sf)
    far = (log_tail < -FAR_TAIL_LOG) & ~saturated
    near = ~(far | saturated)
    pdf_over_tail = np.full(x.shape, -np.inf)
    pdf_over_tail[near] = np.asarray(dist.logpdf(x[near]), dtype=float) - log_tail[near]
    for upper in (False, True):
        sel = far & (lower != upper)
        if np.any(sel):
            pdf_over_tail[sel] = dist._log_pdf_over_tail(x[sel], upper)
    # Saturated z is constant in x: its derivative is 0 (and the true log f is below -1.8e308).
    return np.where(saturated, -np.inf, pdf_over_tail - log_inverse_mills_ratio(np.abs(z)))


# --------------------------------------------------------------------------- estimators
class MarginalGaussianizer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    r"""Base of the Gaussianizers: one 1-D density per column, then :math:`z = \Phi^{-1}(F(x))`.

    A subclass only says which density to fit, in ``_make_marginal``: an unfitted estimator
    following the density contract of :mod:`kdelib.base` (``fit``, ``logpdf``, ``logcdf``,
    ``logsf``, ``ppf_log`` and ``_log_pdf_over_tail``). Transform, inverse, log-determinant
    and scores are shared, so every Gaussianizer is exact in the same way (see the Notes of
    :class:`KDEGaussianizer`).

    Examples
    --------
    >>> from kdelib import GaussianKDE
    >>> from kdelib.gaussianize import MarginalGaussianizer
    >>> class Wide(MarginalGaussianizer):
    ...     def _make_marginal(self):
    ...         return GaussianKDE(bandwidth=2.0)
    >>> Wide().fit([[0.0], [1.0]]).transform([[0.5]]).tolist()
    [[0.0]]
    """

    def _make_marginal(self):  # pragma: no cover - abstract
        """Return an unfitted 1-D density estimator (the contract of :mod:`kdelib.base`)."""
        raise NotImplementedError

    def fit(self, X, y=None):
        """Fit one distribution per column of ``X``.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Finite training data, at least two samples.
        y : None
            Ignored; present for the scikit-learn API.

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import KDEGaussianizer
        >>> X = np.random.default_rng(0).exponential(size=(300, 2))
        >>> g = KDEGaussianizer().fit(X)
        >>> len(g.marginals_), g.n_features_in_
        (2, 2)
        """
        with np.errstate(over="ignore", invalid="ignore"):  # see _validated
            X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        self.marginals_ = [self._make_marginal().fit(X[:, j]) for j in range(X.shape[1])]
        return self

    def _validated(self, X):
        check_is_fitted(self)
        # sklearn's finiteness check sums X first; for entries near +-1.8e308 that sum
        # overflows and numpy warns although every entry is finite (then checked one by one).
        with np.errstate(over="ignore", invalid="ignore"):
            return validate_data(self, X, dtype=np.float64, reset=False)

    def _per_column(self, X, func):
        return np.column_stack([func(dist, X[:, j]) for j, dist in enumerate(self.marginals_)])

    def transform(self, X):
        r"""Map each column to standard normal scores :math:`z = \Phi^{-1}(F(x))`.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Finite data.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_features)
            Finite scores in :math:`[-Z_{\max}, Z_{\max}]`.

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import KDEGaussianizer
        >>> X = np.random.default_rng(0).exponential(size=(300, 2))
        >>> g = KDEGaussianizer().fit(X)
        >>> Z = g.transform(X)  # increasing in each column: ranks are kept
        >>> bool(np.array_equal(np.argsort(Z, axis=0), np.argsort(X, axis=0)))
        True
        """
        X = self._validated(X)
        return self._per_column(X, _column_transform)

    def inverse_transform(self, X):
        r"""Map normal scores back: :math:`x = F^{-1}(\Phi(z))`, solved in log space.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Finite normal scores.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
            Data values; :math:`\mp\infty` for :math:`|z| > Z_{\mathrm{log\,max}}`, whose tail
            probability is below the smallest double's exponent range.

        Raises
        ------
        FloatingPointError
            If the quantile root-finder does not converge (it never returns an unconverged
            value).

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import KDEGaussianizer
        >>> X = np.random.default_rng(0).exponential(size=(300, 2))
        >>> g = KDEGaussianizer().fit(X)
        >>> bool(np.allclose(g.inverse_transform(g.transform(X)), X, rtol=1e-12, atol=1e-12))
        True
        """
        Z = self._validated(X)
        return self._per_column(Z, _column_inverse)

    def log_det_jacobian(self, X):
        r"""Return :math:`\sum_j \log |dz_j/dx_j| = \sum_j [\log f_j(x_j) - \log\phi(z_j)]`.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Finite data.

        Returns
        -------
        ndarray of shape (n_samples,)
            ``-inf`` only where a column saturates (see :data:`Z_MAX`).

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import KDEGaussianizer
        >>> X = np.random.default_rng(0).exponential(size=(300, 2))
        >>> g = KDEGaussianizer().fit(X)
        >>> x, step = X[:1], 1e-6
        >>> slopes = (g.transform(x + step) - g.transform(x - step))[0] / (2 * step)  # diagonal J
        >>> bool(np.isclose(g.log_det_jacobian(x)[0], np.log(slopes).sum(), rtol=1e-6))
        True
        """
        X = self._validated(X)
        return self._per_column(X, _column_log_det).sum(axis=1)

    def score_samples(self, X):
        r"""Return the log-density of each sample under the fitted product of marginals.

        .. math::

            \log p(x) = \sum_j \log\phi(z_j) + \log|\det J(x)| = \sum_j \log f_j(x_j).

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Finite data.

        Returns
        -------
        ndarray of shape (n_samples,)

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import KDEGaussianizer
        >>> X = np.random.default_rng(0).exponential(size=(300, 2))
        >>> g = KDEGaussianizer().fit(X)
        >>> expected = g.marginals_[0].logpdf(X[:, 0]) + g.marginals_[1].logpdf(X[:, 1])
        >>> bool(np.allclose(g.score_samples(X), expected, rtol=1e-14))
        True
        """
        X = self._validated(X)
        return self._per_column(X, lambda dist, x: dist.logpdf(x)).sum(axis=1)

    def score(self, X, y=None):
        """Return the mean log-density per sample (see :meth:`score_samples`).

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Finite data.
        y : None
            Ignored.

        Returns
        -------
        float

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import KDEGaussianizer
        >>> X = np.random.default_rng(0).exponential(size=(300, 2))
        >>> g = KDEGaussianizer().fit(X)
        >>> bool(np.isclose(g.score(X), g.score_samples(X).mean(), rtol=1e-15))
        True
        """
        return float(np.mean(self.score_samples(X)))


_SHARED_NOTES = r"""
    Notes
    -----
    .. math::

        z_j = \Phi^{-1}\!\left(F_j(x_j)\right), \qquad
        \log|\det J(x)| = \sum_j \left[\log f_j(x_j) - \log\phi(z_j)\right],
        \quad \log\phi(z) = -\tfrac{z^2}{2} - \tfrac12\log 2\pi.

    *Transform.* Where :math:`\log F \le \log S` (left of the median),
    :math:`z = ` ``ndtri_exp(logcdf)``; elsewhere :math:`z = -` ``ndtri_exp(logsf)``. The
    smaller tail is always the one used, so :math:`F` is never rounded to 0 or 1 and never
    clipped: ``z`` is exact to rounding while the tail probability is a normal double or
    smaller (down to :math:`\log F \approx -1.8\times10^{308}`, i.e. :math:`|z|` up to
    :data:`Z_LOG_MAX` :math:`\approx 1.9\times10^{154}`).

    *Saturation.* Beyond that the log tail itself rounds to :math:`-\infty` (e.g. ``x = -1e300``
    for unit-scale data, whose true :math:`\log F \approx -5\times10^{599}`); ``z`` is then
    set to :math:`\mp` :data:`Z_MAX`, the next double past :data:`Z_LOG_MAX`. So ``transform``
    is finite and monotone (non-decreasing; strictly increasing wherever it does not saturate)
    for every finite input, and there ``log_det_jacobian`` is :math:`-\infty` (the saturated map
    is flat) while ``score_samples`` is :math:`-\infty` (the true log-density is below the
    most negative double).

    *Inverse.* For :math:`z \le 0`, :math:`x` solves :math:`\log F(x) = ` ``log_ndtr(z)``; for
    :math:`z > 0`, :math:`\log S(x) = ` ``log_ndtr(-z)``; each by the distribution's bracketed
    root-finder in log space, which converges or raises.

    *Log-determinant.* Computed as :math:`\log f - \log F - \log(\phi(z)/\Phi(z))` (with
    :math:`S` and :math:`-z` right of the median), where :math:`\log \Phi(z) = \log F` holds by
    construction and :math:`\phi(z)/\Phi(z) = \sqrt{2/\pi}/\operatorname{erfcx}(-z/\sqrt2)`.
    Forming :math:`z^2/2` would add an error of order :math:`\varepsilon z^2` (and overflow
    for :math:`|z| > 1.3\times10^{154}`); this form does not. Where the log tail is below
    ``-FAR_TAIL_LOG`` (:math:`|z| \gtrsim 14`), :math:`\log f - \log F` is itself a
    difference of two large numbers, so it is computed from the mixture components with the
    common exponent cancelled exactly (:math:`z_j^2 - z_k^2 = (z_j - z_k)(z_j + z_k)`); the
    log-determinant then keeps about 1e-13 relative accuracy out to :math:`|z| \approx 10^{154}`
    instead of losing :math:`\varepsilon z^2`. This costs one pass over the components for
    those points only. ``score_samples`` is evaluated directly as :math:`\sum_j \log f_j(x_j)`,
    which equals :math:`\sum_j\log\phi(z_j) + \log|\det J|`.

    ``ndtri_exp`` is refined by one Newton step on :math:`\log\Phi(z) = \log F`, because
    scipy's value is off by up to 5e-13 relative for :math:`-10^7 < \log F < -10^4`.
"""


class KDEGaussianizer(MarginalGaussianizer):
    """Gaussianize each column through its Gaussian kernel density estimate.

    Parameters
    ----------
    bandwidth : float or str, default "scott"
        Per-column bandwidth: a positive float, or the name of a rule in
        :data:`kdelib.bandwidth.BANDWIDTH_SELECTORS` (``"scott"``, ``"silverman"``, ``"isj"``,
        ``"cv"``) applied to each column separately.
    method : {"exact", "binned"}, default "exact"
        Evaluation method of each :class:`kdelib.GaussianKDE`. It affects only the marginals'
        own ``pdf``/``cdf``/``sf``: the Gaussianizer uses their log-space methods and
        quantiles, which are exact either way.
    bounds : (float, float) or None, default None
        Support of every column, passed to each :class:`kdelib.GaussianKDE` (``None``: the
        whole line). Points on or below a finite lower bound, whose distribution function is
        0, map to ``-Z_MAX`` (on or above an upper bound: ``+Z_MAX``), as in the Notes.
    boundary : {"reflect", "transform"} or None, default None
        Boundary correction of each column's KDE (see :class:`kdelib.GaussianKDE`).

    Attributes
    ----------
    marginals_ : list of GaussianKDE
        One fitted KDE per column.
    bandwidth_ : ndarray of shape (n_features,)
        The bandwidth used for each column.
    n_features_in_ : int
        Number of columns seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` had string column names.

    See Also
    --------
    MixtureGaussianizer : the same map through a fitted Gaussian mixture per column.
    kdelib.GaussianKDE : the 1-D distribution fitted to each column.
    {notes}
    References
    ----------
    .. [1] S. S. Chen and R. A. Gopinath, "Gaussianization", *Advances in Neural Information
       Processing Systems* 13, 2000.
    .. [2] V. Laparra, G. Camps-Valls and J. Malo, "Iterative Gaussianization: from ICA to
       random rotations", *IEEE Transactions on Neural Networks* 22(4), 537-549, 2011.

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib import KDEGaussianizer
    >>> X = np.random.default_rng(0).exponential(size=(200, 2))
    >>> g = KDEGaussianizer().fit(X)
    >>> Z = g.transform(X)
    >>> bool(np.allclose(g.inverse_transform(Z), X, rtol=0, atol=1e-10))
    True
    """

    def __init__(self, *, bandwidth="scott", method="exact", bounds=None, boundary=None):
        self.bandwidth = bandwidth
        self.method = method
        self.bounds = bounds
        self.boundary = boundary

    def _make_marginal(self):
        from .kde import GaussianKDE

        return GaussianKDE(bandwidth=self.bandwidth, method=self.method, bounds=self.bounds,
                           boundary=self.boundary)

    def fit(self, X, y=None):
        """Fit one Gaussian KDE per column of ``X`` (see the class docstring).

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Finite training data, at least two samples.
        y : None
            Ignored.

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import KDEGaussianizer
        >>> X = np.random.default_rng(0).normal(size=(200, 2)) * [1.0, 10.0]
        >>> g = KDEGaussianizer(bandwidth=" silverman ").fit(X)
        >>> bool(9 < g.bandwidth_[1] / g.bandwidth_[0] < 11)  # each column gets its own
        True
        """
        super().fit(X, y)
        self.bandwidth_ = np.array([dist.bandwidth_ for dist in self.marginals_])
        return self


class MixtureGaussianizer(MarginalGaussianizer):
    """Gaussianize each column through a fitted 1-D Gaussian mixture.

    Parameters
    ----------
    n_components : int, default 2
        Number of mixture components per column.
    random_state : int, RandomState instance or None, default None
        Seed for the EM initialisation (passed to :class:`kdelib.GaussianMixtureCDF`).

    Attributes
    ----------
    marginals_ : list of GaussianMixtureCDF
        One fitted mixture per column (``weights_``, ``means_``, ``scales_``).
    n_features_in_ : int
        Number of columns seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` had string column names.

    See Also
    --------
    KDEGaussianizer : the same map through a kernel density estimate per column.
    kdelib.GaussianMixtureCDF : the 1-D distribution fitted to each column.
    {notes}
    References
    ----------
    .. [1] S. S. Chen and R. A. Gopinath, "Gaussianization", *Advances in Neural Information
       Processing Systems* 13, 2000.

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib import MixtureGaussianizer
    >>> X = np.random.default_rng(0).exponential(size=(200, 2))
    >>> g = MixtureGaussianizer(n_components=3, random_state=0).fit(X)
    >>> Z = g.transform(X)
    >>> bool(np.allclose(g.inverse_transform(Z), X, rtol=0, atol=1e-10))
    True
    """

    def __init__(self, *, n_components=2, random_state=None):
        self.n_components = n_components
        self.random_state = random_state

    def _make_marginal(self):
        from .mixture import GaussianMixtureCDF

        return GaussianMixtureCDF(n_components=self.n_components, random_state=self.random_state)



KDEGaussianizer.__doc__ = KDEGaussianizer.__doc__.replace("{notes}", _SHARED_NOTES)
MixtureGaussianizer.__doc__ = MixtureGaussianizer.__doc__.replace("{notes}", _SHARED_NOTES)


class SplineGaussianizer(MarginalGaussianizer):
    """Gaussianize each column through a rational-quadratic spline CDF fitted by likelihood.

    Parameters
    ----------
    n_bins : int or "auto", default="auto"
        Spline bins per column; ``"auto"`` chooses them on held-out likelihood per column (see
        :class:`kdelib.SplineDensity`).
    random_state : int, RandomState instance or None, default=None
        Seed of the held-out split used by ``n_bins="auto"``.

    Attributes
    ----------
    marginals_ : list of SplineDensity
        One fitted spline density per column.
    n_bins_ : ndarray of shape (n_features,)
        The number of bins used for each column.
    n_features_in_ : int
        Number of columns seen in ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` had string column names.

    See Also
    --------
    kdelib.SplineDensity : the 1-D distribution fitted to each column.
    KDEGaussianizer, MixtureGaussianizer : the same map through other marginals.

    Notes
    -----
    Transform, inverse and log-determinant are those of :class:`KDEGaussianizer` (see its
    Notes). Beyond the spline's end knots the marginal tails are half-normal, so far in the
    tails :math:`z` grows like an affine function of :math:`x`; there ``log f - log T`` is
    computed with the normal tail's exponent cancelled. Between the knots the inverse is the
    spline's analytic inverse (no root-finding).

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib import SplineGaussianizer
    >>> X = np.random.default_rng(0).exponential(size=(300, 2))
    >>> g = SplineGaussianizer(n_bins=4).fit(X)
    >>> Z = g.transform(X)
    >>> bool(np.allclose(g.inverse_transform(Z), X, rtol=0, atol=1e-10))
    True
    """

    def __init__(self, *, n_bins="auto", random_state=None):
        self.n_bins = n_bins
        self.random_state = random_state

    def _make_marginal(self):
        from .spline import SplineDensity

        return SplineDensity(n_bins=self.n_bins, random_state=self.random_state)

    def fit(self, X, y=None):
        """Fit one spline density per column of ``X`` (see the class docstring).

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Finite training data, at least two samples.
        y : None
            Ignored.

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import SplineGaussianizer
        >>> X = np.random.default_rng(0).exponential(size=(400, 2))
        >>> g = SplineGaussianizer(n_bins=4, random_state=0).fit(X)
        >>> [m.spline_.n_bins for m in g.marginals_]
        [4, 4]
        """
        super().fit(X, y)
        self.n_bins_ = np.array([dist.n_bins_ for dist in self.marginals_])
        return self
