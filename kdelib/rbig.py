r"""Rotation-based iterative Gaussianization (RBIG): a density in several dimensions.

A layer maps :math:`x \in \mathbb{R}^d` to :math:`y = R^\top G(x)`: :math:`G` Gaussianizes each
coordinate through its own fitted 1-D distribution (a :mod:`kdelib.gaussianize` transformer,
:math:`G_j(x_j) = \Phi^{-1}(F_j(x_j))`) and :math:`R` is an orthogonal matrix. Layers are stacked
until the data look jointly normal; the density is exact by the change of variables,

.. math::

    \log p(x) = \log\phi_d\big(T(x)\big) + \sum_{\ell=1}^{L}\sum_{j=1}^{d}
    \log\left|\frac{\partial G_{\ell j}}{\partial x_j}\big(x^{(\ell)}_j\big)\right|,

with :math:`T = T_L \circ \dots \circ T_1`, :math:`x^{(1)} = x`, :math:`x^{(\ell+1)} =
T_\ell(x^{(\ell)})`. The rotations contribute :math:`\log|\det R| = 0`.

Shape contract: ``X`` is 2-D (n_samples, n_features); ``transform`` and ``inverse_transform``
return that shape; ``score_samples`` and ``log_det_jacobian`` return (n_samples,).
"""

import math

import numpy as np
from scipy.special import ndtri
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from ._validation import (
    check_choice,
    check_estimator_or_choice,
    check_min_rows,
    check_n_samples,
    check_no_constant_columns,
    check_positive_int,
    check_real,
)
from .gaussianize import KDEGaussianizer, MixtureGaussianizer, SplineGaussianizer

__all__ = ["MARGINALS", "ROTATIONS", "RBIG", "PiecewiseGaussianizer"]

_LOG_2PI = math.log(2.0 * math.pi)
_SQRT_HALF = math.sqrt(0.5)
_FLOAT_MAX = float(np.finfo(np.float64).max)
_GAUSSIANIZER_METHODS = ("fit", "transform", "inverse_transform", "log_det_jacobian")


# --------------------------------------------------------------------------- a fast marginal
class PiecewiseGaussianizer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    r"""Gaussianize each column by a piecewise-linear map through its empirical normal scores.

    The map joins the points :math:`(t_k, s_k)`, where the knots :math:`t_k` are empirical
    quantiles of the column and :math:`s_k` their normal scores, by straight lines, and continues
    them beyond the first and last knot by straight lines as well (normal tails). Its
    log-derivative is the log of the slope of the piece a point falls on: the transform and
    its log-determinant belong to the *same* map, so the density of the map is exact. Evaluation
    costs one binary search per entry, independent of the sample size, which is what makes
    hundreds of columns times dozens of layers affordable.

    Parameters
    ----------
    n_knots : int, default 256
        Knots per column (at most the number of samples): the empirical quantiles at equally
        spaced levels from 0 to 1, so the first and last knots are the column's minimum and
        maximum. Tied knots (from tied data) are merged.
    tail_level : float in (0, 0.5), default 0.05
        The slope of each outer line is that of the chord from the end knot to the first knot
        at or beyond this level (at least the neighbouring knot).

    Attributes
    ----------
    knots_ : list of ndarray
        Strictly increasing knots :math:`t_0 < \dots < t_K` of each column.
    knot_scores_ : list of ndarray
        Their strictly increasing normal scores :math:`s_k`.
    tail_slopes_ : ndarray of shape (n_features, 2)
        Slopes :math:`b_-, b_+` of the left and right outer lines.
    n_features_in_ : int
        Number of columns seen in ``fit``.

    Notes
    -----
    For a knot at quantile level :math:`p` of :math:`n` sorted values the score is
    :math:`s = \Phi^{-1}\big((p(n-1) + \tfrac12)/n\big)`, so the end knots get
    :math:`\Phi^{-1}(\tfrac{1}{2n})` and :math:`\Phi^{-1}(1 - \tfrac{1}{2n})` (merged ties get
    the mean score of the knots they merge). With slopes
    :math:`b_k = (s_{k+1} - s_k)/(t_{k+1} - t_k) > 0`,

    .. math::

        z(x) = \begin{cases}
        s_0 + b_-\,(x - t_0), & x < t_0,\\
        s_k + b_k\,(x - t_k), & t_k \le x < t_{k+1}\ (\text{and } x = t_K \text{ on the last piece}),\\
        s_K + b_+\,(x - t_K), & x > t_K,
        \end{cases}
        \qquad \log z'(x) = \log b_\bullet .

    The map is continuous (to rounding at the knots), strictly increasing and onto
    :math:`\mathbb{R}`, so :math:`\phi(z(x))\,z'(x)` integrates to one: inside the knots it is
    a normal density restricted to each piece and rescaled, outside a normal tail of scale
    :math:`1/b_\pm`. Nothing is clipped. Only where :math:`b\,(x - t)` overflows (inputs
    near :math:`\pm 1.8\times10^{308}` when :math:`b > 1`) does ``z`` saturate, at the
    largest double, with log-derivative :math:`-\infty` there; the map stays monotone.
    ``score_samples`` is :math:`-\infty` where :math:`|z| > 1.9\times10^{154}` (the true
    log-density is below the most negative double).

    Compared with a kernel density estimate per column this is a histogram with equal-mass
    bins, made continuous: coarser in the middle, but with a cost that does not grow with the
    sample size.

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib.rbig import PiecewiseGaussianizer
    >>> X = np.random.default_rng(0).exponential(size=(500, 2))
    >>> g = PiecewiseGaussianizer(n_knots=32).fit(X)
    >>> Z = g.transform(X)
    >>> bool(np.allclose(g.inverse_transform(Z), X, rtol=1e-12, atol=0))
    True
    >>> bool(np.all(np.isfinite(g.score_samples([[-1e6, 1e100]]))))
    True
    """

    def __init__(self, *, n_knots=256, tail_level=0.05):
        self.n_knots = n_knots
        self.tail_level = tail_level

    def fit(self, X, y=None):
        """Place the knots of every column.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Finite training data, at least two samples, no constant column.
        y : None
            Ignored.

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib.rbig import PiecewiseGaussianizer
        >>> X = np.random.default_rng(0).exponential(size=(500, 2))
        >>> g = PiecewiseGaussianizer(n_knots=32).fit(X)
        >>> g.n_features_in_
        2
        """
        with np.errstate(over="ignore", invalid="ignore"):
            X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        n_knots = check_positive_int(self.n_knots, "n_knots", minimum=2)
        tail_level = check_real(self.tail_level, "tail_level", low=0.0, high=0.5,
                                low_open=True, high_open=True)
        check_no_constant_columns(X)
        n, d = X.shape
        n_knots = min(n_knots, n)
        levels = np.linspace(0.0, 1.0, n_knots)
        knots = _sorted_quantiles(np.sort(X, axis=0), levels)  # (n_knots, d)
        scores = ndtri((levels * (n - 1) + 0.5) / n)
        tail_knot = max(1, int(np.searchsorted(levels, tail_level)))
        # Padded tables, one row per column: knots (+inf beyond a column's last knot),
        # scores and slopes, so that all columns are evaluated at once.
        self._knots = np.full((d, n_knots), np.inf)
        self._scores = np.full((d, n_knots), np.inf)
        self._slopes = np.ones((d, n_knots))
        self._last_cell = np.empty(d, dtype=np.intp)
        self.tail_slopes_ = np.empty((d, 2))
        for j in range(d):
            t, s = knots[:, j], scores
            if np.any(t[1:] <= t[:-1]):  # ties: one knot per value, with the mean score
                t, inverse = np.unique(t, return_inverse=True)
                s = np.bincount(inverse, weights=scores) / np.bincount(inverse)
            k = t.size
            slopes = np.diff(s) / np.diff(t)
            if not np.all(np.isfinite(slopes) & (slopes > 0)):
                raise ValueError(
                    f"column {j} of X spans too small a range relative to its values for a "
                    "piecewise-linear map (its knots are not distinct doubles); rescale it."
                )
            self._knots[j, :k] = t
            self._scores[j, :k] = s
            self._slopes[j, : k - 1] = slopes
            self._last_cell[j] = k - 2
            left, right = min(tail_knot, k - 1), max(k - 1 - tail_knot, 0)
            self.tail_slopes_[j] = ((s[left] - s[0]) / (t[left] - t[0]),
                                    (s[-1] - s[right]) / (t[-1] - t[right]))
        self._log_slopes = np.log(self._slopes)
        self._log_tail_slopes = np.log(self.tail_slopes_)
        last = (np.arange(d), self._last_cell + 1)
        self._ends = (self._knots[:, 0].copy(), self._knots[last].copy())
        self._end_scores = (self._scores[:, 0].copy(), self._scores[last].copy())
        return self

    @property
    def knots_(self):
        """List of each column's strictly increasing knots."""
        check_is_fitted(self)
        return [row[: c + 2].copy() for row, c in zip(self._knots, self._last_cell)]

    @property
    def knot_scores_(self):
        """List of each column's normal scores at its knots."""
        check_is_fitted(self)
        return [row[: c + 2].copy() for row, c in zip(self._scores, self._last_cell)]

    def _validated(self, X):
        check_is_fitted(self)
        with np.errstate(over="ignore", invalid="ignore"):
            return validate_data(self, X, dtype=np.float64, reset=False)

    def _cells(self, table, V):
        """Flat indices into the padded tables of the piece holding each entry of ``V``."""
        d, width = table.shape
        cells = np.empty(V.shape, dtype=np.intp)
        for j in range(d):
            cells[:, j] = np.searchsorted(table[j], V[:, j], side="right")
        cells -= 1
        np.clip(cells, 0, self._last_cell, out=cells)
        cells += np.arange(d) * width
        return cells

    def _transform_and_log_det(self, X, log_det=True):
        """``(transform(X), log_det_jacobian(X))`` from one pass, for validated ``X``."""
        flat = self._cells(self._knots, X)
        knot, score = self._knots.ravel()[flat], self._scores.ravel()[flat]
        slope = self._slopes.ravel()[flat]
        log_slope = self._log_slopes.ravel()[flat] if log_det else None
        for side, (end, end_score) in enumerate(zip(self._ends, self._end_scores)):
            out = X < end if side == 0 else X > end
            if np.any(out):
                cols = np.nonzero(out)[1]
                knot[out], score[out] = end[cols], end_score[cols]
                slope[out] = self.tail_slopes_[cols, side]
                if log_det:
                    log_slope[out] = self._log_tail_slopes[cols, side]
        with np.errstate(over="ignore", invalid="ignore"):
            Z = score + (X - knot) * slope
        saturated = ~np.isfinite(Z)
        if np.any(saturated):  # b (x - t) overflowed: only for |x| near the largest double
            Z[saturated] = np.copysign(_FLOAT_MAX, X[saturated] - knot[saturated])
            if log_det:
                log_slope[saturated] = -np.inf
        return Z, (log_slope.sum(axis=1) if log_det else None)

    def transform(self, X):
        """Map each column to its normal scores (see Notes).

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Finite data.

        Returns
        -------
        ndarray of shape (n_samples, n_features)

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib.rbig import PiecewiseGaussianizer
        >>> X = np.random.default_rng(0).exponential(size=(500, 2))
        >>> g = PiecewiseGaussianizer(n_knots=32).fit(X)
        >>> Z = g.transform(X)  # increasing in each column
        >>> bool(np.array_equal(np.argsort(Z, axis=0), np.argsort(X, axis=0)))
        True
        """
        return self._transform_and_log_det(self._validated(X), log_det=False)[0]

    def inverse_transform(self, X):
        """Invert :meth:`transform` piece by piece (exactly linear, no root-finding).

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Finite normal scores.

        Returns
        -------
        ndarray of shape (n_samples, n_features)

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib.rbig import PiecewiseGaussianizer
        >>> X = np.random.default_rng(0).exponential(size=(500, 2))
        >>> g = PiecewiseGaussianizer(n_knots=32).fit(X)
        >>> bool(np.allclose(g.inverse_transform(g.transform(X)), X, rtol=1e-10, atol=1e-12))
        True
        """
        Z = self._validated(X)
        flat = self._cells(self._scores, Z)
        knot, score = self._knots.ravel()[flat], self._scores.ravel()[flat]
        slope = self._slopes.ravel()[flat]
        for side, (end, end_score) in enumerate(zip(self._ends, self._end_scores)):
            out = Z < end_score if side == 0 else Z > end_score
            if np.any(out):
                cols = np.nonzero(out)[1]
                knot[out], score[out] = end[cols], end_score[cols]
                slope[out] = self.tail_slopes_[cols, side]
        return knot + (Z - score) / slope

    def log_det_jacobian(self, X):
        r"""Return :math:`\sum_j \log z_j'(x_j)`, the log-slopes of the pieces.

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
        >>> from kdelib.rbig import PiecewiseGaussianizer
        >>> X = np.random.default_rng(0).exponential(size=(500, 2))
        >>> g = PiecewiseGaussianizer(n_knots=32).fit(X)
        >>> x, step = X[:1], 1e-7
        >>> slopes = (g.transform(x + step) - g.transform(x - step))[0] / (2 * step)
        >>> bool(np.isclose(g.log_det_jacobian(x)[0], np.log(slopes).sum(), rtol=1e-6))
        True
        """
        return self._transform_and_log_det(self._validated(X))[1]

    def score_samples(self, X):
        r"""Return :math:`\sum_j [\log\phi(z_j) + \log z_j'(x_j)]`, the log-density of the map.

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
        >>> from kdelib.rbig import PiecewiseGaussianizer
        >>> X = np.random.default_rng(0).exponential(size=(500, 2))
        >>> g = PiecewiseGaussianizer(n_knots=32).fit(X)
        >>> g.score_samples(X).shape
        (500,)
        """
        Z, ld = self._transform_and_log_det(self._validated(X))
        return _log_std_normal(Z) + ld

    def score(self, X, y=None):
        """Mean of :meth:`score_samples`.

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib.rbig import PiecewiseGaussianizer
        >>> X = np.random.default_rng(0).exponential(size=(500, 2))
        >>> g = PiecewiseGaussianizer(n_knots=32).fit(X)
        >>> bool(np.isclose(g.score(X), g.score_samples(X).mean()))
        True
        """
        return float(np.mean(self.score_samples(X)))


def _sorted_quantiles(ordered, levels):
    """Quantiles (linear interpolation, numpy's default) of each column of a sorted array."""
    position = levels * (ordered.shape[0] - 1)
    low = np.floor(position).astype(np.intp)
    high = np.minimum(low + 1, ordered.shape[0] - 1)
    frac = (position - low)[:, None]
    return ordered[low] + frac * (ordered[high] - ordered[low])


# --------------------------------------------------------------------------- registries
#: Marginal Gaussianizers by name: a factory taking the per-layer integer seed. Adding one is
#: one line here.
MARGINALS = {
    "kde": lambda seed: KDEGaussianizer(),
    "mixture": lambda seed: MixtureGaussianizer(n_components=3, random_state=seed),
    "piecewise": lambda seed: PiecewiseGaussianizer(),
    "spline": lambda seed: SplineGaussianizer(random_state=seed),
}


def _sign_fixed(Q, signs):
    signs = np.where(signs == 0, 1.0, np.sign(signs))
    return Q * signs


def pca_rotation(U, rng):
    """Eigenvectors of the covariance of ``U``, largest variance first, signs fixed.

    Each column's entry of largest magnitude is made positive, so the matrix does not depend
    on the LAPACK build's sign convention.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        centred = U - U.mean(axis=0)
        cov = centred.T @ centred
        _, vectors = np.linalg.eigh(cov)
    vectors = vectors[:, ::-1]
    pivot = np.argmax(np.abs(vectors), axis=0)
    return _sign_fixed(vectors, vectors[pivot, np.arange(vectors.shape[1])])


def random_rotation(U, rng):
    """A Haar-distributed orthogonal matrix: QR of a Gaussian matrix with sign(diag R) fixed."""
    d = U.shape[1]
    with threadpool_limits(limits=1, user_api="blas"):
        Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    return _sign_fixed(Q, np.diag(R))


#: Rotations by name: ``f(U, rng) -> orthogonal (d, d) matrix``, applied as ``U @ R``.
ROTATIONS = {"pca": pca_rotation, "random": random_rotation}


def _log_std_normal(Z):
    r""":math:`\log\phi_d(z) = -\lVert z\rVert^2/2 - (d/2)\log 2\pi`, row-wise.

    Squares :math:`z/\sqrt2` so that no term overflows for :math:`|z| \le` ``Z_LOG_MAX``.
    """
    half = Z * _SQRT_HALF
    with np.errstate(over="ignore"):
        return -np.einsum("ij,ij->i", half, half) - 0.5 * Z.shape[1] * _LOG_2PI


def _forward(gaussianizer, X):
    """``(transform, log-det)`` of one fitted marginal Gaussianizer."""
    if isinstance(gaussianizer, PiecewiseGaussianizer):
        return gaussianizer._transform_and_log_det(X)
    return gaussianizer.transform(X), gaussianizer.log_det_jacobian(X)


# --------------------------------------------------------------------------- estimator
class RBIG(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    r"""Rotation-based iterative Gaussianization: an exact multivariate density.

    Each layer Gaussianizes every coordinate through a fitted 1-D distribution and then rotates
    by an orthogonal matrix. The fitted map :math:`T` sends the data towards a standard normal
    in :math:`d` dimensions, and the density is exact by the change of variables (module
    docstring). Layers are added until the held-out log-likelihood stops improving.

    Parameters
    ----------
    marginal : {"kde", "mixture", "piecewise", "spline"} or estimator, default "kde"
        The marginal Gaussianizer of every layer: a name in :data:`MARGINALS` or an unfitted
        transformer with ``fit``, ``transform``, ``inverse_transform`` and
        ``log_det_jacobian`` (cloned for each layer). ``"kde"`` is
        :class:`kdelib.KDEGaussianizer` (Scott bandwidth, exact sums over all training points:
        cost grows as the square of the sample size); ``"mixture"`` is
        :class:`kdelib.MixtureGaussianizer` with 3 components; ``"piecewise"`` is
        :class:`PiecewiseGaussianizer` (256 knots), whose cost does not grow with the sample
        size, for large data; ``"spline"`` is :class:`kdelib.SplineGaussianizer` (a
        rational-quadratic spline CDF fitted by maximum likelihood per column).
    rotation : {"pca", "random"}, default "pca"
        ``"pca"``: eigenvectors of the covariance after the marginal step; ``"random"``: a
        Haar-distributed orthogonal matrix drawn from ``random_state``.
    max_layers : int, default 50
        Largest number of layers fitted.
    validation_fraction : float in [0, 1), default 0.1
        Share of the rows held out (chosen at random) to decide how many layers to keep.
        With 0 every row is used for fitting and ``max_layers`` layers are kept.
    patience : int, default 5
        Fitting stops once this many consecutive layers have not improved the best held-out
        mean log-likelihood; the layers after the best one are discarded.
    random_state : int, RandomState instance or None, default None
        Seeds the split, the random rotations and the marginals' own randomness.

    Attributes
    ----------
    layers_ : list of (transformer, ndarray) tuples
        The kept layers: a fitted marginal Gaussianizer and the (d, d) rotation ``R``
        (the layer maps ``x`` to ``G(x) @ R``).
    n_layers_ : int
        Number of kept layers, ``len(layers_)``.
    train_log_likelihood_ : ndarray of shape (n_fitted,)
        Mean log-likelihood of the fitting rows after each fitted layer (including the
        discarded ones).
    validation_log_likelihood_ : ndarray of shape (n_fitted,)
        The same on the held-out rows (empty when ``validation_fraction == 0``).
    n_features_in_ : int
        Number of columns seen in ``fit``.

    See Also
    --------
    kdelib.KDEGaussianizer, kdelib.MixtureGaussianizer : the marginal step.

    Notes
    -----
    *Exactness.* Rotations are orthogonal (``|det R| = 1``); the marginal log-determinants are
    the exact ones of the maps applied (:mod:`kdelib.gaussianize`), so

    .. math::

        \log p(x) = -\tfrac12\lVert T(x)\rVert^2 - \tfrac d2\log 2\pi +
        \sum_\ell \log|\det J_{G_\ell}(x^{(\ell)})|

    integrates to one. Every output is finite for finite inputs whose normal scores stay below
    :data:`kdelib.gaussianize.Z_LOG_MAX` in every layer (for unit-scale data, inputs up to
    about ``1e100`` with a few dozen layers). Far outside the data the two terms above are
    large and of opposite sign, each accurate to about 1e-13 relative, so their sum has an
    absolute error of that order times their size.

    *Tails.* Beyond the data a layer's map has the slope of its marginals' tails. A KDE's tails
    are normal with the bandwidth as scale, so for data near unit scale the slope exceeds one
    and a point outside the training data moves further out in every layer: its log-density is
    exact for the model but very low. Mixture or piecewise marginals, whose tails are about as
    wide as the data, do not compound this way.

    *Stopping.* A prefix of the layers is itself a valid model, so the held-out log-likelihood
    after each layer measures the model with that many layers; the best prefix is kept.

    *Threads.* The rotations are computed with one BLAS thread, and every other step is
    element-wise or row-wise, so results do not depend on the number of threads.

    References
    ----------
    .. [1] S. S. Chen and R. A. Gopinath, "Gaussianization", *Advances in Neural Information
       Processing Systems* 13, 2000.
    .. [2] V. Laparra, G. Camps-Valls and J. Malo, "Iterative Gaussianization: from ICA to
       random rotations", *IEEE Transactions on Neural Networks* 22(4), 537-549, 2011.

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib import RBIG
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=300)
    >>> X = np.column_stack([x, x**2 + 0.3 * rng.normal(size=300)])
    >>> model = RBIG(max_layers=10, random_state=0).fit(X)
    >>> Z = model.transform(X)
    >>> bool(np.allclose(model.inverse_transform(Z), X, rtol=1e-8, atol=0))
    True
    >>> model.score(X) > -2.5
    True
    """

    def __init__(
        self,
        *,
        marginal="kde",
        rotation="pca",
        max_layers=50,
        validation_fraction=0.1,
        patience=5,
        random_state=None,
    ):
        self.marginal = marginal
        self.rotation = rotation
        self.max_layers = max_layers
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.random_state = random_state

    # -- fitting ------------------------------------------------------------------------------

    def fit(self, X, y=None):
        """Fit layers until the held-out log-likelihood stops improving.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Finite data without constant columns; at least 3 fitting rows plus the held-out
            ones.
        y : None
            Ignored.

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import RBIG
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=300)
        >>> X = np.column_stack([x, x**2 + 0.3 * rng.normal(size=300)])
        >>> model = RBIG(marginal="mixture", max_layers=4, random_state=0).fit(X)
        >>> model.n_layers_ == len(model.layers_) and 1 <= model.n_layers_ <= 4
        True
        """
        with np.errstate(over="ignore", invalid="ignore"):
            X = validate_data(self, X, dtype=np.float64)
        key, template = check_estimator_or_choice(
            self.marginal, MARGINALS, "marginal", _GAUSSIANIZER_METHODS
        )
        rotate = ROTATIONS[check_choice(self.rotation, ROTATIONS, "rotation")]
        max_layers = check_positive_int(self.max_layers, "max_layers")
        patience = check_positive_int(self.patience, "patience")
        fraction = check_real(
            self.validation_fraction, "validation_fraction", low=0.0, high=1.0, high_open=True,
            hint="Use 0 to fit on every row and keep max_layers layers.",
        )
        rng = check_random_state(self.random_state)
        n = X.shape[0]
        n_val = math.ceil(fraction * n) if fraction > 0 else 0
        check_min_rows(n, 3 + (1 if n_val else 0), why="RBIG fits a 1-D density per column.")
        check_min_rows(
            n - n_val, 3, "X (fitting part)",
            why=f"validation_fraction={fraction:g} leaves too few; lower it or pass more rows.",
        )
        check_no_constant_columns(X)
        order = rng.permutation(n)
        val_rows, fit_rows = np.sort(order[:n_val]), np.sort(order[n_val:])
        Xt, Xv = X[fit_rows], X[val_rows]
        check_no_constant_columns(Xt, "X (fitting part)")

        layers, train_ll, val_ll = [], [], []
        ld_t, ld_v = np.zeros(Xt.shape[0]), np.zeros(Xv.shape[0])
        best, best_ll = 0, -np.inf
        for layer in range(max_layers):
            seed = int(rng.randint(np.iinfo(np.int32).max))
            g = clone(template) if template is not None else MARGINALS[key](seed)
            g.fit(Xt)
            Ut, ld = _forward(g, Xt)
            R = rotate(Ut, rng)
            Xt, ld_t = Ut @ R, ld_t + ld
            layers.append((g, R))
            train_ll.append(float(np.mean(_log_std_normal(Xt) + ld_t)))
            if not n_val:
                best = layer + 1
                continue
            Uv, ld = _forward(g, Xv)
            Xv, ld_v = Uv @ R, ld_v + ld
            val_ll.append(float(np.mean(_log_std_normal(Xv) + ld_v)))
            if val_ll[-1] > best_ll:
                best, best_ll = layer + 1, val_ll[-1]
            elif layer + 1 - best >= patience:
                break
        self.layers_ = layers[: max(best, 1)]
        self.n_layers_ = len(self.layers_)
        self.train_log_likelihood_ = np.array(train_ll)
        self.validation_log_likelihood_ = np.array(val_ll)
        return self

    # -- the map ------------------------------------------------------------------------------

    def _validated(self, X):
        check_is_fitted(self)
        with np.errstate(over="ignore", invalid="ignore"):
            return validate_data(self, X, dtype=np.float64, reset=False)

    def _forward(self, X):
        total = np.zeros(X.shape[0])
        for g, R in self.layers_:
            U, ld = _forward(g, X)
            X, total = U @ R, total + ld
        return X, total

    def transform(self, X):
        """Map data to (approximately) standard normal scores through every layer.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Finite data.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_features)

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import RBIG
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=300)
        >>> X = np.column_stack([x, x**2 + 0.3 * rng.normal(size=300)])
        >>> model = RBIG(marginal="mixture", max_layers=4, random_state=0).fit(X)
        >>> Z = model.transform(X)
        >>> Z.shape, bool(np.all(np.isfinite(model.transform(X * 1e6))))
        ((300, 2), True)
        """
        X = self._validated(X)
        for g, R in self.layers_:
            X = g.transform(X) @ R
        return X

    def inverse_transform(self, X):
        """Map normal scores back to data space, layer by layer in reverse.

        Parameters
        ----------
        X : array_like of shape (n_samples, n_features)
            Finite normal scores.

        Returns
        -------
        ndarray of shape (n_samples, n_features)

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import RBIG
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=300)
        >>> X = np.column_stack([x, x**2 + 0.3 * rng.normal(size=300)])
        >>> model = RBIG(marginal="mixture", max_layers=4, random_state=0).fit(X)
        >>> bool(np.allclose(model.inverse_transform(model.transform(X)), X, rtol=1e-8, atol=1e-12))
        True
        """
        Z = self._validated(X)
        for g, R in reversed(self.layers_):
            Z = g.inverse_transform(Z @ R.T)
        return Z

    def log_det_jacobian(self, X):
        r"""Return :math:`\log|\det J_T(x)|`, the sum of the marginal log-determinants.

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
        >>> from kdelib import RBIG
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=300)
        >>> X = np.column_stack([x, x**2 + 0.3 * rng.normal(size=300)])
        >>> model = RBIG(marginal="mixture", max_layers=4, random_state=0).fit(X)
        >>> logp = -0.5 * (model.transform(X) ** 2).sum(axis=1) - np.log(2 * np.pi) + model.log_det_jacobian(X)
        >>> bool(np.allclose(logp, model.score_samples(X), rtol=1e-10))
        True
        """
        return self._forward(self._validated(X))[1]

    def score_samples(self, X):
        r"""Return :math:`\log p(x) = \log\phi_d(T(x)) + \log|\det J_T(x)|` for each row.

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
        >>> from kdelib import RBIG
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=300)
        >>> X = np.column_stack([x, x**2 + 0.3 * rng.normal(size=300)])
        >>> model = RBIG(marginal="mixture", max_layers=4, random_state=0).fit(X)
        >>> model.score_samples(X).shape
        (300,)
        """
        Z, log_det = self._forward(self._validated(X))
        return _log_std_normal(Z) + log_det

    def score(self, X, y=None):
        """Mean log-likelihood per row (see :meth:`score_samples`).

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
        >>> from kdelib import RBIG
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=300)
        >>> X = np.column_stack([x, x**2 + 0.3 * rng.normal(size=300)])
        >>> model = RBIG(marginal="mixture", max_layers=4, random_state=0).fit(X)
        >>> bool(np.isclose(model.score(X), model.score_samples(X).mean()))
        True
        """
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples=1, random_state=None):
        """Draw ``n_samples`` rows: standard normal scores through :meth:`inverse_transform`.

        Parameters
        ----------
        n_samples : int, default 1
        random_state : None, int or numpy.random.Generator
            Passed to ``numpy.random.default_rng``.

        Returns
        -------
        ndarray of shape (n_samples, n_features)

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import RBIG
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=300)
        >>> X = np.column_stack([x, x**2 + 0.3 * rng.normal(size=300)])
        >>> model = RBIG(marginal="mixture", max_layers=4, random_state=0).fit(X)
        >>> model.sample(5, random_state=1).shape
        (5, 2)
        """
        check_is_fitted(self)
        n_samples = check_n_samples(n_samples)
        rng = np.random.default_rng(random_state)
        Z = rng.standard_normal((n_samples, self.n_features_in_))
        for g, R in reversed(self.layers_):
            Z = g.inverse_transform(Z @ R.T)
        return Z
