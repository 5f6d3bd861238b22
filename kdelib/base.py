r"""The contract every one-dimensional density estimator in kdelib follows.

A density estimator is a scikit-learn estimator (``class E(DensityMixin, BaseEstimator)``) of one variable: ``__init__`` takes keyword-only
parameters and only stores them; ``fit(x, y=None, sample_weight=None)`` validates them and the
data, sets attributes ending in ``_`` and returns ``self``. After ``fit`` it is a continuous
distribution with these methods, every one accepting evaluation points of any shape and
returning an array of that shape (a NumPy scalar for a scalar):

========================  ====================================================================
``pdf``, ``logpdf``       density :math:`f(x)` and :math:`\log f(x)`
``cdf``, ``logcdf``       distribution function :math:`F(x)` and :math:`\log F(x)`
``sf``, ``logsf``         survival function :math:`S(x) = 1 - F(x)` (never computed as
                          ``1 - cdf``) and :math:`\log S(x)`
``ppf``, ``ppf_log``      quantiles :math:`F^{-1}(q)`, and :math:`F^{-1}(e^{\log q})` (or
                          :math:`S^{-1}` with ``upper=True``) for tails below 1e-300
``sample``                ``sample(n_samples=1, random_state=None)``, shape ``(n_samples,)``
``score_samples``         :math:`\log f(x_i)` of a sample, shape ``(n,)``
``score``                 mean log-likelihood per point of a sample
========================  ====================================================================

:class:`DensityMixin` carries the shared part. A subclass implements ``fit``, ``logpdf``,
``logcdf``, ``logsf`` and ``_ppf_log(log_q, upper)`` (on a validated 1-D array of
log-probabilities), and overrides ``pdf``/``cdf``/``sf`` where it has a more direct exact
evaluation than the exponential of the logarithm.

*Monotone up to rounding.* :math:`F` is non-decreasing and :math:`S` non-increasing in exact
arithmetic. In floating point, a polynomial or a sum of several terms can step back by a unit in
the last place between neighbouring doubles, so the guarantee is: for :math:`x < y`,
:math:`\log F(y) \ge \log F(x) - 16\,\epsilon \max(1, |\log F(x)|)` (likewise for
:math:`\log S`), that is :math:`F` never falls by more than 16 machine epsilons relative. The
contract tests scan runs of consecutive doubles for this; the estimators stay within 3.
"""

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._validation import as_1d_float, check_log_probability, check_n_samples, check_probability

__all__ = ["DensityMixin", "quantile_by_tail"]


def quantile_by_tail(q, solve_log):
    r"""Return :math:`F^{-1}(q)` for validated ``q`` by solving in the smaller tail.

    ``q <= 1/2`` is solved as :math:`\log F(x) = \log q` and ``q > 1/2`` as
    :math:`\log S(x) = \log(1 - q)` (``log1p(-q)``, exact there), so neither tail loses
    precision to ``1 - q``.

    Parameters
    ----------
    q : ndarray
        Probabilities in [0, 1], any shape (already validated).
    solve_log : callable
        ``solve_log(log_q, upper)`` for a 1-D array ``log_q`` returns the points where
        :math:`\log F` (``upper=False``) or :math:`\log S` (``upper=True``) equals ``log_q``.

    Returns
    -------
    ndarray of ``q``'s shape (a NumPy scalar for a scalar ``q``)

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.special import log_ndtr, ndtri_exp
    >>> def solve(log_q, upper):  # the standard normal
    ...     return -ndtri_exp(log_q) if upper else ndtri_exp(log_q)
    >>> quantile_by_tail(np.array([0.025, 0.5, 0.975]), solve).round(6).tolist()
    [-1.959964, 0.0, 1.959964]
    """
    q = np.asarray(q, dtype=float)
    flat = q.reshape(-1)
    out = np.empty(flat.size)
    low = flat <= 0.5
    with np.errstate(divide="ignore"):  # q = 0 or 1: log 0 = -inf, solved as an end point
        out[low] = solve_log(np.log(flat[low]), False)
        out[~low] = solve_log(np.log1p(-flat[~low]), True)
    return out.reshape(q.shape)[()]


class DensityMixin:
    r"""Shared methods of kdelib's one-dimensional density estimators (see the module notes).

    Subclasses implement ``fit``, ``logpdf``, ``logcdf``, ``logsf`` and ``_ppf_log``; this
    class supplies ``pdf``, ``cdf``, ``sf`` (as exponentials of the logarithms, which keep full
    relative precision in both tails), ``ppf``, ``ppf_log``, ``sample`` (inverse CDF),
    ``score_samples`` and ``score``, and the log-density over a tail probability that the
    Gaussianizers' log-determinant needs.

    Examples
    --------
    >>> from kdelib import GaussianKDE
    >>> from kdelib.base import DensityMixin
    >>> kde = GaussianKDE(bandwidth=1.0).fit([0.0])
    >>> isinstance(kde, DensityMixin)
    True
    >>> round(float(kde.score([0.0, 1.0])), 6)  # mean of log phi(0) and log phi(1)
    -1.168939
    """

    def logpdf(self, x):  # pragma: no cover - implemented by every estimator
        r"""Log density :math:`\log f(x)`, finite wherever the true value is a double.

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
        >>> from scipy import stats
        >>> from kdelib import GaussianKDE
        >>> std = GaussianKDE(bandwidth=1.0).fit([0.0])  # one kernel: the standard normal
        >>> bool(np.isclose(std.logpdf(-60.0), stats.norm.logpdf(-60.0), rtol=1e-15))
        True
        """
        raise NotImplementedError

    def logcdf(self, x):  # pragma: no cover - implemented by every estimator
        r"""Log distribution function :math:`\log F(x)`, exact far below ``F = 1e-300``.

        Parameters
        ----------
        x : array_like
            Finite evaluation points, any shape.

        Returns
        -------
        ndarray of ``x``'s shape, values in [-inf, 0]

        Examples
        --------
        >>> import numpy as np
        >>> from scipy import stats
        >>> from kdelib import GaussianKDE
        >>> std = GaussianKDE(bandwidth=1.0).fit([0.0])  # one kernel: the standard normal
        >>> bool(np.isclose(std.logcdf(-100.0), stats.norm.logcdf(-100.0), rtol=1e-14))
        True
        """
        raise NotImplementedError

    def logsf(self, x):  # pragma: no cover - implemented by every estimator
        r"""Log survival function :math:`\log S(x)`, never formed from ``1 - cdf``.

        Parameters
        ----------
        x : array_like
            Finite evaluation points, any shape.

        Returns
        -------
        ndarray of ``x``'s shape, values in [-inf, 0]

        Examples
        --------
        >>> import numpy as np
        >>> from scipy import stats
        >>> from kdelib import GaussianKDE
        >>> std = GaussianKDE(bandwidth=1.0).fit([0.0])  # one kernel: the standard normal
        >>> bool(np.isclose(std.logsf(100.0), stats.norm.logsf(100.0), rtol=1e-14))
        True
        """
        raise NotImplementedError

    def pdf(self, x):
        r"""Density :math:`f(x)`.

        Parameters
        ----------
        x : array_like
            Finite evaluation points, any shape.

        Returns
        -------
        ndarray of ``x``'s shape (a NumPy scalar for a scalar ``x``)

        Examples
        --------
        >>> import numpy as np
        >>> from scipy import stats
        >>> from kdelib import GaussianKDE
        >>> std = GaussianKDE(bandwidth=1.0).fit([0.0])  # one kernel: the standard normal
        >>> bool(np.isclose(std.pdf(1.5), stats.norm.pdf(1.5), rtol=1e-15))
        True
        """
        return np.exp(self.logpdf(x))

    def cdf(self, x):
        r"""Distribution function :math:`F(x)`.

        Parameters
        ----------
        x : array_like
            Finite evaluation points, any shape.

        Returns
        -------
        ndarray of ``x``'s shape, values in [0, 1]

        Examples
        --------
        >>> import numpy as np
        >>> from scipy import stats
        >>> from kdelib import GaussianKDE
        >>> std = GaussianKDE(bandwidth=1.0).fit([0.0])  # one kernel: the standard normal
        >>> bool(np.isclose(std.cdf(-3.0), stats.norm.cdf(-3.0), rtol=1e-14))
        True
        """
        return np.exp(self.logcdf(x))

    def sf(self, x):
        r"""Survival function :math:`S(x) = 1 - F(x)`, never computed as ``1 - cdf``.

        Parameters
        ----------
        x : array_like
            Finite evaluation points, any shape.

        Returns
        -------
        ndarray of ``x``'s shape, values in [0, 1]

        Examples
        --------
        >>> import numpy as np
        >>> from scipy import stats
        >>> from kdelib import GaussianKDE
        >>> std = GaussianKDE(bandwidth=1.0).fit([0.0])  # one kernel: the standard normal
        >>> float(std.sf(30.0)) > 0  # 1 - cdf would be exactly 0 here
        True
        """
        return np.exp(self.logsf(x))

    def ppf(self, q):
        r"""Quantile function :math:`F^{-1}(q)`; ``q = 0`` gives ``-inf`` and ``q = 1`` ``+inf``.

        ``q <= 1/2`` solves :math:`\log F(x) = \log q`; ``q > 1/2`` solves
        :math:`\log S(x) = \log(1 - q)`. An error of one ulp in ``q`` moves the answer by
        about ``ulp(q) / f(x)``: use :meth:`ppf_log` for tail probabilities.

        Parameters
        ----------
        q : array_like
            Probabilities in [0, 1], any shape.

        Returns
        -------
        ndarray of ``q``'s shape

        Raises
        ------
        ValueError
            If any ``q`` lies outside [0, 1] or is NaN.
        FloatingPointError
            If the root-finder does not converge (an unconverged value is never returned).

        Examples
        --------
        >>> import numpy as np
        >>> from scipy import stats
        >>> from kdelib import GaussianKDE
        >>> std = GaussianKDE(bandwidth=1.0).fit([0.0])  # one kernel: the standard normal
        >>> std.ppf([0.025, 0.5]).round(6).tolist()
        [-1.959964, 0.0]
        """
        self._check_fitted()
        return quantile_by_tail(check_probability(q, "q"), self._ppf_log)

    def ppf_log(self, log_q, upper=False):
        r"""Solve :math:`\log F(x) = \log q` (or :math:`\log S(x) = \log q` if ``upper``).

        Reaches quantiles far below 1e-300: ``log_q`` may be any value in ``[-inf, 0]``.

        Parameters
        ----------
        log_q : array_like
            Log-probabilities, ``<= 0``, any shape.
        upper : bool, default=False
            Solve for the survival function instead of the distribution function.

        Returns
        -------
        ndarray of ``log_q``'s shape

        Raises
        ------
        ValueError
            If any ``log_q`` is positive or NaN.
        FloatingPointError
            If the root-finder does not converge.

        Examples
        --------
        >>> import numpy as np
        >>> from scipy import stats
        >>> from kdelib import GaussianKDE
        >>> std = GaussianKDE(bandwidth=1.0).fit([0.0])  # one kernel: the standard normal
        >>> x = std.ppf_log(-5000.0)  # q = e^-5000, far below the smallest double
        >>> round(float(std.logcdf(x)), 6)
        -5000.0
        """
        self._check_fitted()
        log_q = check_log_probability(log_q, "log_q")
        return self._ppf_log(log_q.reshape(-1), bool(upper)).reshape(log_q.shape)[()]

    def _check_fitted(self):
        check_is_fitted(self)

    def sample(self, n_samples=1, random_state=None):
        r"""Draw ``n_samples`` points by the inverse CDF: ``ppf`` of uniform numbers.

        Estimators with a cheaper exact generator (the normal mixtures pick a component, then
        add normal noise) override this.

        Parameters
        ----------
        n_samples : int, default=1
        random_state : None, int, numpy.random.Generator or RandomState, default=None

        Returns
        -------
        ndarray of shape (n_samples,)

        Examples
        --------
        >>> import numpy as np
        >>> from scipy.stats import kstest
        >>> from kdelib import SplineDensity
        >>> density = SplineDensity(n_bins=4, random_state=0).fit(np.random.default_rng(0).normal(size=500))
        >>> bool(kstest(density.sample(2000, random_state=1), density.cdf).pvalue > 0.01)
        True
        """
        self._check_fitted()
        n = check_n_samples(n_samples)
        rng = random_state if isinstance(random_state, np.random.Generator) else check_random_state(random_state)
        return np.asarray(self.ppf(rng.uniform(size=n)), dtype=float).reshape(n)

    def score_samples(self, x):
        r"""Log-likelihood :math:`\log f(x_i)` of each point of a sample.

        Parameters
        ----------
        x : array_like of shape (n,) or (n, 1)
            Finite data.

        Returns
        -------
        ndarray of shape (n,)

        Examples
        --------
        >>> import numpy as np
        >>> from scipy import stats
        >>> from kdelib import GaussianKDE
        >>> std = GaussianKDE(bandwidth=1.0).fit([0.0])  # one kernel: the standard normal
        >>> bool(np.allclose(std.score_samples([0.0, 2.0]), stats.norm.logpdf([0.0, 2.0])))
        True
        """
        return np.asarray(self.logpdf(as_1d_float(x, "x")), dtype=float)

    def score(self, x, y=None):
        r"""Mean log-likelihood per point, :math:`\frac1n\sum_i \log f(x_i)`.

        scikit-learn's ``GaussianMixture.score`` is also a mean; ``KernelDensity.score`` is
        the sum (multiply by ``n``).

        Parameters
        ----------
        x : array_like of shape (n,) or (n, 1)
            Finite data.
        y : None
            Ignored.

        Returns
        -------
        float

        Examples
        --------
        >>> import numpy as np
        >>> from scipy import stats
        >>> from kdelib import GaussianKDE
        >>> std = GaussianKDE(bandwidth=1.0).fit([0.0])  # one kernel: the standard normal
        >>> round(std.score([0.0, 1.0]), 6)  # mean of log phi(0) and log phi(1)
        -1.168939
        """
        return float(np.mean(self.score_samples(x)))

    def _log_pdf_over_tail(self, x, upper):
        r"""Return :math:`\log f(x) - \log F(x)` (or :math:`-\log S(x)` if ``upper``).

        The Gaussianizers' log-determinant needs this where the tail probability is below
        :math:`e^{-100}`. This default subtracts the two logarithms, which loses about
        :math:`\varepsilon|\log F|` absolute; a subclass that can cancel the common exponent
        exactly (the normal mixtures do) overrides it.
        """
        log_tail = self.logsf(x) if upper else self.logcdf(x)
        return np.asarray(self.logpdf(x), dtype=float) - log_tail
