r"""Monotone rational-quadratic splines and the spline densities built on them.

:class:`RationalQuadraticSpline` is the monotone rational-quadratic spline of Gregory and
Delbourgo (1982), in the form used by the neural spline flows of Durkan et al. (2019), with a
forward map, an analytic inverse, and its derivative, evaluated without cancellation.
:class:`SplineDensity` is a one-dimensional density whose CDF is such a spline, fitted by
maximum likelihood, with normal tails attached beyond the knots.
"""

import math

import numpy as np
from scipy.optimize import minimize
from scipy.special import erf, log_ndtr, ndtri_exp
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state

from ._validation import (
    as_1d_float,
    as_float_array,
    check_positive_int,
    check_choice,
    check_real,
    check_spline_knots,
    check_spread,
    check_weights,
)
from .base import DensityMixin

__all__ = ["RationalQuadraticSpline", "SplineDensity", "PchipDensity"]


class _BinSearch:
    """``np.searchsorted(edges, v, side="right") - 1``, faster for many points and few edges.

    A uniform grid of cells over ``[edges[0], edges[-1]]`` gives each point a first guess, the
    bin of the cell's lower neighbour (never above the true bin), which is then moved up while
    ``v >= edges[k + 1]``. The result is identical to ``searchsorted`` (the tests check it);
    where the cells would be too fine for the edges' magnitude, ``searchsorted`` is used.
    """

    def __init__(self, edges):
        self.edges = edges
        K = edges.size - 1
        span = edges[-1] - edges[0]
        self.n_cells = n_cells = 4 * K + 4
        width = span / n_cells
        magnitude = np.max(np.abs(edges[[0, -1]]))
        self.use_grid = bool(np.isfinite(span) and width > 1024 * np.spacing(magnitude))
        if self.use_grid:
            self.scale = n_cells / span
            # guess[i] for the point in cell j = i - 1 (i = 0 below the first edge): the bin
            # holding the lower edge of cell j - 1
            cells = edges[0] + width * np.arange(-2, n_cells)
            self.guess = np.searchsorted(edges, cells, side="right") - 1
            self.padded = np.append(edges, np.nan)  # v >= nan is False: no bin past K

    def __call__(self, v):
        if not self.use_grid or v.size < 64:
            return np.searchsorted(self.edges, v, side="right") - 1
        with np.errstate(over="ignore", invalid="ignore"):  # |v| near the largest double
            j = v - self.edges[0]
            j *= self.scale
            j += 1.0
            np.clip(j, 0.0, self.n_cells + 1.0, out=j)
        k = self.guess[j.astype(np.intp)]
        padded = self.padded
        up = v >= padded[k + 1]
        k += up
        todo = np.flatnonzero(up)
        while todo.size:
            kt = k[todo]
            up = v[todo] >= padded[kt + 1]
            todo = todo[up]
            k[todo] += 1
        return k


class RationalQuadraticSpline:
    r"""Monotone rational-quadratic spline through given knots, values and slopes.

    Parameters
    ----------
    x : array_like of shape (K + 1,)
        Knots, finite and strictly increasing.
    y : array_like of shape (K + 1,)
        Values at the knots, finite and strictly increasing.
    derivatives : array_like of shape (K + 1,)
        Slopes at the knots, finite and positive.

    Notes
    -----
    In bin :math:`k` (:math:`x_k \le t < x_{k+1}`) with width :math:`w_k`, height
    :math:`h_k = y_{k+1} - y_k`, mean slope :math:`s_k = h_k / w_k`,
    :math:`\xi = (t - x_k)/w_k` and :math:`\eta = (x_{k+1} - t)/w_k = 1 - \xi`,

    .. math::

        s(t) = y_k + h_k\,\frac{s_k\xi^2 + \delta_k\xi\eta}{D}, \qquad
        D = s_k(\xi^2 + \eta^2) + (\delta_k + \delta_{k+1})\,\xi\eta,

        s'(t) = s_k^2\,\frac{\delta_{k+1}\xi^2 + 2 s_k\xi\eta + \delta_k\eta^2}{D^2}.

    Every term is positive, so the forward map, the derivative and its logarithm have no
    cancellation (:math:`D` is the usual :math:`s_k + (\delta_k + \delta_{k+1} - 2s_k)\xi\eta`
    rewritten with :math:`\xi + \eta = 1`). Below :math:`x_0` and from :math:`x_K` on, the
    spline continues linearly with the end slopes, so it is :math:`C^1` everywhere.

    *Bins.* :math:`t` belongs to bin :math:`k` when :math:`x_k \le t < x_{k+1}`, and ``u`` to
    bin :math:`k` when :math:`y_k \le u < y_{k+1}`, so a knot and its neighbouring doubles are
    assigned the same way forward and backward; at a knot :math:`\xi = 0` and the spline returns
    :math:`y_k` (and the inverse :math:`x_k`) exactly. Each bin's values are kept inside
    :math:`[y_k, y_{k+1}]` (and the inverse inside :math:`[x_k, x_{k+1}]`), which only ever
    moves a result by the last rounding, so the map stays monotone in floating point.

    *Inverse.* With :math:`\Delta = u - y_k`, :math:`\Delta' = y_{k+1} - u`, :math:`\xi`
    solves :math:`a\xi^2 + b\xi + c = 0` (written here for a root in the left half of the bin;
    right of the bin's middle the same equation is solved for :math:`\eta = 1 - \xi` with the roles of
    :math:`\Delta, \Delta'` and of :math:`\delta_k, \delta_{k+1}` exchanged, so the root
    is always the distance to the nearer knot and the rounding of :math:`a` and :math:`b`,
    which can cancel, moves :math:`x` by little) with

    .. math::

        a = \Delta(\delta_{k+1} - s_k) - \Delta'(\delta_k - s_k), \quad
        b = \Delta'\delta_k - \Delta(\delta_{k+1} - 2 s_k), \quad
        c = -s_k\Delta,

    the root in :math:`[0, 1]` being :math:`2c / (-b - \sqrt{b^2 - 4ac})` when :math:`b \ge 0`
    and :math:`(-b + \sqrt{b^2 - 4ac}) / (2a)` when :math:`b < 0` (then :math:`a > 0`). Using
    only the first form, as most flow libraries do, subtracts two nearly equal numbers when
    :math:`b < 0` (a steep right slope and :math:`u` near :math:`y_{k+1}`) and loses digits.
    The discriminant is non-negative in exact arithmetic; a rounding-negative value (within
    a few ulp of :math:`b^2 + 4|ac|`) is set to zero, anything larger raises.

    References
    ----------
    .. [1] J. A. Gregory and R. Delbourgo, "Piecewise rational quadratic interpolation to
       monotonic data", *IMA Journal of Numerical Analysis* 2(2), 123-130, 1982.
    .. [2] C. Durkan, A. Bekasov, I. Murray and G. Papamakarios, "Neural spline flows",
       *Advances in Neural Information Processing Systems* 32, 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib.spline import RationalQuadraticSpline
    >>> s = RationalQuadraticSpline([0.0, 1.0, 3.0], [0.0, 0.5, 1.0], [1.0, 0.2, 0.1])
    >>> s(np.array([0.0, 1.0, 3.0])).tolist()
    [0.0, 0.5, 1.0]
    >>> float(s.inverse(s(2.2)).round(12))
    2.2
    >>> float(s.derivative(4.0))  # linear beyond the last knot
    0.1
    """

    def __init__(self, x, y, derivatives):
        x, y, d = check_spline_knots(x, y, derivatives)
        self.x, self.y, self.derivatives = x, y, d
        with np.errstate(over="ignore"):
            self._w = np.diff(x)
            self._h = np.diff(y)
        if not (np.all(np.isfinite(self._w)) and np.all(np.isfinite(self._h))):
            raise ValueError("knot spacings overflow (x or y spans more than the largest double); rescale.")
        self._s = self._h / self._w
        self._x_next, self._y_next, self._d_next = x[1:], y[1:], d[1:]
        self._search_x, self._search_y = _BinSearch(x), _BinSearch(y)
        # s(middle of bin k) - y[k], to tell on which half of the bin a value's root lies
        self._mid_lo = self._h * ((self._s + d[:-1]) / (2.0 * self._s + d[:-1] + d[1:]))
        if not (np.all(self._s > 0) and np.all(np.isfinite(self._s))):
            raise ValueError("the mean slope of a bin under- or overflows; rescale x or y.")

    @property
    def n_bins(self):
        """Number of bins :math:`K`."""
        return self._w.size

    # ------------------------------------------------------------------ bins
    def _bins(self, t):
        """Bin of each point: -1 below x[0], K from x[K] on, else k with x[k] <= t < x[k+1]."""
        return self._search_x(t)

    def _inverse_bins(self, u):
        """Bin of each value: -1 below y[0], K from y[K] on, else k with y[k] <= u < y[k+1]."""
        return self._search_y(u)

    def _local(self, t, k):
        """xi, eta, s, d_k, d_k+1, h for points inside bin k (0 <= k < K)."""
        x0, x1, w = self.x[k], self.x[k + 1], self._w[k]
        return ((t - x0) / w, (x1 - t) / w, self._s[k], self.derivatives[k],
                self.derivatives[k + 1])

    # ------------------------------------------------------------------ forward
    def __call__(self, t):
        """Evaluate :math:`s(t)` (any shape; a NumPy scalar for a scalar)."""
        t = as_float_array(t, "t")
        return self._forward(t.reshape(-1), want_value=True)[0].reshape(t.shape)[()]

    def derivative(self, t):
        r"""Evaluate :math:`s'(t)` (the end slopes exactly outside the knots).

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import RationalQuadraticSpline
        >>> s = RationalQuadraticSpline([0.0, 1.0, 3.0], [0.0, 2.0, 2.5], [1.0, 0.5, 2.0])
        >>> t, step = np.array([0.4, 2.2]), 1e-6
        >>> bool(np.allclose(s.derivative(t), (s(t + step) - s(t - step)) / (2 * step), rtol=1e-7))
        True
        """
        t = as_float_array(t, "t")
        flat = t.reshape(-1)
        out = np.exp(self._forward(flat, want_log_derivative=True)[1])
        out[flat < self.x[0]] = self.derivatives[0]
        out[flat >= self.x[-1]] = self.derivatives[-1]
        return out.reshape(t.shape)[()]

    def log_derivative(self, t):
        r"""Evaluate :math:`\log s'(t)` (no cancellation: every term is positive).

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import RationalQuadraticSpline
        >>> s = RationalQuadraticSpline([0.0, 1.0, 3.0], [0.0, 2.0, 2.5], [1.0, 0.5, 2.0])
        >>> bool(np.allclose(s.log_derivative([-5.0, 0.5, 9.0]), np.log(s.derivative([-5.0, 0.5, 9.0]))))
        True
        """
        t = as_float_array(t, "t")
        return self._forward(t.reshape(-1), want_log_derivative=True)[1].reshape(t.shape)[()]

    def value_and_log_derivative(self, t):
        r"""Return :math:`s(t)` and :math:`\log s'(t)` from one bin search.

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import RationalQuadraticSpline
        >>> s = RationalQuadraticSpline([0.0, 1.0, 3.0], [0.0, 2.0, 2.5], [1.0, 0.5, 2.0])
        >>> value, log_slope = s.value_and_log_derivative([0.5, 2.0])
        >>> bool(np.array_equal(value, s([0.5, 2.0]))), bool(np.allclose(log_slope, s.log_derivative([0.5, 2.0])))
        (True, True)
        """
        t = as_float_array(t, "t")
        value, log_der = self._forward(t.reshape(-1), want_value=True, want_log_derivative=True)
        return value.reshape(t.shape)[()], log_der.reshape(t.shape)[()]

    def _forward(self, t, want_value=False, want_log_derivative=False):
        K = self.n_bins
        k = self._bins(t)
        all_inside = t.size == 0 or (k.min() >= 0 and k.max() < K)
        if all_inside:
            ki, ti = k, t
        else:
            left, right = k < 0, k >= K
            inside = ~(left | right)
            ki, ti = k[inside], t[inside]
        # Written with in-place operations: at 1e6 points the temporaries cost more than the
        # arithmetic. Same formulas as _inside_parts.
        wk = self._w[ki]
        xi = ti - self.x[ki]
        xi /= wk
        eta = self._x_next[ki] - ti
        eta /= wk
        s, d0, d1 = self._s[ki], self.derivatives[ki], self._d_next[ki]
        xe = xi * eta
        xi *= xi  # xi^2 from here on
        eta *= eta  # eta^2
        num_lo = s * xi
        num_lo += d0 * xe
        den = s * eta
        den += d1 * xe
        den += num_lo
        inner = inner_ld = None
        if want_value:
            inner = num_lo
            inner /= den
            inner *= self._h[ki]
            inner += self.y[ki]
            # y[k] + a non-negative term is >= y[k]; the top is kept at y[k+1] (monotone)
            np.minimum(inner, self._y_next[ki], out=inner)
        if want_log_derivative:
            N = d1 * xi
            xe *= s
            xe *= 2.0
            N += xe
            d0 *= eta
            N += d0
            ratio = np.divide(s, den, out=den)
            ratio *= ratio
            N *= ratio
            inner_ld = np.log(N, out=N)
        if all_inside:
            return inner, inner_ld
        value = np.empty(t.size) if want_value else None
        log_der = np.empty(t.size) if want_log_derivative else None
        for sel, j in ((left, 0), (right, K)):
            if np.any(sel):
                if want_value:
                    value[sel] = self.y[j] + self.derivatives[j] * (t[sel] - self.x[j])
                if want_log_derivative:
                    log_der[sel] = np.log(self.derivatives[j])
        if want_value:
            value[inside] = inner
        if want_log_derivative:
            log_der[inside] = inner_ld
        return value, log_der

    def _inside_parts(self, t, k):
        """For points in bin ``k``: ``s(t) - y[k]``, ``y[k+1] - s(t)`` and ``log s'(t)``.

        Both parts are sums of positive terms over the positive ``D``, so a distribution built
        on the spline gets :math:`F` and :math:`1 - F` each to full relative precision.
        """
        xi, eta, s, d0, d1 = self._local(t, k)
        xe = xi * eta
        num_lo = s * (xi * xi) + d0 * xe
        num_hi = s * (eta * eta) + d1 * xe
        den = num_lo + num_hi
        h = self._h[k]
        log_der = 2.0 * np.log(s / den) + np.log(d1 * (xi * xi) + 2.0 * s * xe + d0 * (eta * eta))
        return h * (num_lo / den), h * (num_hi / den), log_der

    # ------------------------------------------------------------------ inverse
    def inverse(self, u):
        r"""Evaluate :math:`s^{-1}(u)` analytically (see the Notes for the root).

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import RationalQuadraticSpline
        >>> s = RationalQuadraticSpline([0.0, 1.0, 3.0], [0.0, 2.0, 2.5], [1.0, 0.5, 2.0])
        >>> s.inverse(s([0.0, 1.0, 3.0])).tolist()  # knots come back bit for bit
        [0.0, 1.0, 3.0]
        >>> t = np.linspace(-2.0, 5.0, 29)
        >>> bool(np.allclose(s.inverse(s(t)), t, rtol=1e-14, atol=1e-14))
        True
        """
        u = as_float_array(u, "u")
        flat = u.reshape(-1)
        K = self.n_bins
        k = self._inverse_bins(flat)
        if flat.size and k.min() >= 0 and k.max() < K:  # all inside: no masks, no copies
            lo = flat - self.y[k]
            hi = self._y_next[k] - flat
            return self._inverse_inside(lo, hi, k).reshape(u.shape)[()]
        out = np.empty(flat.size)
        for sel, j in ((k < 0, 0), (k >= K, K)):
            if np.any(sel):
                out[sel] = self.x[j] + (flat[sel] - self.y[j]) / self.derivatives[j]
        inside = (k >= 0) & (k < K)
        ki, ui = k[inside], flat[inside]
        out[inside] = self._inverse_inside(ui - self.y[ki], self.y[ki + 1] - ui, ki)
        return out.reshape(u.shape)[()]

    def _inverse_inside(self, lo, hi, k):
        """Root in bin ``k`` given ``lo = u - y[k] >= 0`` and ``hi = y[k+1] - u > 0``.

        The quadratic is solved for the distance to the nearer end of the bin (``xi`` from the
        left when the value lies below the spline's value at the bin's middle, ``eta = 1 - xi``
        from the right otherwise, by the mirrored coefficients), so the root is at most 1/2
        and the rounding of ``a`` and ``b`` moves ``x`` by little.
        """
        s = self._s[k]
        flip = lo > self._mid_lo[k]  # the root lies right of the bin's middle
        near = np.where(flip, hi, lo)
        far = np.where(flip, lo, hi)
        k_near = k + flip
        d_near = self.derivatives[k_near]
        d_far = self.derivatives[(2 * k + 1) - k_near]
        # a = near (d_far - s) - far (d_near - s);  b = far d_near - near (d_far - 2 s);  c = -s near
        a = d_far - s
        a *= near
        b = d_near - s
        b *= far
        a -= b
        b += far * s  # far * d_near
        d_far -= 2.0 * s
        d_far *= near
        b -= d_far
        c = near
        c *= -s
        disc = b * b
        four_ac = 4.0 * a * c
        disc -= four_ac
        negative = disc < 0
        if np.any(negative):
            scale = b * b + np.abs(four_ac)
            if np.any(disc[negative] < -8.0 * np.finfo(float).eps * scale[negative]):
                raise FloatingPointError(
                    "negative discriminant beyond rounding in the spline inverse; please report."
                )
            disc[negative] = 0.0
        root = np.sqrt(disc, out=disc)
        # q = -(b + sign(b) sqrt(disc)) / 2 has no cancellation; the root in [0, 1] is c / q
        # for b >= 0 and q / a for b < 0 (the two usual forms of the same root).
        positive = b >= 0
        np.copysign(root, b, out=root)
        root += b
        q = root
        q *= -0.5
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(positive, c, q)
            r /= np.where(positive, q, a)
        # b >= 0 with c = 0 (u on the knot) gives 0 / (-b) = -0.0, i.e. xi = 0.
        x0, x1 = self.x[k], self._x_next[k]
        r *= self._w[k]
        out = np.where(flip, x1 - r, x0 + r)
        np.maximum(out, x0, out=out)
        return np.minimum(out, x1, out=out)


# --------------------------------------------------------------------------- fitted density
#: Smallest probability mass of a bin or a tail in a fitted :class:`SplineDensity`.
MIN_MASS = 1e-12
_SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)
_LOG2 = np.log(2.0)
_SQRT_HALF = math.sqrt(0.5)


def _softplus(v):
    return np.logaddexp(0.0, v)


def _sigmoid(v):
    return np.exp(-np.logaddexp(0.0, -v))


def _inverse_softplus(v):
    return np.where(v > 30.0, v, np.log(np.expm1(np.minimum(v, 30.0))))


def _softmax(v):
    """``exp(v) / sum(exp(v))`` of a short 1-D vector, summing to 1 within rounding.

    Normalised by the sum itself rather than by ``exp(v - logsumexp(v))``: in a degenerate fit
    the parameters can reach 1e8, and ``v - logsumexp(v)`` then carries an absolute error of
    1e-8, which would leave the masses summing to 1 - 1e-8 (so F + S != 1 at a knot).
    """
    e = np.exp(v - v.max())
    return e / e.sum()


def _weighted_quantile(z_sorted, cum_weights, p):
    """Quantile ``p`` of sorted data with cumulative normalised weights (step-function inverse)."""
    k = np.searchsorted(cum_weights, p * cum_weights[-1], side="left")
    return z_sorted[np.minimum(k, z_sorted.size - 1)]


class _Layout:
    """Unconstrained parameters of a K-bin spline CDF on [lo, hi] with normal tails.

    ``theta = (a, b, c)`` with ``a`` of length K (bin widths through a softmax), ``b`` of length
    K + 2 (lower-tail mass, bin heights, upper-tail mass through a softmax) and ``c`` of length
    K + 1 (knot slopes through a softplus).
    """

    def __init__(self, n_bins, lo, hi, min_bin_width, min_derivative):
        self.K, self.lo, self.hi = n_bins, lo, hi
        self.R = hi - lo
        self.mw, self.md = min_bin_width, min_derivative
        self.free = 1.0 - n_bins * min_bin_width
        # Every mass (tails and bins) keeps at least MIN_MASS, so no bin's slope underflows.
        self.mq = MIN_MASS
        self.free_q = 1.0 - (n_bins + 2) * MIN_MASS

    def split(self, theta):
        K = self.K
        return theta[:K], theta[K:2 * K + 2], theta[2 * K + 2:]

    def unpack(self, theta):
        a, b, c = self.split(theta)
        pw = _softmax(a)
        widths = self.R * (self.mw + self.free * pw)
        pq = _softmax(b)
        log_q = np.log(self.mq + self.free_q * pq)
        derivatives = self.md + _softplus(c)
        return pw, pq, widths, log_q, derivatives

    def knots(self, widths):
        return self.lo + np.concatenate([[0.0], np.cumsum(widths)])

    def objective(self, theta, z, weights):
        """Weighted mean negative log-likelihood (data in z units) and its exact gradient."""
        K = self.K
        pw, pq, w, log_q, d = self.unpack(theta)
        q = np.exp(log_q)
        h = q[1:K + 1]
        X = self.knots(w)
        edges = np.searchsorted(z, X, side="left")
        counts = np.diff(edges)
        k = np.repeat(np.arange(K), counts)
        zi, om = z[edges[0]:edges[K]], weights[edges[0]:edges[K]]
        g_w = np.zeros(K)
        g_X = np.zeros(K + 1)
        g_q = np.zeros(K + 2)
        g_d = np.zeros(K + 1)
        # Inside the knots: log f = 2 log s + log N - 2 log D.
        wk, s = w[k], (h / w)[k]
        d0, d1 = d[k], d[k + 1]
        xi = (zi - X[k]) / wk
        eta = 1.0 - xi
        xe, xx, ee = xi * eta, xi * xi, eta * eta
        N = d1 * xx + 2.0 * s * xe + d0 * ee
        D = s * (xx + ee) + (d0 + d1) * xe
        loglik = np.dot(om, 2.0 * np.log(s) + np.log(N) - 2.0 * np.log(D))
        g_s = 2.0 / s + 2.0 * xe / N - 2.0 * (xx + ee) / D
        g_xi = (2.0 * d1 * xi + 2.0 * s * (eta - xi) - 2.0 * d0 * eta) / N \
            - 2.0 * (eta - xi) * (d0 + d1 - 2.0 * s) / D
        g_q[1:K + 1] = np.bincount(k, om * g_s, K) / w
        g_w += np.bincount(k, om * (-g_s * s - g_xi * xi), K) / w
        g_X[:K] += np.bincount(k, om * (-g_xi), K) / w
        g_d[:K] += np.bincount(k, om * (ee / N - 2.0 * xe / D), K)
        g_d[1:] += np.bincount(k, om * (xx / N - 2.0 * xe / D), K)
        # Tails: F = 2 p Phi(t) below X_0, S = 2 p Phi(-t) above X_K, sigma = sqrt(2/pi) p / d,
        # so log f = log d - t^2 / 2 (continuous with the spline's density at the knot).
        for j, sl, tail in ((0, slice(0, edges[0]), 0), (K, slice(edges[K], None), K + 1)):
            zt, ot = z[sl], weights[sl]
            if zt.size == 0:
                continue
            sigma = _SQRT_2_OVER_PI * q[tail] / d[j]
            t = (zt - X[j]) / sigma
            tt = t * t
            loglik += np.dot(ot, np.log(d[j]) - 0.5 * tt)
            g_d[j] += np.dot(ot, 1.0 - tt) / d[j]
            g_q[tail] += np.dot(ot, tt) / q[tail]
            g_X[j] += np.dot(ot, t) / sigma
        # X_k = lo + sum_{j<k} w_j: each width moves every knot to its right.
        suffix = np.cumsum(g_X[::-1])[::-1]
        g_w += suffix[1:]
        grad = np.concatenate([
            self.R * self.free * pw * (g_w - np.dot(pw, g_w)),
            self.free_q * pq * (g_q - np.dot(pq, g_q)),
            g_d * _sigmoid(self.split(theta)[2]),
        ])
        return -loglik, -grad

    def initial(self, z, cum_weights):
        """Start from equal-mass bins between the end knots (a histogram on quantile bins)."""
        K = self.K
        probs = cum_weights[-1]
        p_lo = cum_weights[np.searchsorted(z, self.lo, side="left") - 1] / probs if z[0] < self.lo else 0.0
        p_hi = 1.0 - cum_weights[np.searchsorted(z, self.hi, side="right") - 1] / probs
        inner = np.linspace(p_lo, 1.0 - p_hi, K + 1)
        X = _weighted_quantile(z, cum_weights, inner)
        X[0], X[-1] = self.lo, self.hi
        X = np.maximum.accumulate(X)
        w = np.diff(X) / self.R
        pw = np.maximum(w - self.mw, 0.1 * self.mw) / self.free
        a = np.log(pw / pw.sum())
        masses = np.concatenate([[p_lo], np.diff(inner), [p_hi]])
        floor = 0.5 / z.size
        masses = np.maximum(masses, floor)
        b = np.log(np.maximum(masses / masses.sum() - self.mq, self.mq) / self.free_q)
        pw = np.exp(a)
        w = self.R * (self.mw + self.free * pw)
        h = self.mq + self.free_q * _softmax(b)[1:K + 1]
        slopes = h / w
        d = np.concatenate([[slopes[0]], 0.5 * (slopes[:-1] + slopes[1:]), [slopes[-1]]])
        c = _inverse_softplus(np.maximum(d - self.md, 1e-3))
        return np.concatenate([a, b, c])


class SplineDensity(DensityMixin, BaseEstimator):
    r"""Density whose CDF is a monotone rational-quadratic spline, fitted by maximum likelihood.

    Parameters
    ----------
    n_bins : int or "auto", default="auto"
        Number of spline bins :math:`K`. ``"auto"`` chooses it on held-out likelihood (see
        the Notes).
    max_bins : int, default=32
        Largest :math:`K` tried by ``"auto"``.
    tail_fraction : float, default=0.05
        The end knots are the data's quantiles ``tail_fraction`` and ``1 - tail_fraction``;
        the points beyond them fit the normal tails.
    validation_fraction : float, default=0.25
        Share of the data held out when ``n_bins="auto"``.
    min_bin_width : float, default=1e-3
        Smallest bin width as a share of the distance between the end knots, so that a bin
        cannot collapse onto tied values (where the likelihood is unbounded).
    max_iter : int, default=1000
        L-BFGS iterations per fit.
    tol : float, default=1e-10
        L-BFGS stopping threshold on the relative change of the mean log-likelihood.
    random_state : None, int or numpy.random.RandomState, default=None
        Seed of the held-out split for ``n_bins="auto"``.

    Attributes
    ----------
    n_bins_ : int
        The number of bins used.
    bin_scores_ : dict
        ``{K: held-out mean log-likelihood}`` for every ``K`` tried (empty for a fixed ``K``),
        in nats per point of ``x`` (the log-density of the data, not of the standardised
        values).
    spline_ : RationalQuadraticSpline
        The CDF between the end knots, in standardised units :math:`u = (x - c)/\sigma`.
    center_, scale_ : float
        The standardisation :math:`c` (weighted median) and :math:`\sigma` (weighted
        standard deviation).
    log_tail_masses_ : ndarray of shape (2,)
        :math:`\log F(x_0)` and :math:`\log S(x_K)`.
    tail_scales_ : ndarray of shape (2,)
        :math:`\sigma_\mathrm{lo}, \sigma_\mathrm{hi}` of the normal tails (standardised units).
    converged_ : bool
        Whether L-BFGS met its stopping rule in the final fit.
    n_iter_ : int
        L-BFGS iterations of the final fit.

    Notes
    -----
    *Model.* Between the end knots :math:`x_0 < x_K` the CDF is a
    :class:`RationalQuadraticSpline` through :math:`(x_k, F_k)` with slopes
    :math:`\delta_k`. Below :math:`x_0` and above :math:`x_K` it continues with half-normal
    tails centred at the end knots,

    .. math::

        F(x) = 2 p_\mathrm{lo}\,\Phi\!\left(\frac{x - x_0}{\sigma_\mathrm{lo}}\right), \qquad
        S(x) = 2 p_\mathrm{hi}\,\Phi\!\left(\frac{x_K - x}{\sigma_\mathrm{hi}}\right), \qquad
        \sigma = \sqrt{2/\pi}\;p / \delta,

    where :math:`p` is the tail mass and :math:`\delta` the end slope: the CDF and the density
    are continuous at both end knots (the density's own slope is not matched). Bin widths
    (softmax, at least ``min_bin_width``), tail masses and heights (one softmax over
    :math:`K + 2` entries) and slopes (softplus) are unconstrained parameters; their
    :math:`3K + 3` values (:math:`3K + 1` free) are fitted by L-BFGS on the weighted mean
    log-likelihood with its exact gradient, started from equal-mass bins. The data are first
    standardised by their weighted median and standard deviation.

    *Exactness.* :math:`\log F` and :math:`\log S` are computed from separate sums of
    positive terms (heights from below, heights from above, and the two halves of the
    bin's rational function), so neither is ``1 - `` the other; in the tails they are
    ``log_ndtr`` of the tail argument, finite while :math:`((x - x_0)/\sigma)^2/2` is below
    the largest double (for unit-scale data, :math:`|x|` up to about 1e154; beyond it the
    normal tail's log-probability is itself below -1.8e308 and returns ``-inf``).
    Quantiles are analytic: the spline's inverse between the knots, ``ndtri_exp`` in the
    tails. Sampling is by the inverse CDF.

    *Number of bins.* With ``n_bins="auto"``, a random ``validation_fraction`` of the data is
    held out; :math:`K = 1, 2, 4, \dots` up to ``max_bins`` (those for which the training
    part has at least 10 points per bin) are fitted on the rest and scored by held-out mean
    log-likelihood; the best :math:`K` (the smallest on a tie) is refitted on all data. With
    fewer than 20 training points there is nothing to compare and :math:`K = 1`
    (``bin_scores_`` is then empty). Every bin and tail keeps a mass of at least
    :data:`MIN_MASS`.

    References
    ----------
    .. [1] C. Durkan, A. Bekasov, I. Murray and G. Papamakarios, "Neural spline flows",
       *Advances in Neural Information Processing Systems* 32, 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib import SplineDensity
    >>> x = np.random.default_rng(0).normal(size=500)
    >>> d = SplineDensity(n_bins=4).fit(x)
    >>> d.n_bins_
    4
    >>> bool(abs(d.cdf(0.0) - 0.5) < 0.05)
    True
    >>> float(d.ppf(d.cdf(0.3)).round(12))
    0.3
    """

    def __init__(self, *, n_bins="auto", max_bins=32, tail_fraction=0.05, validation_fraction=0.25,
                 min_bin_width=1e-3, max_iter=1000, tol=1e-10, random_state=None):
        self.n_bins = n_bins
        self.max_bins = max_bins
        self.tail_fraction = tail_fraction
        self.validation_fraction = validation_fraction
        self.min_bin_width = min_bin_width
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting
    def fit(self, x, y=None, sample_weight=None):
        """Fit the spline CDF to a sample by maximum likelihood.

        Parameters
        ----------
        x : array_like of shape (n,) or (n, 1)
            Finite data.
        y : None
            Ignored.
        sample_weight : array_like of shape (n,), optional
            Non-negative weights of the points (the log-likelihood is weighted by them).

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import SplineDensity
        >>> x = np.random.default_rng(0).exponential(size=2000)
        >>> density = SplineDensity(n_bins=8, random_state=0).fit(x)
        >>> density.spline_.n_bins, bool(density.score(x) > -1.1)  # the true mean log-likelihood is -1
        (8, True)
        """
        x = check_spread(as_1d_float(x, "x", min_size=2))
        weights = check_weights(sample_weight, x.size, "sample_weight")
        weights = np.full(x.size, 1.0 / x.size) if weights is None else weights
        auto = isinstance(self.n_bins, str)
        if auto:
            check_choice(self.n_bins, ("auto",), "n_bins")
        else:
            check_positive_int(self.n_bins, "n_bins")
        max_bins = check_positive_int(self.max_bins, "max_bins")
        tail = check_real(self.tail_fraction, "tail_fraction", low=0, high=0.5, low_open=True,
                          high_open=True)
        held = check_real(self.validation_fraction, "validation_fraction", low=0, high=1,
                          low_open=True, high_open=True)
        mw = check_real(self.min_bin_width, "min_bin_width", low=0, high=1, high_open=True)
        max_iter = check_positive_int(self.max_iter, "max_iter")
        tol = check_real(self.tol, "tol", low=0, low_open=True)
        keep = weights > 0  # zero-weight points do not enter the likelihood
        x, weights = x[keep], weights[keep]
        n_used = x.size
        center = float(_weighted_median(x, weights))
        scale = float(np.sqrt(np.dot(weights, (x - np.dot(weights, x)) ** 2)))
        if not (scale > 0 and np.ptp(x) > 0):
            raise ValueError("x has zero spread (all weighted points equal); a density needs spread.")
        z = (x - center) / scale
        self.bin_scores_ = {}
        if auto:
            rng = check_random_state(self.random_state)
            is_held = rng.uniform(size=x.size) < held
            n_train = int(np.count_nonzero(~is_held))
            candidates = [K for K in 2 ** np.arange(int(np.log2(max_bins)) + 1) if n_train >= 10 * K]
            if len(candidates) < 2:  # nothing to compare: one bin
                candidates = []
            for K in candidates:
                K = int(K)
                try:
                    model = self._fit_z(z[~is_held], weights[~is_held], K, tail, mw, max_iter, tol)
                except ValueError:
                    break
                wv = weights[is_held]
                # per point of x: log f(x) = log f_u(u) - log(sigma)
                score = np.dot(wv, model.logpdf_z(z[is_held])) / wv.sum() - np.log(scale)
                self.bin_scores_[K] = float(score)
            if self.bin_scores_:
                best = max(self.bin_scores_.values())
                n_bins = min(k for k, v in self.bin_scores_.items() if v == best)
            else:
                n_bins = 1
        else:
            n_bins = int(self.n_bins)
        if n_used < 3 * n_bins + 3:
            raise ValueError(
                f"n_bins={n_bins} has {3 * n_bins + 1} free parameters but only {n_used} points "
                "carry weight; use fewer bins (at least 3 points per bin) or more data."
            )
        model = self._fit_z(z, weights, n_bins, tail, mw, max_iter, tol)
        self.n_bins_ = n_bins
        self.center_, self.scale_ = center, scale
        self.spline_ = model.spline
        self.log_tail_masses_ = model.log_tails
        self.tail_scales_ = model.sigmas
        self._upper_values = model.upper_values
        self.converged_, self.n_iter_ = model.converged, model.n_iter
        return self

    @staticmethod
    def _fit_z(z, weights, n_bins, tail, mw, max_iter, tol):
        order = np.argsort(z, kind="stable")
        z, weights = z[order], weights[order] / weights.sum()
        cum = np.cumsum(weights)
        lo = float(_weighted_quantile(z, cum, tail))
        hi = float(_weighted_quantile(z, cum, 1.0 - tail))
        if not hi > lo:
            raise ValueError(
                f"the data's {tail:g} and {1 - tail:g} quantiles coincide (heavily tied data); "
                "raise tail_fraction or remove the ties."
            )
        if mw * n_bins >= 1.0:
            raise ValueError(f"min_bin_width * n_bins must be below 1; got {mw * n_bins:g}.")
        layout = _Layout(n_bins, lo, hi, mw, 1e-9)
        res = minimize(layout.objective, layout.initial(z, cum), args=(z, weights), jac=True,
                       method="L-BFGS-B", options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-9})
        return _FittedZ(layout, res)

    # ------------------------------------------------------------------ evaluation
    def _z(self, x, name="x"):
        self._check_fitted()
        x = as_float_array(x, name)
        with np.errstate(over="ignore"):
            return x, (x - self.center_) / self.scale_

    def _parts(self, z):
        """Return log F, log S and log f (in z units) for a 1-D array of standardised points."""
        return _evaluate(self.spline_, self._upper_values, self.log_tail_masses_, self.tail_scales_,
                         z)

    def _apply(self, x, which):
        x, z = self._z(x)
        out = self._parts(z.reshape(-1))[which]
        if which == 2:
            out = out - np.log(self.scale_)
        return out.reshape(x.shape)[()]

    def logcdf(self, x):
        r""":math:`\log F(x)` (see the Notes)."""
        return self._apply(x, 0)

    def logsf(self, x):
        r""":math:`\log S(x)`, from the upper sums, never from ``1 - F``."""
        return self._apply(x, 1)

    def logpdf(self, x):
        r""":math:`\log f(x)`."""
        return self._apply(x, 2)

    def _log_pdf_over_tail(self, x, upper):
        r""":math:`\log f - \log F` (``upper``: :math:`-\log S`) with the normal tail's exponent
        cancelled: :math:`-\log\sigma - \log(\Phi(t)/\phi(t))` in the tails."""
        from .normal_mixture import log_mills_ratio

        x, z = self._z(x)
        z = z.reshape(-1)
        log_cdf, log_sf, log_pdf = self._parts(z)
        out = log_pdf - (log_sf if upper else log_cdf)
        j = self.spline_.n_bins if upper else 0
        end = self.spline_.x[j]
        sigma = self.tail_scales_[1 if upper else 0]
        far = z >= end if upper else z < end
        t = (z[far] - end) / sigma
        t = -t if upper else t
        with np.errstate(over="ignore"):
            out[far] = -np.log(sigma) - log_mills_ratio(t)
        return (out - np.log(self.scale_)).reshape(x.shape)

    def _ppf_log(self, log_q, upper):
        z = _quantile_z(self.spline_, self._upper_values, self.log_tail_masses_, self.tail_scales_,
                        log_q, upper)
        return self.center_ + self.scale_ * z


def _weighted_median(x, weights):
    order = np.argsort(x, kind="stable")
    return _weighted_quantile(x[order], np.cumsum(weights[order]), 0.5)


class _FittedZ:
    """The fitted spline, tails and upper sums in standardised units."""

    def __init__(self, layout, res):
        K = layout.K
        _, _, w, log_q, d = layout.unpack(res.x)
        q = np.exp(log_q)
        X = layout.knots(w)
        y = q[0] + np.concatenate([[0.0], np.cumsum(q[1:K + 1])])
        self.spline = RationalQuadraticSpline(X, y, d)
        self.upper_values = q[K + 1] + np.concatenate([np.cumsum(q[K:0:-1])[::-1], [0.0]])
        self.log_tails = np.array([log_q[0], log_q[K + 1]])
        self.sigmas = _SQRT_2_OVER_PI * np.exp(self.log_tails) / d[[0, K]]
        self.converged, self.n_iter = bool(res.success), int(res.nit)

    def logpdf_z(self, z):
        return _evaluate(self.spline, self.upper_values, self.log_tails, self.sigmas, z)[2]


def _evaluate(spline, upper_values, log_tails, sigmas, z):
    K = spline.n_bins
    k = spline._bins(z)
    log_cdf, log_sf, log_pdf = np.empty(z.size), np.empty(z.size), np.empty(z.size)
    inside = (k >= 0) & (k < K)
    ki = k[inside]
    lower, upper, log_der = spline._inside_parts(z[inside], ki)
    log_cdf[inside] = np.log(spline.y[ki] + lower)
    log_sf[inside] = np.log(upper_values[ki + 1] + upper)
    log_pdf[inside] = log_der
    with np.errstate(over="ignore"):
        for sel, j, side in ((k < 0, 0, 0), (k >= K, K, 1)):
            if not np.any(sel):
                continue
            t = (z[sel] - spline.x[j]) / sigmas[side]
            near = log_tails[side] + _LOG2 + log_ndtr(t if side == 0 else -t)
            # The other side's probability: 1 - exp(near) while that is above 1/2; below, the
            # knot's value plus the tail's mass beyond it, q erf(|t| / sqrt 2), a sum of
            # positive terms (1 - exp(near) would cancel: near itself sums log q, log 2 and
            # log Phi, so its absolute rounding error is relative in 1 - exp(near)).
            far = np.log1p(-np.exp(near))
            close = near > -_LOG2
            if np.any(close):
                at_knot = upper_values[0] if side == 0 else spline.y[K]
                mass = np.exp(log_tails[side]) * erf(np.abs(t[close]) * _SQRT_HALF)
                far[close] = np.log(at_knot + mass)
            log_cdf[sel], log_sf[sel] = (near, far) if side == 0 else (far, near)
            log_pdf[sel] = np.log(spline.derivatives[j]) - 0.5 * t * t
    return log_cdf, log_sf, log_pdf


def _quantile_z(spline, upper_values, log_tails, sigmas, log_q, upper):
    """Standardised point where log F (log S if ``upper``) equals ``log_q``, analytically."""
    K = spline.n_bins
    out = np.empty(log_q.size)
    # The other tail probability, exact while the given one is at least 1/2 of its side.
    with np.errstate(divide="ignore"):
        log_other = np.log(-np.expm1(log_q))
    log_cdf, log_sf = (log_other, log_q) if upper else (log_q, log_other)
    in_lo = log_cdf < log_tails[0]
    in_hi = ~in_lo & (log_sf < log_tails[1])
    mid = ~(in_lo | in_hi)
    out[in_lo] = spline.x[0] + sigmas[0] * ndtri_exp(log_cdf[in_lo] - log_tails[0] - _LOG2)
    out[in_hi] = spline.x[K] - sigmas[1] * ndtri_exp(log_sf[in_hi] - log_tails[1] - _LOG2)
    if np.any(mid):
        if upper:
            S = np.exp(log_q[mid])
            # bin k holds S in (upper_values[k+1], upper_values[k]], as F in [y[k], y[k+1])
            k = np.searchsorted(-upper_values, -S, side="right") - 1
            k = np.clip(k, 0, K - 1)
            hi = S - upper_values[k + 1]
            lo = upper_values[k] - S
        else:
            F = np.exp(log_q[mid])
            k = np.clip(spline._inverse_bins(F), 0, K - 1)
            lo = F - spline.y[k]
            hi = spline.y[k + 1] - F
        out[mid] = spline._inverse_inside(np.maximum(lo, 0.0), np.maximum(hi, 0.0), k)
    return out


for _name in ("logpdf", "logcdf", "logsf"):  # the contract's documentation and examples
    getattr(SplineDensity, _name).__doc__ = getattr(DensityMixin, _name).__doc__
del _name


class PchipDensity(DensityMixin, BaseEstimator):
    r"""Density whose CDF is a monotone cubic (PCHIP) through the mid-ECDF, with exponential tails.

    The interpolating counterpart of :class:`SplineDensity`: nothing is fitted by likelihood;
    the CDF passes exactly through a smoothed empirical distribution function.

    Parameters
    ----------
    max_knots : int or None, default=None
        Largest number of knots (at least 2). ``None`` keeps every distinct data value.

    Attributes
    ----------
    knots_ : ndarray of shape (K + 1,)
        The knots :math:`x_0 < \dots < x_K` (distinct data values).
    cdf_values_, sf_values_ : ndarray of shape (K + 1,)
        :math:`F_k` and :math:`S_k = 1 - F_k` at the knots, each accumulated from its own
        end (``sf_values_`` is not ``1 - cdf_values_``).
    derivatives_ : ndarray of shape (K + 1,)
        The slopes :math:`F'(x_k) > 0` of the interpolant at the knots.
    tail_rates_ : ndarray of shape (2,)
        The rates :math:`\lambda_\mathrm{lo}, \lambda_\mathrm{hi}` of the exponential tails.

    Notes
    -----
    *Knots.* The data are sorted and ties merged: the distinct values :math:`u_1 < \dots < u_m`
    carry the summed (normalised) weights :math:`w_i`. The CDF value at :math:`u_i` is the
    mid-ECDF

    .. math::

        F_i = \sum_{j < i} w_j + \tfrac12 w_i, \qquad S_i = \sum_{j > i} w_j + \tfrac12 w_i,

    the average of the ECDF's left and right limits, strictly increasing and inside (0, 1).
    With ``max_knots`` below :math:`m`, the knots are thinned by quantile selection: for
    ``max_knots`` equally spaced levels from :math:`F_1` to :math:`F_m`, the first distinct
    value whose :math:`F_i` reaches the level is kept (duplicates dropped, so possibly
    fewer knots; both end values always stay). The kept knots keep their mid-ECDF values.

    *Between the knots* :math:`F` is the cubic Hermite interpolant (evaluated in each
    bin's own coordinate, so very wide or narrow bins do not under- or overflow) with the slopes of
    ``scipy.interpolate.PchipInterpolator`` (Fritsch and Butland's weighted harmonic mean of
    the neighbouring secants inside; a one-sided three-point formula at the ends). PCHIP sets
    an end slope to zero when the three-point formula turns negative (an end secant much
    flatter than its neighbour), and makes it arbitrarily small just before that, which would
    give a nearly flat exponential tail of huge reach. An end slope is therefore raised to the
    end secant where it is below it (so :math:`F` is PCHIP's interpolant except for these
    two end slopes), and every slope is positive. Each slope is then below three times the
    secants next to it (below twice at the ends), which keeps every cubic strictly
    increasing (Fritsch and Carlson's square), so the density is positive everywhere.
    :math:`S` is the same interpolant through :math:`S_k` with slopes :math:`-F'(x_k)`, so
    :math:`F + S = 1` up to rounding and neither is computed as one minus the other.

    *Tails.* Beyond the end knots, exponential tails continue the value and slope:

    .. math::

        F(x) = F_0\,e^{\lambda_\mathrm{lo}(x - x_0)}\ (x < x_0), \qquad
        S(x) = S_K\,e^{-\lambda_\mathrm{hi}(x - x_K)}\ (x > x_K), \qquad
        \lambda_\mathrm{lo} = F'(x_0)/F_0,\ \lambda_\mathrm{hi} = F'(x_K)/S_K,

    so :math:`\log F` and :math:`\log S` there are linear in :math:`x` (exact far beyond 1e-300
    and ``-inf`` only when the product overflows) and the log-density over the tail
    probability is exactly :math:`\log\lambda`.

    *Continuity.* :math:`F` is :math:`C^1` on the whole line (the density is continuous,
    also at the end knots); the density's derivative jumps at every knot, since PCHIP is
    only :math:`C^1`.

    *Limits.* This is an interpolant, not a smoother: beyond the half-weight midpoint rule it
    does not smooth, so at small :math:`n` it overfits. Between two neighbouring knots the
    density is near the secant, about their mean weight over their distance: high and spiky
    where two values happen to be close, low across gaps. The density can be tiny (never
    zero) where a flat stretch of the ECDF meets a steep one. PCHIP's zero slopes, set where
    neighbouring secants differ in sign or one is zero, cannot occur inside, because the
    mid-ECDF is strictly increasing. Tied values are merged into one knot whose weight is
    their sum: a tie is not kept as a point mass, it only steepens the CDF around it. The
    tails are exponential whatever the data's tails are, and each holds half the weight of
    its end value. Data whose spacings or secant slopes over- or underflow are refused.
    Quantiles between the knots are found by bracketed root-finding
    (``scipy.optimize.elementwise.find_root``) on :math:`\log F` (or :math:`\log S`) within
    the knot interval; an unconverged root raises ``FloatingPointError``. In the tails they
    are analytic. ``sample`` draws by the inverse CDF.

    References
    ----------
    .. [1] F. N. Fritsch and J. Butland, "A method for constructing local monotone piecewise
       cubic interpolants", *SIAM J. Sci. Stat. Comput.* 5(2), 300-304, 1984.

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib import PchipDensity
    >>> d = PchipDensity().fit([0.0, 1.0, 1.0, 3.0])
    >>> d.knots_.tolist(), d.cdf_values_.tolist()  # the tie at 1 is one knot: the mid-ECDF
    ([0.0, 1.0, 3.0], [0.125, 0.5, 0.875])
    >>> bool(np.array_equal(d.logcdf(d.knots_), np.log(d.cdf_values_)))  # interpolates exactly
    True
    """

    def __init__(self, *, max_knots=None):
        self.max_knots = max_knots

    def fit(self, x, y=None, sample_weight=None):
        """Build the PCHIP CDF through the tie-merged mid-ECDF.

        Parameters
        ----------
        x : array_like of shape (n,) or (n, 1)
            Finite data with at least two distinct values.
        y : None
            Ignored.
        sample_weight : array_like of shape (n,), optional
            Non-negative weights (integer weights act as repeated points).

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> from kdelib import PchipDensity
        >>> x = np.random.default_rng(0).normal(size=1000)
        >>> d = PchipDensity(max_knots=20).fit(x)
        >>> d.knots_.size <= 20, bool(abs(d.cdf(0.0) - 0.5) < 0.05)
        (True, True)
        """
        from scipy.interpolate import PchipInterpolator

        x = as_1d_float(x, "x", min_size=2)
        weights = check_weights(sample_weight, x.size, "sample_weight")
        max_knots = check_positive_int(self.max_knots, "max_knots", minimum=2, allow_none=True)
        if weights is None:
            weights = np.full(x.size, 1.0 / x.size)
        keep = weights > 0
        x, weights = x[keep], weights[keep]
        order = np.argsort(x, kind="stable")
        x, weights = x[order], weights[order]
        u, start = np.unique(x, return_index=True)
        if u.size < 2:
            raise ValueError("x has fewer than two distinct values carrying weight; "
                             "an interpolated CDF needs at least two.")
        w = np.add.reduceat(weights, start)
        # compensated partial sums from each end, over one correctly rounded total: F_k + S_k
        # is 1 to a few ulp however many points there are
        total = math.fsum(w)
        F = (_compensated_cumsum(w) - 0.5 * w) / total
        S = (_compensated_cumsum(w[::-1])[::-1] - 0.5 * w) / total
        if max_knots is not None and u.size > max_knots:
            levels = np.linspace(F[0], F[-1], max_knots)
            idx = np.unique(np.concatenate([[0, u.size - 1],
                                            np.searchsorted(F, levels, side="left")]))
            u, F, S = u[idx], F[idx], S[idx]
        with np.errstate(over="ignore", divide="ignore", under="ignore"):
            widths = np.diff(u)
            secants = np.diff(F) / widths
            span = u[-1] - u[0]
        if not (np.isfinite(span) and np.all(np.isfinite(widths)) and np.all(np.isfinite(secants)) and np.all(secants > 0)):
            raise ValueError("the spacings of x or the CDF's secant slopes over- or underflow "
                             "float64; rescale the data (e.g. by a power of ten).")
        with np.errstate(over="ignore", divide="ignore", under="ignore", invalid="ignore"):
            d = PchipInterpolator(u, F).derivative()(u)
        d = np.array(d, dtype=float)
        for end, secant in ((0, secants[0]), (-1, secants[-1])):
            d[end] = max(d[end], secant)  # zero or tiny three-point end slopes (see Notes)
        with np.errstate(over="ignore", divide="ignore"):
            rates = np.array([d[0] / F[0], d[-1] / S[-1]])
        if not (np.all(np.isfinite(d)) and np.all(d > 0) and np.all(np.isfinite(rates))):
            raise ValueError("the interpolant's slopes over- or underflow float64; rescale the "
                             "data (e.g. by a power of ten).")
        self.knots_, self.cdf_values_, self.sf_values_ = u, F, S
        self.derivatives_, self.tail_rates_ = d, rates
        self._widths, self._secants = widths, secants
        # each bin's mass from its own curve: differences of F lose digits where F is near 1,
        # differences of S where S is
        self._masses = np.diff(F), -np.diff(S)
        self._log_ends = np.log([F[0], S[-1]])
        self._log_cdf_knots, self._log_sf_knots = np.log(F), np.log(S)
        return self

    # ------------------------------------------------------------------ evaluation
    def _parts(self, t):
        """log F, log S and log f for a 1-D array of points."""
        u, F, S = self.knots_, self.cdf_values_, self.sf_values_
        K = u.size - 1
        log_cdf, log_sf, log_pdf = np.empty(t.size), np.empty(t.size), np.empty(t.size)
        k = np.searchsorted(u, t, side="right") - 1
        lo, hi = k < 0, k >= K
        inside = ~(lo | hi)
        ki, ti = k[inside], t[inside]
        cdf, sf, pdf = self._hermite(ti, ki)
        with np.errstate(divide="ignore"):
            log_cdf[inside], log_sf[inside] = np.log(cdf), np.log(sf)
            log_pdf[inside] = np.log(pdf)
        at_end = hi & (t == u[K])
        log_cdf[at_end], log_sf[at_end] = np.log(F[K]), self._log_ends[1]
        log_pdf[at_end] = np.log(self.derivatives_[K])
        with np.errstate(over="ignore", invalid="ignore"):
            # the far side as its knot value plus the tail's part beyond the knot, so it is
            # continuous (bit for bit) at the knot and monotone
            step = self.tail_rates_[0] * (t[lo] - u[0])
            near = self._log_ends[0] + step
            log_cdf[lo], log_sf[lo] = near, np.log(S[0] + F[0] * -np.expm1(step))
            log_pdf[lo] = np.log(self.tail_rates_[0]) + near
            far = hi & ~at_end
            step = -self.tail_rates_[1] * (t[far] - u[K])
            near = self._log_ends[1] + step
            log_cdf[far], log_sf[far] = np.log(F[K] + S[K] * -np.expm1(step)), near
            log_pdf[far] = np.log(self.tail_rates_[1]) + near
        return log_cdf, log_sf, log_pdf

    def _hermite(self, t, k):
        """F, S and f inside bin k, in the bin's own coordinate (no power basis: its
        coefficients under- and overflow for very wide or narrow bins).

        F and S are the nearer knot's values plus or minus the mass between that knot and t,
        in the cubic's Bernstein form. Its terms are all non-negative (every slope is at most
        three secants), so the mass has no cancellation and the value is exact at the knot.
        Subtracting it loses at most a factor of eight: each half of the bin holds at least an
        eighth of its mass.
        """
        u, F, S, d = self.knots_, self.cdf_values_, self.sf_values_, self.derivatives_
        h = self._widths[k]
        s, r = (t - u[k]) / h, (u[k + 1] - t) / h  # r = 1 - s, without the subtraction
        d0, d1 = d[k], d[k + 1]

        def masses(mass):  # from the left knot to t, and from t to the right knot
            left = s * (h * d0 * r * r + s * ((3.0 * mass - h * d1) * r + mass * s))
            right = r * (h * d1 * s * s + r * ((3.0 * mass - h * d0) * s + mass * r))
            return left, right

        near_left = s <= 0.5
        left, right = masses(self._masses[0][k])
        cdf = np.where(near_left, F[k] + left, F[k + 1] - right)
        left, right = masses(self._masses[1][k])
        sf = np.where(near_left, S[k] - left, S[k + 1] + right)
        # rounding can carry a value one unit past the bin's other knot value
        cdf, sf = np.clip(cdf, F[k], F[k + 1]), np.clip(sf, S[k + 1], S[k])
        pdf = 6.0 * s * r * self._secants[k] + d0 * r * (r - 2.0 * s) + d1 * s * (s - 2.0 * r)
        return cdf, sf, pdf

    def _apply(self, x, which):
        self._check_fitted()
        x = as_float_array(x, "x")
        return self._parts(x.reshape(-1))[which].reshape(x.shape)[()]

    def logcdf(self, x):
        return self._apply(x, 0)

    def logsf(self, x):
        return self._apply(x, 1)

    def logpdf(self, x):
        return self._apply(x, 2)

    def _log_pdf_over_tail(self, x, upper):
        r""":math:`\log f - \log F` (``upper``: :math:`- \log S`): :math:`\log\lambda` exactly
        in the exponential tail."""
        self._check_fitted()
        x = as_float_array(x, "x")
        t = x.reshape(-1)
        log_cdf, log_sf, log_pdf = self._parts(t)
        out = log_pdf - (log_sf if upper else log_cdf)
        far = t > self.knots_[-1] if upper else t < self.knots_[0]
        out[far] = np.log(self.tail_rates_[1 if upper else 0])
        return out.reshape(x.shape)

    def _ppf_log(self, log_q, upper):
        from scipy.optimize.elementwise import find_root

        u = self.knots_
        K = u.size - 1
        out = np.empty(log_q.size)
        # the value of log F (upper=False) or log S (upper=True) to reach, increasing in x
        # when upper is False; for upper the sign is flipped so one search serves both
        knot_values = -self._log_sf_knots if upper else self._log_cdf_knots
        target = -log_q if upper else log_q
        k = np.searchsorted(knot_values, target, side="right") - 1
        lo, hi = k < 0, k >= K
        # tails, analytic: the near tail's log-probability is log_q or log(1 - e^log_q)
        with np.errstate(divide="ignore"):
            other = np.log(-np.expm1(log_q))
        log_cdf, log_sf = (other, log_q) if upper else (log_q, other)
        with np.errstate(over="ignore", invalid="ignore"):
            out[lo] = u[0] + (log_cdf[lo] - self._log_ends[0]) / self.tail_rates_[0]
            out[hi] = u[K] - (log_sf[hi] - self._log_ends[1]) / self.tail_rates_[1]
        # log F = 0 (or log S = -inf from above) has no finite root: +inf; the reverse -inf
        out[lo & (log_cdf == -np.inf)] = -np.inf
        out[hi & (log_sf == -np.inf)] = np.inf
        exact = hi & (target == knot_values[K])
        out[exact] = u[K]
        mid = ~(lo | hi)
        if np.any(mid):
            km, tm = k[mid], target[mid]
            at_knot = tm == knot_values[km]
            sol = u[km].copy()
            solve = ~at_knot
            if np.any(solve):
                ks = km[solve]
                sign = -1.0 if upper else 1.0

                def f(t, goal):
                    parts = self._parts(t.reshape(-1))
                    return (sign * (parts[1] if upper else parts[0])).reshape(t.shape) - goal

                eps = np.finfo(float).eps
                res = find_root(f, (u[ks], u[ks + 1]), args=(tm[solve],),
                                tolerances=dict(xatol=4 * np.finfo(float).tiny, xrtol=4 * eps,
                                                fatol=0.0, frtol=0.0))
                if not np.all(res.success):
                    raise FloatingPointError(
                        f"the quantile root-finder did not converge for {int(np.sum(~res.success))} "
                        "value(s); no unconverged quantile is returned.")
                sol[solve] = res.x
            out[mid] = sol
        return out


def _compensated_cumsum(values):
    """Partial sums ``values[0] + ... + values[k]``, each to about one rounding (Neumaier)."""
    out = np.empty(values.size)
    total = compensation = 0.0
    for i, v in enumerate(values.tolist()):
        t = total + v
        if abs(total) >= abs(v):
            compensation += (total - t) + v
        else:
            compensation += (v - t) + total
        total = t
        out[i] = total + compensation
    return out


for _name in ("logpdf", "logcdf", "logsf"):  # the contract's documentation and examples
    getattr(PchipDensity, _name).__doc__ = getattr(DensityMixin, _name).__doc__
del _name
