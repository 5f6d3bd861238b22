r"""One-dimensional Gaussian mixture fitted by EM, with exact CDF, tails and quantiles.

Data have shape (n,) (or (n, 1)); evaluation points may have any shape, and every method
returns an array of that shape.
"""

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.mixture import GaussianMixture
from sklearn.utils.validation import check_is_fitted

from . import normal_mixture as nm
from ._validation import as_1d_float, check_n_samples, check_positive_int, check_spread

__all__ = ["ComponentSelection", "GaussianMixtureCDF", "select_n_components"]


class GaussianMixtureCDF(nm.MixtureDistribution, BaseEstimator):
    r"""Gaussian mixture of one variable with exact distribution functions and quantiles.

    The parameters are fitted by expectation-maximisation with
    :class:`sklearn.mixture.GaussianMixture`; kdelib adds the exact cdf, survival function,
    their logarithms and the quantile function.

    Parameters
    ----------
    n_components : int, default=1
        Number of components :math:`K`.
    random_state : None, int or numpy.random.RandomState, default=None
        Seed of the EM initialisation (passed to ``GaussianMixture``).
    n_init : int, default=1
        Number of EM runs; the one with the largest likelihood is kept. Raise it when
        :math:`K > 1` and the fit looks like a poor local optimum.
    max_iter : int, default=1000
        EM iterations per run.
    tol : float, default=1e-6
        EM convergence threshold on the change of the mean log-likelihood per point.
        Tighter than scikit-learn's 1e-3 on purpose: BIC and likelihood comparisons between
        numbers of components differ by amounts (a few 1e-3 nats per point) that a loosely
        stopped EM run leaves on the table, so a looser threshold turns model selection into
        a comparison of optimiser noise.
    reg_covar : float, default=1e-6
        Added to every variance, so that a component on tied values keeps a positive scale.
    init_params : str, default="kmeans"
        EM initialisation, as in ``GaussianMixture``.

    Attributes
    ----------
    weights_ : ndarray of shape (K,)
        Mixing weights, summing to one; components are sorted by mean.
    means_ : ndarray of shape (K,)
        Component means.
    scales_ : ndarray of shape (K,)
        Component standard deviations.
    log_weights_ : ndarray of shape (K,)
        ``log(weights_)``.
    converged_ : bool
        Whether the best EM run converged.
    n_iter_ : int
        EM iterations of the best run.

    See Also
    --------
    kdelib.select_n_components : Compare K by training BIC and held-out likelihood.
    kdelib.GaussianKDE : The same interface for a kernel density estimate.

    Notes
    -----
    .. math::

        f(x) = \sum_{k=1}^K \frac{w_k}{\sigma_k}\,\phi\!\left(\frac{x-\mu_k}{\sigma_k}\right),
        \qquad
        F(x) = \sum_{k=1}^K w_k\,\Phi\!\left(\frac{x-\mu_k}{\sigma_k}\right).

    The information criteria count :math:`p = 3K - 1` free parameters (:math:`K` means,
    :math:`K` variances, :math:`K - 1` free weights) and use the total log-likelihood
    :math:`\ell(x) = \sum_i \log f(x_i)` of the data passed in:

    .. math::

        \mathrm{BIC} = -2\,\ell + p \log n, \qquad \mathrm{AIC} = -2\,\ell + 2p .

    Both are criteria on the data the model was fitted to; for an out-of-sample comparison use
    the held-out negative log-likelihood (:func:`select_n_components` reports both).

    All densities and tail probabilities come from :mod:`kdelib.normal_mixture`: ``log_ndtr``
    and ``logsumexp`` where the sums underflow, ``ndtr(-z)`` terms for the upper tail, and a
    bracketed root-find in log space for the quantiles that converges or raises.

    References
    ----------
    .. [1] McLachlan, G. and Peel, D. (2000). *Finite Mixture Models*. Wiley.
    .. [2] Schwarz, G. (1978). Estimating the dimension of a model. *The Annals of
       Statistics*, 6(2), 461-464.

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib import GaussianMixtureCDF
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(-3, 1, 500), rng.normal(3, 1, 500)])
    >>> gm = GaussianMixtureCDF(n_components=2, random_state=0).fit(x)
    >>> np.round(gm.means_).tolist()
    [-3.0, 3.0]
    >>> bool(np.isfinite(gm.logcdf(-200.0)))
    True
    """

    def __init__(
        self,
        *,
        n_components=1,
        random_state=None,
        n_init=1,
        max_iter=1000,
        tol=1e-6,
        reg_covar=1e-6,
        init_params="kmeans",
    ):
        self.n_components = n_components
        self.random_state = random_state
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.init_params = init_params

    def fit(self, x, y=None):
        """Fit the mixture by EM.

        Parameters
        ----------
        x : array_like of shape (n,) or (n, 1)
            Finite data with at least ``n_components`` points.
        y : None
            Ignored.

        Returns
        -------
        self : GaussianMixtureCDF

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import GaussianMixtureCDF
        >>> x = np.random.default_rng(1).normal(5.0, 2.0, size=2000)
        >>> gm = GaussianMixtureCDF(n_components=1).fit(x)
        >>> bool(np.isclose(gm.means_[0], x.mean())), bool(np.isclose(gm.scales_[0], x.std(), rtol=1e-6))
        (True, True)
        """
        k = check_positive_int(self.n_components, "n_components")
        data = check_spread(as_1d_float(x, "x", min_size=1))
        if data.size < k:
            raise ValueError(
                f"n_components={k} needs at least {k} data points; got {data.size}. "
                "Use fewer components or more data."
            )
        gmm = GaussianMixture(
            n_components=k,
            covariance_type="full",
            random_state=self.random_state,
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            reg_covar=self.reg_covar,
            init_params=self.init_params,
        ).fit(data[:, None])
        order = np.argsort(gmm.means_[:, 0], kind="stable")
        self.weights_ = gmm.weights_[order] / gmm.weights_.sum()
        self.means_ = gmm.means_[order, 0].copy()
        self.scales_ = np.sqrt(gmm.covariances_[order, 0, 0])
        with np.errstate(divide="ignore"):
            self.log_weights_ = np.log(self.weights_)
        self.converged_ = bool(gmm.converged_)
        self.n_iter_ = int(gmm.n_iter_)
        return self

    # -- distribution functions -------------------------------------------------------------

    def _mixture_args(self):
        check_is_fitted(self)
        return self.means_, self.scales_, self.log_weights_

    def sample(self, n_samples=1, random_state=None):
        """Draw ``n_samples`` points: a component by weight, then its normal.

        ``random_state`` is passed to ``numpy.random.default_rng``.

        Examples
        --------
        >>> from scipy.stats import kstest
        >>> from kdelib import GaussianMixtureCDF
        >>> gm = GaussianMixtureCDF(n_components=2, random_state=0).fit([-3.1, -2.9, -3.0, 3.0, 2.8, 3.2])
        >>> bool(kstest(gm.sample(2000, random_state=0), gm.cdf).pvalue > 0.01)
        True
        """
        check_is_fitted(self)
        n_samples = check_n_samples(n_samples)
        rng = np.random.default_rng(random_state)
        component = rng.choice(self.weights_.size, size=n_samples, p=self.weights_)
        return self.means_[component] + self.scales_[component] * rng.standard_normal(n_samples)

    # -- likelihood and information criteria ------------------------------------------------

    def n_parameters(self):
        """Number of free parameters, ``3 K - 1``.

        Examples
        --------
        >>> from kdelib import GaussianMixtureCDF
        >>> GaussianMixtureCDF(n_components=3, random_state=0).fit(range(30)).n_parameters()
        8
        """
        check_is_fitted(self)
        return 3 * self.weights_.size - 1

    def bic(self, x):
        r"""Bayesian information criterion :math:`-2\ell + (3K-1)\log n` on the data ``x``.

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import GaussianMixtureCDF
        >>> x = np.random.default_rng(2).normal(size=400)
        >>> gm = GaussianMixtureCDF(n_components=1).fit(x)
        >>> bool(np.isclose(gm.bic(x), -2 * gm.logpdf(x).sum() + 2 * np.log(400)))
        True
        """
        data = as_1d_float(x, "x")
        return float(-2.0 * np.sum(self.logpdf(data)) + self.n_parameters() * np.log(data.size))

    def aic(self, x):
        r"""Akaike information criterion :math:`-2\ell + 2(3K-1)` on the data ``x``.

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import GaussianMixtureCDF
        >>> x = np.random.default_rng(2).normal(size=400)
        >>> gm = GaussianMixtureCDF(n_components=1).fit(x)
        >>> bool(np.isclose(gm.aic(x), -2 * gm.logpdf(x).sum() + 4))
        True
        """
        data = as_1d_float(x, "x")
        return float(-2.0 * np.sum(self.logpdf(data)) + 2.0 * self.n_parameters())


@dataclass(frozen=True)
class ComponentSelection:
    """Numbers of components compared on training BIC and held-out likelihood.

    Attributes
    ----------
    ks : tuple of int
        The numbers of components tried.
    train_bic : tuple of float
        BIC of each fit on its own training data (lower is better; a training criterion).
    train_nll : tuple of float
        Mean negative log-likelihood per training point (in-sample; falls as K grows).
    held_out_nll : tuple of float
        Mean negative log-likelihood per held-out point (lower is better; out of sample).
    best_k_by_train_bic : int
        The K with the smallest training BIC.
    best_k_by_held_out_nll : int
        The K with the smallest held-out negative log-likelihood.

    Examples
    --------
    >>> from kdelib.mixture import ComponentSelection
    >>> r = ComponentSelection((1, 2), (10.0, 9.0), (2.0, 1.9), (2.1, 2.2), 2, 1)
    >>> r.best_k_by_train_bic, r.best_k_by_held_out_nll
    (2, 1)
    """

    ks: tuple
    train_bic: tuple
    train_nll: tuple
    held_out_nll: tuple
    best_k_by_train_bic: int
    best_k_by_held_out_nll: int

    def to_markdown(self):
        """Return the comparison as a Markdown table.

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import select_n_components
        >>> x = np.random.default_rng(0).normal(size=300)
        >>> table = select_n_components(x[:200], x[200:], ks=[1, 2], random_state=0).to_markdown()
        >>> table.splitlines()[0]
        '| K | BIC (training data) | NLL per point (held-out data) |'
        """
        lines = ["| K | BIC (training data) | NLL per point (held-out data) |", "|---:|---:|---:|"]
        for k, bic, nll in zip(self.ks, self.train_bic, self.held_out_nll):
            lines.append(f"| {k} | {bic:.2f} | {nll:.4f} |")
        return "\n".join(lines)


def select_n_components(x_train, x_held_out, ks, random_state=None, **mixture_params):
    r"""Fit a :class:`GaussianMixtureCDF` for each K; report training BIC and held-out NLL.

    Parameters
    ----------
    x_train : array_like of shape (n,)
        Data the mixtures are fitted to; the BIC is computed on these.
    x_held_out : array_like of shape (m,)
        Data not used for fitting; the mean negative log-likelihood is computed on these.
    ks : sequence of int
        Numbers of components to try (each at least 1 and at most ``n``).
    random_state : None or int, default=None
        Seed of every EM fit.
    **mixture_params
        Further parameters of :class:`GaussianMixtureCDF` (e.g. ``n_init``).

    Returns
    -------
    ComponentSelection

    Notes
    -----
    .. math::

        \mathrm{BIC}_K = -2 \sum_{i \in \mathrm{train}} \log \hat f_K(x_i) + (3K-1)\log n,
        \qquad
        \mathrm{NLL}_K = -\frac{1}{m} \sum_{j \in \mathrm{held\ out}} \log \hat f_K(x_j).

    BIC penalises the training likelihood by the parameter count; the held-out NLL measures
    fit on new data directly. They often agree; where they do not, the held-out number is
    the direct estimate of predictive quality.

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib import select_n_components
    >>> rng = np.random.default_rng(1)
    >>> x = np.concatenate([rng.normal(-4, 1, 600), rng.normal(4, 1, 600)])
    >>> rng.shuffle(x)
    >>> result = select_n_components(x[:800], x[800:], ks=[1, 2, 3], random_state=0)
    >>> result.best_k_by_train_bic, result.best_k_by_held_out_nll
    (2, 2)
    """
    train = as_1d_float(x_train, "x_train")
    held_out = as_1d_float(x_held_out, "x_held_out")
    ks = tuple(ks) if np.ndim(ks) else (ks,)
    if not ks:
        raise ValueError("ks must be non-empty; give the numbers of components to try, e.g. range(1, 8).")
    ks = tuple(check_positive_int(k, "every entry of ks") for k in ks)
    bics, train_nlls, nlls = [], [], []
    for k in ks:
        model = GaussianMixtureCDF(n_components=k, random_state=random_state, **mixture_params).fit(train)
        bics.append(model.bic(train))
        train_nlls.append(-model.score(train))
        nlls.append(-model.score(held_out))
    return ComponentSelection(
        ks=ks,
        train_bic=tuple(bics),
        train_nll=tuple(train_nlls),
        held_out_nll=tuple(nlls),
        best_k_by_train_bic=ks[int(np.argmin(bics))],
        best_k_by_held_out_nll=ks[int(np.argmin(nlls))],
    )
