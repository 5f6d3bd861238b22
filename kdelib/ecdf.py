r"""The empirical distribution function of a 1-D sample: a staircase with exact rational steps.

Shape contract: the data are 1-D (n,); ``cdf``, ``sf`` and ``ppf`` accept arrays of any shape and
return arrays of that shape.
"""

import numpy as np

from ._validation import as_1d_float, as_float_array, check_probability, check_weights

__all__ = ["ECDF"]


class ECDF:
    r"""Empirical cumulative distribution function of a 1-D sample.

    Parameters
    ----------
    x : array_like of shape (n,)
        The sample; finite values, at least one.
    weights : array_like of shape (n,), optional
        Non-negative weights, one per point (normalised internally). ``None`` gives every point
        mass ``1/n``.

    Attributes
    ----------
    n : int
        Number of data points (zero-weight points included).
    x : ndarray of shape (n,)
        The data, sorted ascending.
    weights : ndarray of shape (n,) or None
        Normalised weights in the order of ``x``, or ``None`` for equal weights.
    cumulative : ndarray of shape (n,)
        ``cumulative[k]`` is :math:`F_n(x_{(k)})`, the height of the staircase just after the
        ``k``-th sorted point; the last entry is exactly 1.

    Raises
    ------
    ValueError
        If ``x`` is empty, not 1-D, or holds NaN or infinite values, or if ``weights`` is invalid.

    See Also
    --------
    kdelib.GaussianKDE : a smooth estimate whose CDF is differentiable and reaches into the tails.

    Notes
    -----
    .. math::

        F_n(t) = \frac{1}{n} \sum_{i=1}^{n} \mathbf{1}\{x_i \le t\},
        \qquad
        F_n^{-1}(q) = \inf\{x : F_n(x) \ge q\}.

    With weights :math:`w_i` (summing to one) the indicator terms are weighted by :math:`w_i`.

    The data are sorted once; :math:`F_n(t)` is then the number of points :math:`\le t`, found
    with ``numpy.searchsorted(side="right")``, so tied points are all counted and the function
    is right-continuous. Without weights the heights are the exact ratios :math:`k/n` (integer
    count over integer size, correctly rounded), so ``ecdf.cdf(ecdf.ppf(q)) >= q`` and
    ``ecdf.ppf(ecdf.cdf(x_i)) == x_i`` hold exactly. The survival function is computed from
    the count *above* ``t`` (or a suffix sum of weights), not as ``1 - F``, so it keeps its
    small values.

    Three limits make the ECDF unsuitable as the ``F`` of a Gaussianizer:

    * it is a **staircase**: it jumps by :math:`1/n` (or :math:`w_i`) at each data point and is
      flat in between, so it is not differentiable (its derivative is zero almost everywhere
      and a Dirac spike at each point) and there is no density for a log-determinant;
    * it is **tail-blind**: :math:`F_n(t) = 0` below the smallest and :math:`1` above the
      largest observation, so it assigns no probability beyond the observed range and cannot
      resolve tail probabilities below :math:`1/n`;
    * the inverse is **not one-to-one**: every :math:`q \in ((k-1)/n, k/n]` maps to the same
      :math:`x_{(k)}`.

    ``ppf(0)`` is :math:`-\infty`, the value of the generalised inverse at zero
    (every real :math:`x` has :math:`F_n(x) \ge 0`); this matches the convention of the
    smooth distributions in kdelib. ``ppf(1)`` is the largest observation.

    References
    ----------
    .. [1] A. W. van der Vaart, *Asymptotic Statistics*, Cambridge University Press, 1998,
       chapters 19 and 21 (empirical distribution and quantile functions).

    Examples
    --------
    >>> from kdelib import ECDF
    >>> ecdf = ECDF([3.0, 1.0, 2.0, 2.0])
    >>> ecdf.cdf([0.5, 1.0, 2.0, 2.5, 3.0]).tolist()
    [0.0, 0.25, 0.75, 0.75, 1.0]
    >>> ecdf.ppf([0.25, 0.3, 1.0]).tolist()
    [1.0, 2.0, 3.0]
    >>> float(ecdf.ppf(0.0))
    -inf
    """

    def __init__(self, x, weights=None):
        data = as_1d_float(x, "x")
        w = check_weights(weights, data.size)
        order = np.argsort(data, kind="stable")
        self.n = int(data.size)
        self.x = data[order]
        if w is None:
            self.weights = None
            self.cumulative = np.arange(1, self.n + 1) / self.n
            self._upper_tail = np.arange(self.n - 1, -1, -1) / self.n
        else:
            self.weights = w[order]
            self.cumulative = _cumulative_sum_ending_at_one(self.weights)
            # P(X > x_(k)): a suffix sum, so the upper tail keeps its small values.
            self._upper_tail = _cumulative_sum_ending_at_one(self.weights[::-1])[::-1]
            self._upper_tail = np.append(self._upper_tail[1:], 0.0)

    def __repr__(self):
        weighted = "" if self.weights is None else ", weighted"
        return f"ECDF(n={self.n}{weighted})"

    def _count_at_or_below(self, t):
        return np.searchsorted(self.x, t, side="right")

    def cdf(self, t):
        r"""Return :math:`F_n(t) = P(X \le t)`, right-continuous.

        Parameters
        ----------
        t : array_like
            Finite evaluation points, any shape.

        Returns
        -------
        ndarray
            Values in [0, 1], same shape as ``t``.

        Examples
        --------
        >>> from kdelib import ECDF
        >>> ECDF([3.0, 1.0, 2.0, 2.0]).cdf([0.5, 2.0, 3.0]).tolist()
        [0.0, 0.75, 1.0]
        """
        t = as_float_array(t, "t")
        k = self._count_at_or_below(t)
        heights = np.concatenate(([0.0], self.cumulative))
        return heights[k]

    def sf(self, t):
        r"""Return the survival function :math:`S_n(t) = P(X > t)`.

        Computed from the mass strictly above ``t`` (not as ``1 - cdf``).

        Parameters
        ----------
        t : array_like
            Finite evaluation points, any shape.

        Returns
        -------
        ndarray
            Values in [0, 1], same shape as ``t``.

        Examples
        --------
        >>> from kdelib import ECDF
        >>> ECDF([3.0, 1.0, 2.0, 2.0]).sf([0.5, 2.0, 3.0]).tolist()
        [1.0, 0.25, 0.0]
        """
        t = as_float_array(t, "t")
        k = self._count_at_or_below(t)
        tails = np.concatenate(([1.0], self._upper_tail))
        return tails[k]

    def ppf(self, q):
        r"""Return the generalised inverse :math:`F_n^{-1}(q) = \inf\{x : F_n(x) \ge q\}`.

        Parameters
        ----------
        q : array_like
            Probabilities in [0, 1], any shape.

        Returns
        -------
        ndarray
            Sample values (``-inf`` where ``q == 0``), same shape as ``q``.

        Raises
        ------
        ValueError
            If any ``q`` lies outside [0, 1] or is NaN.

        Examples
        --------
        >>> from kdelib import ECDF
        >>> ECDF([3.0, 1.0, 2.0, 2.0]).ppf([0.25, 0.5, 0.75, 1.0]).tolist()
        [1.0, 2.0, 2.0, 3.0]
        """
        q = check_probability(q, "q")
        # Smallest k with cumulative[k] >= q: the first step that reaches q.
        k = np.searchsorted(self.cumulative, q, side="left")
        k = np.minimum(k, self.n - 1)  # guards q == 1 against rounding in weighted sums
        return np.where(q == 0, -np.inf, self.x[k])


def _cumulative_sum_ending_at_one(w):
    """Non-decreasing partial sums of normalised weights, with the last one exactly 1."""
    c = np.cumsum(w)
    c /= c[-1]
    c[-1] = 1.0
    # Division can leave a value a hair above 1 before the end; keep the staircase <= 1.
    return np.minimum(c, 1.0)
