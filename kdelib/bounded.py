r"""Gaussian kernel density estimates on a bounded support: reflection and transformation.

Two boundary corrections for data on :math:`[L, U]` (either end may be infinite), used by
:class:`kdelib.GaussianKDE` through its ``bounds`` and ``boundary`` parameters.

*Reflection.* Let :math:`Y` be the unbounded KDE, the normal mixture
:math:`\sum_i w_i N(x_i, h^2)`, and fold the line onto the support: with one lower bound
:math:`X = L + |Y - L|`; with one upper bound :math:`X = U - |U - Y|`; with both, the line is cut
into cells :math:`C_j = [L + jW, L + (j+1)W]` (:math:`W = U - L`) and cell :math:`j` is mapped
onto :math:`[L, U]` by :math:`y \mapsto y - jW` (even :math:`j`) or
:math:`y \mapsto 2L + (j+1)W - y` (odd :math:`j`), which reflects at each bound over and over.
The estimate is the distribution of :math:`X`:

.. math::

    \hat f(x) = \sum_j \hat f_Y(y_j(x)), \qquad
    \hat F(x) = \sum_j P\left(Y \in C_j,\ \mathrm{fold}(Y) \le x\right),

where :math:`y_j(x)` is the point of :math:`C_j`'s image line that folds onto :math:`x` (so the
density is the sum of the kernels reflected at the bounds, each kept whole). Each term of
:math:`\hat F` is the mass of the mixture on an interval, and so is each term of
:math:`\hat S`; both are sums of non-negative interval masses, computed per kernel in log space
(see :func:`log_interval_mass`), so neither is a difference of two distribution functions and
both keep full relative precision. ``cdf(L) = 0`` and ``cdf(U) = 1`` exactly (points on or
beyond a bound are answered exactly), and :math:`\hat F = A/(A + B)`, :math:`\hat S =
B/(A+B)` with :math:`A, B` the two interval sums, so :math:`\hat F + \hat S = 1` to rounding.

How many reflections: with one bound, one (the fold is exact). With two, every cell within
:math:`D = \sqrt{W^2 + 90h^2}` of the data is kept. Every point of the support lies within
:math:`W` of every data point, in the data's own cell, while a dropped cell's image of it lies
more than :math:`D` away; so each dropped kernel term is below
:math:`e^{-(D^2 - W^2)/(2h^2)} = e^{-45}` times that data point's kept term, and the dropped
cells together (their distances grow by :math:`2W` per cell) below :math:`10^{-17}` of the
kept sum for up to :data:`MAX_CELLS` cells. The density, the distribution function and their
logarithms are therefore exact to rounding everywhere on the support, also far from the data,
and the total mass, which differs from 1 by less than that, is divided out. Samples are folded draws of :math:`Y`, exactly the distribution above.

*Transformation.* A KDE of :math:`y = t(x)` with :math:`t(x) = \log(x - L)`,
:math:`t(x) = \log(U - x)` or :math:`t(x) = \log(x - L) - \log(U - x)` (the logit of
:math:`(x - L)/W`) is mapped back with the exact Jacobian,

.. math::

    \log \hat f_X(x) = \log \hat f_Y(t(x)) + \log |t'(x)|, \qquad
    |t'(x)| = \frac{1}{x - L},\ \frac{1}{U - x},\ \frac{W}{(x - L)(U - x)},

and :math:`\hat F_X(x) = \hat F_Y(t(x))` (:math:`\hat S_Y(t(x))` for the decreasing map of an
upper bound). Quantiles and samples are those of :math:`Y` mapped by :math:`t^{-1}`. The
density goes to zero at each finite bound.
"""

import numpy as np
from scipy.optimize import elementwise
from scipy.special import log_ndtr, logsumexp, ndtr

from . import normal_mixture as nm
from ._validation import as_float_array

__all__ = ["BOUNDARY_METHODS", "MAX_CELLS", "log_interval_mass"]

#: Boundary corrections of :class:`kdelib.GaussianKDE`.
BOUNDARY_METHODS = {
    "reflect": "the kernels reflected at each finite bound, as often as needed",
    "transform": "a KDE of log(x - lower), log(upper - x) or the logit, with the exact Jacobian",
}
#: Most cells (reflections) a two-sided reflection may use before ``fit`` refuses.
MAX_CELLS = 2001
#: Kernel terms (points x data) per block in the interval masses.
_BLOCK = 1 << 17
#: Cells farther than sqrt(W^2 + _REACH2 h^2) from the data hold terms below exp(-_REACH2/2) of a kept one.
_REACH2 = 90.0
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(12)
_LOG_GL_WEIGHTS = np.log(_GL_WEIGHTS)
_HALF_LOG_2PI = 0.5 * np.log(2.0 * np.pi)
_LN2 = np.log(2.0)


def _log1mexp(v):
    """log(1 - exp(v)) for v <= 0, accurate in both regimes."""
    with np.errstate(divide="ignore"):
        return np.where(v > -_LN2, np.log(-np.expm1(np.minimum(v, 0.0))), np.log1p(-np.exp(v)))


def _log_normal_interval(alpha, beta, width, mid):
    r"""``log(Phi(beta) - Phi(alpha))`` element-wise for ``alpha <= beta`` (either may be infinite).

    ``width`` and ``mid`` are :math:`\beta - \alpha` and :math:`(\alpha + \beta)/2`, computed
    by the caller from the unstandardised ends so that a narrow interval far from the mean
    keeps its width to full relative precision.

    Narrow intervals (:math:`w(1 + |m|) \le 1`, :math:`w` the width, :math:`m` the midpoint)
    use 12-point Gauss-Legendre quadrature of :math:`\phi` in log space: over such an
    interval :math:`\log\phi` changes by at most about 1, so the rule is exact to rounding. The
    others are the difference of the smaller tails, ``log Phi(beta) + log(1 - Phi(alpha) /
    Phi(beta))`` (or the mirror image), whose logarithms then differ by at least about 0.4,
    so nothing cancels; intervals that contain 0 are ``log1p(-Phi(alpha) - Phi(-beta))``.
    """
    out = np.full(alpha.shape, -np.inf)
    with np.errstate(invalid="ignore", over="ignore"):  # an infinite product is simply not narrow
        narrow = width * (1.0 + np.abs(mid)) <= 1.0
    empty = ~(width > 0)
    lower = ~narrow & ~empty & (beta <= 0)
    upper = ~narrow & ~empty & (alpha >= 0)
    straddle = ~(narrow | empty | lower | upper)
    narrow &= ~empty
    if np.any(narrow):
        w, m = width[narrow], mid[narrow]
        nodes = m[:, None] + 0.5 * w[:, None] * _GL_NODES[None, :]
        out[narrow] = np.log(0.5 * w) + logsumexp(_LOG_GL_WEIGHTS - 0.5 * nodes**2, axis=1) - _HALF_LOG_2PI
    # A tail whose log rounds to -inf (an interval beyond 1e300 kernels away) has mass 0.
    if np.any(lower):
        lb = log_ndtr(beta[lower])
        with np.errstate(invalid="ignore"):
            out[lower] = np.where(lb == -np.inf, -np.inf, lb + _log1mexp(log_ndtr(alpha[lower]) - lb))
    if np.any(upper):
        la = log_ndtr(-alpha[upper])
        with np.errstate(invalid="ignore"):
            out[upper] = np.where(la == -np.inf, -np.inf, la + _log1mexp(log_ndtr(-beta[upper]) - la))
    if np.any(straddle):
        out[straddle] = np.log1p(-(ndtr(alpha[straddle]) + ndtr(-beta[straddle])))
    return out


def log_interval_mass(a, b, means, scale, log_weights=None):
    r"""Log of the mass of a normal mixture on :math:`[a, b]`, per kernel, in log space.

    .. math::

        \log \sum_i w_i \left[\Phi\!\left(\frac{b - \mu_i}{s}\right)
            - \Phi\!\left(\frac{a - \mu_i}{s}\right)\right],

    each bracket computed without cancellation (see the module notes), then ``logsumexp``.

    Parameters
    ----------
    a, b : ndarray of shape (m,)
        Interval ends, ``a <= b`` (``-inf``/``inf`` allowed).
    means : ndarray of shape (n,)
    scale : float
        The common standard deviation.
    log_weights : ndarray of shape (n,) or None
        Log weights summing (in ``exp``) to one; ``None`` for equal weights.

    Returns
    -------
    ndarray of shape (m,)

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.stats import norm
    >>> w = 2.0**-30  # an interval of width 9.3e-10, where Phi(b) - Phi(a) loses 7 digits
    >>> v = log_interval_mass(np.array([1.0]), np.array([1.0 + w]), np.array([0.0]), 1.0)
    >>> bool(np.isclose(v[0], np.log(w * norm.pdf(1.0 + w / 2)), rtol=1e-14))  # midpoint rule
    True
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = means.size
    log_w = np.full(n, -np.log(n)) if log_weights is None else log_weights
    out = np.empty(a.size)
    rows = max(1, _BLOCK // n)
    for start in range(0, a.size, rows):
        stop = min(a.size, start + rows)
        a_b, b_b = a[start:stop, None], b[start:stop, None]
        with np.errstate(invalid="ignore", over="ignore"):  # +-inf standardised ends are exact limits
            alpha = (a_b - means[None, :]) / scale
            beta = (b_b - means[None, :]) / scale
            width = np.broadcast_to((b_b - a_b) / scale, alpha.shape)
            mid = (0.5 * a_b + 0.5 * b_b - means[None, :]) / scale
        terms = _log_normal_interval(alpha, beta, width, mid) + log_w[None, :]
        with np.errstate(divide="ignore"):
            out[start:stop] = logsumexp(terms, axis=1)
    return out


def _solve_monotone(func, lo, hi, target, xatol):
    """Element-wise root of the increasing ``func(x) - target`` on ``[lo, hi]``; raise if not converged."""

    def f(x, t):
        v = func(x.reshape(-1)).reshape(x.shape) - t
        return np.clip(v, -1e300, 1e300)  # -inf at a bound: keep the bracket arithmetic finite

    tol = {"xatol": xatol, "xrtol": 4 * np.finfo(float).eps}
    res = elementwise.find_root(f, (lo, hi), args=(target,), tolerances=tol, maxiter=400)
    if not np.all(res.success):
        first = int(np.flatnonzero(~res.success)[0])
        raise FloatingPointError(
            f"quantile root-finding did not converge for log q = {target[first]!r} (status "
            f"{int(res.status[first])}); no unconverged value is returned."
        )
    return res.x


class Reflected:
    """The reflected (folded) KDE on ``[lower, upper]`` (see the module notes)."""

    def __init__(self, data, log_weights, bandwidth, lower, upper):
        self.data, self.log_w, self.h = data, log_weights, bandwidth
        self.lower, self.upper = lower, upper
        self.branches = self._branches()
        lo = np.array([c[2] for c in self.branches])
        hi = np.array([c[3] for c in self.branches])
        masses = log_interval_mass(lo, hi, data, bandwidth, log_weights)
        self.log_total = float(logsumexp(masses))

    def _branches(self):
        """(sign, offset, cell_lo, cell_hi): fold(y) = sign * y + offset on [cell_lo, cell_hi]."""
        lower, upper = self.lower, self.upper
        if np.isinf(upper):
            return [(1.0, 0.0, lower, np.inf), (-1.0, 2.0 * lower, -np.inf, lower)]
        if np.isinf(lower):
            return [(1.0, 0.0, -np.inf, upper), (-1.0, 2.0 * upper, upper, np.inf)]
        width = upper - lower
        reach = np.sqrt(width**2 + _REACH2 * self.h**2)
        first = int(np.floor((self.data[0] - reach - lower) / width))
        last = int(np.floor((self.data[-1] + reach - lower) / width))
        if last - first + 1 > MAX_CELLS:
            raise ValueError(
                f"boundary='reflect' would need {last - first + 1} reflections: the bandwidth "
                f"{self.h:.3g} is {self.h / width:.3g} times the width of the support. The limit "
                f"is {MAX_CELLS}; use a smaller bandwidth or boundary='transform'."
            )
        out = []
        for j in range(first, last + 1):
            cell = (lower + j * width, lower + (j + 1) * width)
            if j % 2 == 0:
                out.append((1.0, -j * width, *cell))
            else:
                out.append((-1.0, 2.0 * lower + (j + 1) * width, *cell))
        return out

    def _split(self, x):
        x = as_float_array(x, "x")
        flat = x.reshape(-1)
        return x.shape, flat, (flat > self.lower) & (flat < self.upper)

    def logpdf(self, x):
        shape, flat, inside = self._split(x)
        inside |= (flat == self.lower) | (flat == self.upper)  # the closed support
        out = np.full(flat.size, -np.inf)
        xi = flat[inside]
        parts = [nm.mixture_logpdf(s * (xi - c), self.data, self.h, self.log_w) for s, c, _, _ in self.branches]
        out[inside] = logsumexp(np.stack(parts), axis=0) - self.log_total
        return out.reshape(shape)[()]

    def _log_tails(self, xi):
        below, above = [], []
        for s, c, lo, hi in self.branches:
            pre = s * (xi - c)
            lo_v, hi_v = np.full(xi.size, lo), np.full(xi.size, hi)
            if s > 0:
                below.append(log_interval_mass(lo_v, np.maximum(pre, lo), self.data, self.h, self.log_w))
                above.append(log_interval_mass(np.minimum(pre, hi), hi_v, self.data, self.h, self.log_w))
            else:
                below.append(log_interval_mass(np.minimum(pre, hi), hi_v, self.data, self.h, self.log_w))
                above.append(log_interval_mass(lo_v, np.maximum(pre, lo), self.data, self.h, self.log_w))
        with np.errstate(divide="ignore"):
            log_a = logsumexp(np.stack(below), axis=0)
            log_b = logsumexp(np.stack(above), axis=0)
        total = np.logaddexp(log_a, log_b)
        return log_a - total, log_b - total

    def log_tail(self, x, upper):
        shape, flat, inside = self._split(x)
        below = flat <= self.lower
        if upper:
            out = np.where(below, 0.0, -np.inf)
        else:
            out = np.where(below, -np.inf, 0.0)
        if np.any(inside):
            log_f, log_s = self._log_tails(flat[inside])
            out[inside] = log_s if upper else log_f
        return out.reshape(shape)[()]

    def _bracket_end(self, target, upper, toward_upper):
        """An end point where the tail has passed ``target``, searching away from the data."""
        span = max(self.data[-1] - self.data[0], self.h)
        if toward_upper:
            end, step = self.data[-1] + self.h, span
        else:
            end, step = self.data[0] - self.h, -span
        end = np.full(target.size, end)
        for _ in range(2100):
            value = self.log_tail(end, upper)
            done = value <= target if (upper == toward_upper) else value >= target
            if np.all(done):
                return end
            end = np.where(done, end, end + step)
            step *= 2.0
        raise FloatingPointError("could not bracket the quantile: it lies beyond the largest double.")

    def ppf_log(self, log_q, upper):
        out = np.empty(log_q.size)
        zero, one = log_q == -np.inf, log_q == 0
        out[zero] = self.upper if upper else self.lower
        out[one] = self.lower if upper else self.upper
        inner = ~(zero | one)
        if not np.any(inner):
            return out
        target = log_q[inner]
        lo = np.full(target.size, self.lower) if np.isfinite(self.lower) else self._bracket_end(target, upper, False)
        hi = np.full(target.size, self.upper) if np.isfinite(self.upper) else self._bracket_end(target, upper, True)
        sign = -1.0 if upper else 1.0  # log F increases with x, log S decreases
        out[inner] = _solve_monotone(
            lambda x: sign * self.log_tail(x, upper), lo, hi, sign * target, np.finfo(float).tiny
        )
        return out

    def fold(self, y):
        lower, upper = self.lower, self.upper
        if np.isinf(upper):
            x = lower + np.abs(y - lower)
        elif np.isinf(lower):
            x = upper - np.abs(upper - y)
        else:
            width = upper - lower
            z = np.mod(y - lower, 2.0 * width)
            x = lower + np.where(z <= width, z, 2.0 * width - z)
        # Rounding of lower + z may pass a bound by an ulp; the exact fold lies inside.
        return np.clip(x, lower, upper)

    def pdf_variance(self, x, n_eff):
        r"""Plug-in variance of the reflected estimate (see ``GaussianKDE.pdf_std``).

        With the reflected kernel :math:`k(x, X) = \sum_b \phi_h(y_b(x) - X) / T`,
        :math:`\phi_h(p - X)\phi_h(p' - X) = \phi_{\sqrt2 h}(p - p')\,\phi_{h/\sqrt2}(X - (p +
        p')/2)`, so :math:`E\,k^2` is a sum over pairs of branches of KDEs with bandwidth
        :math:`h/\sqrt2`.
        """
        shape, flat, inside = self._split(x)
        inside |= (flat == self.lower) | (flat == self.upper)
        xi = flat[inside]
        pre = [s * (xi - c) for s, c, _, _ in self.branches]
        h = self.h
        square = np.zeros(xi.size)
        for k, p in enumerate(pre):
            for q in pre[k:]:
                factor = 1.0 if q is p else 2.0
                gap = np.exp(-0.25 * ((p - q) / h) ** 2) / (2.0 * np.sqrt(np.pi) * h)
                square += factor * gap * nm.mixture_pdf(0.5 * (p + q), self.data, h / np.sqrt(2.0), self.log_w)
        total = np.exp(self.log_total)
        mean = np.exp(self.logpdf(xi))
        out = np.zeros(flat.size)
        out[inside] = np.maximum((square / total**2 - mean**2) / n_eff, 0.0)
        return out.reshape(shape)


class Transformed:
    """A KDE of ``t(x)`` (log or logit) mapped back with the exact Jacobian."""

    def __init__(self, inner, lower, upper):
        self.inner, self.lower, self.upper = inner, lower, upper

    @staticmethod
    def forward(x, lower, upper):
        """``t(x)`` for points strictly inside the support."""
        if np.isinf(upper):
            return np.log(x - lower)
        if np.isinf(lower):
            return np.log(upper - x)
        return np.log(x - lower) - np.log(upper - x)

    def _log_jacobian(self, x):
        lower, upper = self.lower, self.upper
        if np.isinf(upper):
            return -np.log(x - lower)
        if np.isinf(lower):
            return -np.log(upper - x)
        return np.log(upper - lower) - np.log(x - lower) - np.log(upper - x)

    def inverse(self, y):
        lower, upper = self.lower, self.upper
        if np.isinf(upper):
            x = lower + np.exp(y)
        elif np.isinf(lower):
            x = upper - np.exp(y)
        else:
            width = upper - lower
            e = np.exp(-np.abs(y))
            x = np.where(y <= 0, lower + width * (e / (1.0 + e)), upper - width * (e / (1.0 + e)))
        return np.clip(x, lower, upper)  # rounding of lower + tiny may pass a bound by an ulp

    @property
    def decreasing(self):
        return np.isinf(self.lower)

    def _split(self, x):
        x = as_float_array(x, "x")
        flat = x.reshape(-1)
        return x.shape, flat, (flat > self.lower) & (flat < self.upper)

    def logpdf(self, x):
        shape, flat, inside = self._split(x)
        out = np.full(flat.size, -np.inf)
        xi = flat[inside]
        out[inside] = self.inner.logpdf(self.forward(xi, self.lower, self.upper)) + self._log_jacobian(xi)
        return out.reshape(shape)[()]

    def log_tail(self, x, upper):
        shape, flat, inside = self._split(x)
        below = flat <= self.lower
        out = np.where(below, 0.0, -np.inf) if upper else np.where(below, -np.inf, 0.0)
        y = self.forward(flat[inside], self.lower, self.upper)
        use_upper = upper != self.decreasing
        out[inside] = self.inner.logsf(y) if use_upper else self.inner.logcdf(y)
        return out.reshape(shape)[()]

    def ppf_log(self, log_q, upper):
        return self.inverse(self.inner.ppf_log(log_q, upper=(upper != self.decreasing)))

    def pdf_variance(self, x, n_eff):
        shape, flat, inside = self._split(x)
        out = np.zeros(flat.size)
        xi = flat[inside]
        y = self.forward(xi, self.lower, self.upper)
        out[inside] = self.inner._pdf_variance(y) * np.exp(2.0 * self._log_jacobian(xi))
        return out.reshape(shape)
