"""Tests for kdelib.spline: the rational-quadratic spline and the fitted spline density.

References are independent: 50-digit mpmath evaluations of the spline in the textbook form
of Durkan et al. (2019), mpmath root-finding for the inverse, scipy.differentiate for the
derivative, and hypothesis properties over random knots with extreme slopes.
"""

import mpmath as mp
import numpy as np
import pytest
import scipy
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.differentiate import derivative

from hypothesis_profiles import examples
from rounding import assert_monotone_up_to_rounding
from kdelib.spline import RationalQuadraticSpline, SplineDensity

EPS = np.finfo(float).eps


def reference(spline, t, dps=50):
    """s(t) and log s'(t) in mpmath, in the usual form s_k + (d_k + d_k+1 - 2 s_k) xi (1 - xi)."""
    x, y, d = spline.x, spline.y, spline.derivatives
    with mp.workdps(dps):
        tm = mp.mpf(float(t))
        K = x.size - 1
        if tm < x[0] or tm >= x[K]:
            j = 0 if tm < x[0] else K
            return mp.mpf(y[j]) + mp.mpf(d[j]) * (tm - mp.mpf(x[j])), mp.log(mp.mpf(d[j]))
        k = int(np.searchsorted(x, float(t), side="right") - 1)
        x0, x1, y0, y1, d0, d1 = (mp.mpf(float(v)) for v in (x[k], x[k + 1], y[k], y[k + 1], d[k], d[k + 1]))
        w, h = x1 - x0, y1 - y0
        s = h / w
        xi = (tm - x0) / w
        om = xi * (1 - xi)
        den = s + (d0 + d1 - 2 * s) * om
        value = y0 + h * (s * xi**2 + d0 * om) / den
        der = s**2 * (d1 * xi**2 + 2 * s * om + d0 * (1 - xi) ** 2) / den**2
        return value, mp.log(der)


def ulp(v):
    return np.spacing(np.abs(np.asarray(v, dtype=float)))


# --------------------------------------------------------------------------- fixed examples
EXAMPLE = RationalQuadraticSpline([-3.0, -1.0, 0.5, 2.0, 7.0], [0.01, 0.2, 0.55, 0.8, 0.99],
                                  [0.02, 0.3, 0.05, 2.0, 0.004])


def test_exact_at_knots_bit_for_bit():
    s = EXAMPLE
    np.testing.assert_array_equal(s(s.x), s.y)
    np.testing.assert_array_equal(s.inverse(s.y), s.x)
    np.testing.assert_allclose(s.derivative(s.x), s.derivatives, rtol=4 * EPS)


def test_forward_and_log_derivative_match_mpmath():
    s = EXAMPLE
    t = np.concatenate([np.linspace(-5.0, 9.0, 141), s.x + 1e-9, s.x - 1e-9])
    value, log_der = s.value_and_log_derivative(t)
    np.testing.assert_array_equal(value, s(t))
    np.testing.assert_array_equal(log_der, s.log_derivative(t))
    for ti, vi, li in zip(t, value, log_der):
        v_ref, l_ref = reference(s, ti)
        assert abs(vi - float(v_ref)) <= 1e-14 * abs(float(v_ref)), ti
        assert abs(li - float(l_ref)) <= 1e-14 * max(1.0, abs(float(l_ref))), ti


def test_derivative_is_the_numerical_derivative_and_linear_outside():
    s = EXAMPLE
    t = np.linspace(-2.9, 6.9, 40)
    res = derivative(s, t, initial_step=1e-3)
    np.testing.assert_allclose(res.df, s.derivative(t), rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(s([-10.0, 10.0]), [0.01 - 7.0 * 0.02, 0.99 + 3.0 * 0.004], rtol=1e-15)
    np.testing.assert_array_equal(s.derivative([-1e6, 1e6]), [0.02, 0.004])


def test_shapes_and_scalars():
    s = EXAMPLE
    assert np.shape(s(0.3)) == () and np.shape(s.inverse(0.3)) == ()
    assert s(np.zeros((2, 3))).shape == (2, 3)
    assert s.inverse(np.zeros((4, 1))).shape == (4, 1)
    assert s.log_derivative(np.zeros((3,))).shape == (3,)


# --------------------------------------------------------------------------- the inverse
def durkan_one_formula_inverse(s, u):
    """The single-form root 2c / (-b - sqrt(b^2 - 4ac)) used by most flow libraries."""
    k = np.searchsorted(s.y, u, side="right") - 1
    w, h = np.diff(s.x)[k], np.diff(s.y)[k]
    sl, d0, d1 = h / w, s.derivatives[k], s.derivatives[k + 1]
    lo = u - s.y[k]
    a = h * (sl - d0) + lo * (d0 + d1 - 2 * sl)
    b = h * d0 - lo * (d0 + d1 - 2 * sl)
    c = -sl * lo
    return s.x[k] + w * (2 * c / (-b - np.sqrt(b * b - 4 * a * c)))


def mp_inverse(s, u, dps=50):
    x, y, d = s.x, s.y, s.derivatives
    k = int(np.searchsorted(y, u, side="right") - 1)
    with mp.workdps(dps):
        x0, x1, y0, y1, d0, d1, um = (mp.mpf(float(v)) for v in (x[k], x[k + 1], y[k], y[k + 1], d[k], d[k + 1], u))
        w, h = x1 - x0, y1 - y0
        sl = h / w
        lo = um - y0
        a = h * (sl - d0) + lo * (d0 + d1 - 2 * sl)
        b = h * d0 - lo * (d0 + d1 - 2 * sl)
        c = -sl * lo
        # the root in [0, 1], in the form without cancellation for b < 0
        xi = (-b + mp.sqrt(b * b - 4 * a * c)) / (2 * a)
        return x0 + w * xi


def test_one_formula_inverse_loses_digits_where_kdelib_does_not():
    # Steep right slope, u near the right knot: b < 0 and -b - sqrt(b^2 - 4ac) cancels.
    s = RationalQuadraticSpline([0.0, 1.0], [0.0, 1.0], [1e-6, 1e6])
    t = np.array([0.9, 0.99, 0.999, 0.9999])
    u = s(t)
    exact = np.array([float(mp_inverse(s, ui)) for ui in u])
    ours = np.abs(s.inverse(u) - exact) / exact
    one_formula = np.abs(durkan_one_formula_inverse(s, u) - exact) / exact
    assert np.all(ours <= 2 * EPS)
    assert np.all(one_formula > 1e-13) and one_formula.max() > 1e-11


def test_rounding_negative_discriminant_is_clamped_not_nan():
    # Slopes equal to the mean slope make a = 0 and b^2 - 4ac = 0 up to rounding.
    s = RationalQuadraticSpline([0.0, 1.0, 2.0], [0.0, 0.1, 0.2], [0.1, 0.1, 0.1])
    u = np.linspace(0.0, 0.2, 2001)
    x = s.inverse(u)
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(x, 10.0 * u, rtol=0, atol=4e-16 * 2)


@st.composite
def splines(draw):
    K = draw(st.integers(1, 8))
    logs = st.floats(0.0, 4.0)  # width and height ratios up to 1e4
    log_w = np.array(draw(st.lists(logs, min_size=K, max_size=K)))
    log_h = np.array(draw(st.lists(logs, min_size=K, max_size=K)))
    log_d = np.array(draw(st.lists(st.floats(-6.0, 6.0), min_size=K + 1, max_size=K + 1)))
    x0 = draw(st.floats(-100.0, 100.0))
    y0 = draw(st.floats(0.0, 1.0))
    x = x0 + np.concatenate([[0.0], np.cumsum(10.0**log_w)])
    y = y0 + np.concatenate([[0.0], np.cumsum(10.0**log_h)])
    # derivatives relative to the mean slope of the neighbouring bins, from 1e-6 to 1e6
    slopes = np.diff(y) / np.diff(x)
    scale = np.concatenate([[slopes[0]], np.sqrt(slopes[:-1] * slopes[1:]), [slopes[-1]]])
    return RationalQuadraticSpline(x, y, scale * 10.0**log_d)


def probe_points(s, fractions):
    """Knots, their neighbouring doubles, points in every bin and beyond the ends."""
    x = s.x
    inner = (x[:-1, None] + np.diff(x)[:, None] * np.asarray(fractions)[None, :]).ravel()
    return np.concatenate([x, np.nextafter(x, -np.inf), np.nextafter(x, np.inf), inner,
                           [x[0] - 1.0, x[-1] + 1.0]])


@settings(max_examples=examples(50), deadline=None)
@given(splines(), st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5))
def test_round_trip_within_the_conditioning_bound(s, fractions):
    t = probe_points(s, [1e-12, 1e-6, 0.5, 1 - 1e-6, 1 - 1e-12, *fractions])
    u = s(t)
    back = s.inverse(u)
    k = np.clip(s._bins(t), 0, s.n_bins - 1)
    x_scale = np.maximum(np.abs(t), np.maximum(np.abs(s.x[k]), np.abs(s.x[k + 1])))
    y_scale = np.maximum(np.abs(u), np.maximum(np.abs(s.y[k]), np.abs(s.y[k + 1])))
    bound = 4 * ulp(x_scale) + 4 * ulp(y_scale) / s.derivative(t)
    i = np.argmax(np.abs(back - t) / bound)
    assert np.all(np.abs(back - t) <= bound), (np.max(np.abs(back - t) / bound), t[i], k[i], s.x[k[i]:k[i] + 2].tolist(), s.y[k[i]:k[i] + 2].tolist(), s.derivatives[k[i]:k[i] + 2].tolist(), u[i], back[i])


@settings(max_examples=examples(40), deadline=None)
@given(splines())
def test_monotone_bins_consistent_and_exact_at_knots(s):
    t = np.sort(probe_points(s, np.linspace(0.0, 1.0, 17)))
    u = s(t)
    assert np.all(np.diff(u) >= 0)
    np.testing.assert_array_equal(s(s.x), s.y)
    np.testing.assert_array_equal(s.inverse(s.y), s.x)
    # A knot and the doubles next to it fall in the same bin forward and backward.
    near = np.concatenate([s.x, np.nextafter(s.x, -np.inf), np.nextafter(s.x, np.inf)])
    forward, backward = s._bins(near), s._inverse_bins(s(near))
    on_knot_value = np.isin(s(near), s.y)
    assert np.all((forward == backward) | on_knot_value)
    assert np.all(np.diff(s.inverse(np.sort(u))) >= 0)
    # The grid-accelerated bin search is searchsorted, exactly (at least 64 points use the grid).
    many = np.concatenate([near, t, np.linspace(s.x[0] - 1.0, s.x[-1] + 1.0, 257)])
    with_inf = np.r_[many, -1e308, 1e308, -np.inf, np.inf]
    np.testing.assert_array_equal(s._bins(with_inf), np.searchsorted(s.x, with_inf, side="right") - 1)
    values = s(many)
    np.testing.assert_array_equal(s._inverse_bins(values),
                                  np.searchsorted(s.y, values, side="right") - 1)


@settings(max_examples=examples(25), deadline=None)
@given(splines(), st.floats(0.0, 1.0))
def test_random_splines_match_mpmath(s, fraction):
    t = probe_points(s, [fraction])
    value, log_der = s.value_and_log_derivative(t)
    for ti, vi, li in zip(t, value, log_der):
        v_ref, l_ref = reference(s, ti)
        # y >= 0, so inside and above the knots s(t) is a sum of non-negative terms: relative
        # accuracy. Below them the line y_0 + d_0 (t - x_0) subtracts and can pass through 0:
        # accuracy relative to its two terms.
        size = abs(float(v_ref)) if ti >= s.x[0] else s.y[0] + s.derivatives[0] * (s.x[0] - ti)
        assert abs(vi - float(v_ref)) <= 1e-14 * size + 1e-300
        assert abs(li - float(l_ref)) <= 1e-14 * max(1.0, abs(float(l_ref)))


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "x, y, d, match",
    [
        ([0.0, 1.0, 1.0], [0.0, 0.5, 1.0], [1.0, 1.0, 1.0], "x must be strictly increasing"),
        ([0.0, 2.0, 1.0], [0.0, 0.5, 1.0], [1.0, 1.0, 1.0], "x must be strictly increasing"),
        ([0.0, 1.0, 2.0], [0.0, 0.5, 0.5], [1.0, 1.0, 1.0], "y must be strictly increasing"),
        ([0.0, 1.0, 2.0], [0.0, 0.5, 1.0], [1.0, 0.0, 1.0], "positive"),
        ([0.0, 1.0, 2.0], [0.0, 0.5, 1.0], [1.0, -1.0, 1.0], "positive"),
        ([0.0, 1.0, 2.0], [0.0, 1.0], [1.0, 1.0, 1.0], "one entry per knot"),
        ([0.0, np.nan], [0.0, 1.0], [1.0, 1.0], "NaN"),
        ([0.0, 1.0], [0.0, np.inf], [1.0, 1.0], "infinite"),
        ([0.0], [0.0], [1.0], "at least 2"),
        ([-1e308, 1e308], [0.0, 1.0], [1.0, 1.0], "overflow"),
    ],
)
def test_bad_knots(x, y, d, match):
    with pytest.raises(ValueError, match=match):
        RationalQuadraticSpline(x, y, d)


def test_bad_evaluation_points():
    for method in (EXAMPLE, EXAMPLE.inverse, EXAMPLE.log_derivative, EXAMPLE.derivative):
        with pytest.raises(ValueError, match="NaN"):
            method([0.0, np.nan])


# --------------------------------------------------------------------------- the density
def bimodal(n=600, seed=0):
    rng = np.random.default_rng(seed)
    return np.where(rng.uniform(size=n) < 0.3, rng.normal(-2.0, 0.5, n), rng.normal(1.0, 1.0, n))


@pytest.fixture(scope="module")
def density():
    return SplineDensity(n_bins=6).fit(bimodal())


def test_gradient_is_exact():
    from scipy.optimize import approx_fprime

    from kdelib.spline import _Layout

    rng = np.random.default_rng(0)
    z = np.sort(rng.normal(size=300))
    w = rng.uniform(0.5, 1.5, size=300)
    w /= w.sum()
    layout = _Layout(5, -1.5, 1.3, 1e-3, 1e-9)
    # (not at the initial point itself: its knots sit on data points, where the
    # likelihood has kinks in the knot positions)
    start = layout.initial(z, np.cumsum(w))
    for theta in (start + 0.05 * rng.normal(size=start.size), rng.normal(size=start.size)):
        _, grad = layout.objective(theta, z, w)
        numeric = approx_fprime(theta, lambda th: layout.objective(th, z, w)[0], 1e-7)
        np.testing.assert_allclose(grad, numeric, rtol=0, atol=2e-6 * max(1.0, np.abs(grad).max()))


def test_fit_maximises_the_likelihood(density):
    # The fitted parameters are a stationary point: no small change of any parameter of
    # the spline raises the mean log-likelihood (checked by perturbing the knot slopes).
    data = bimodal()
    base = density.score(data)
    s = density.spline_
    for j in range(s.x.size):
        for factor in (0.98, 1.02):
            d = s.derivatives.copy()
            d[j] *= factor
            other = SplineDensity(n_bins=6).fit(data)
            other.spline_ = RationalQuadraticSpline(s.x, s.y, d)
            other.tail_scales_ = density.tail_scales_ * np.where([j == 0, j == s.n_bins], 1.0 / factor, 1.0)
            assert other.score(data) <= base + 1e-9


def test_density_is_continuous_at_the_end_knots(density):
    s = density.spline_
    for end in (s.x[0], s.x[-1]):
        x = density.center_ + density.scale_ * np.array([end, end])
        x = np.array([np.nextafter(x[0], -np.inf), np.nextafter(x[1], np.inf)])
        np.testing.assert_allclose(density.logpdf(x[0]), density.logpdf(x[1]), rtol=1e-12)
        np.testing.assert_allclose(density.logcdf(x[0]), density.logcdf(x[1]), rtol=1e-12)


def test_tails_are_normal_in_log_space_far_out(density):
    # log F at x far below the knots is the half-normal tail, checked against mpmath.
    lo, hi = density.spline_.x[[0, -1]]
    sig_lo, sig_hi = density.tail_scales_
    for x in (-50.0, -1e3, -1e6, -1e100):
        t = ((x - density.center_) / density.scale_ - lo) / sig_lo
        with mp.workdps(40):
            ref = mp.log(2 * mp.exp(mp.mpf(density.log_tail_masses_[0])) * mp.ncdf(mp.mpf(t)))
        assert density.logcdf(x) == pytest.approx(float(ref), rel=1e-13)
        assert np.isfinite(density.ppf_log(np.array([float(ref)]))[0])
    assert density.logcdf(-1e300) == -np.inf and density.logsf(1e300) == -np.inf


DEGENERATE = {  # ties at -1 beside values ~1e64 away: the fit's parameters reach 1e8-1e9
    "upper tail holds most mass": [-1, -1, -1, -10, -1e65, 1e48],
    "lower tail at a knot": [-1] * 7 + [-1e63, 1e48],
}


@pytest.mark.parametrize("values", DEGENERATE.values(), ids=DEGENERATE.keys())
def test_degenerate_fit_masses_sum_to_one_and_tails_stay_accurate(values):
    """F + S = 1 at the knots; a tail's other side is accurate where the tail holds > 1/2."""
    d = SplineDensity(random_state=0).fit(values)
    s, eps = d.spline_, np.finfo(float).eps
    np.testing.assert_allclose(s.y + d._upper_values, 1.0, rtol=0, atol=2 * eps)
    knots = d.center_ + d.scale_ * s.x[[0, -1]]
    for x, side in ((knots[0], 0), (knots[1], 1)):
        sigma, q = d.tail_scales_[side], mp.exp(mp.mpf(d.log_tail_masses_[side]))
        at_knot = mp.mpf(d._upper_values[0] if side == 0 else s.y[-1])
        for step in (0.0, 1e-3, 0.1, 1.0, 3.0):
            z = (x - d.center_) / d.scale_ + (step * sigma if side else -step * sigma)
            point = d.center_ + d.scale_ * z
            t = abs((point - d.center_) / d.scale_ - s.x[-side]) / sigma
            with mp.workdps(40):
                other = at_knot + q * mp.erf(mp.mpf(t) / mp.sqrt(2))  # S below, F above
                near = 2 * q * mp.ncdf(-mp.mpf(t))
            got_other = d.logsf(point) if side == 0 else d.logcdf(point)
            got_near = d.logcdf(point) if side == 0 else d.logsf(point)
            assert got_other == pytest.approx(float(mp.log(other)), rel=8 * eps, abs=2 * eps)
            if near > 0:
                assert got_near == pytest.approx(float(mp.log(near)), rel=1e-13)


def test_auto_bins_are_chosen_on_held_out_likelihood():
    data = bimodal(800, seed=2)
    d = SplineDensity(random_state=0).fit(data)
    assert d.n_bins_ in d.bin_scores_
    assert d.bin_scores_[d.n_bins_] == max(d.bin_scores_.values())
    assert set(d.bin_scores_) <= {1, 2, 4, 8, 16, 32}
    # in nats per point of the data: scaling the data by 8 (exact in binary) shifts every
    # score by -log 8 and leaves the choice alone
    wide = SplineDensity(random_state=0).fit(8.0 * data)
    assert wide.n_bins_ == d.n_bins_ and set(wide.bin_scores_) == set(d.bin_scores_)
    for K, score in d.bin_scores_.items():
        assert wide.bin_scores_[K] == pytest.approx(score - np.log(8.0), rel=1e-12, abs=1e-12)


def test_weights_are_a_weighted_likelihood():
    data = bimodal(200, seed=5)
    counts = np.random.default_rng(5).integers(0, 3, size=data.size)
    a = SplineDensity(n_bins=3).fit(data, sample_weight=counts)
    b = SplineDensity(n_bins=3).fit(np.repeat(data, counts))
    repeated = np.repeat(data, counts)
    # Same objective, so equal maxima up to where L-BFGS stops: 1e-8 with scipy 1.17; with
    # scipy 1.15 (the declared floor) L-BFGS-B stops 3e-3 apart, at visibly different fits.
    if tuple(int(v) for v in scipy.__version__.split(".")[:2]) < (1, 17):
        assert a.score(repeated) == pytest.approx(b.score(repeated), abs=5e-3)
        return
    assert a.score(repeated) == pytest.approx(b.score(repeated), abs=1e-8)
    x = np.linspace(-4.0, 4.0, 21)
    np.testing.assert_allclose(a.logcdf(x), b.logcdf(x), rtol=1e-3)


def test_density_bad_input():
    data = bimodal(100)
    with pytest.raises(ValueError, match="free parameters"):
        SplineDensity(n_bins=40).fit(data)
    with pytest.raises(ValueError, match="n_bins"):
        SplineDensity(n_bins="many").fit(data)
    with pytest.raises(ValueError, match="n_bins"):
        SplineDensity(n_bins=0).fit(data)
    with pytest.raises(ValueError, match="tail_fraction"):
        SplineDensity(tail_fraction=0.6).fit(data)
    with pytest.raises(ValueError, match="zero spread"):
        SplineDensity(n_bins=2).fit(np.ones(20))
    with pytest.raises(ValueError, match="quantiles coincide"):
        SplineDensity(n_bins=2).fit(np.r_[np.zeros(50), 1.0, 2.0])
    with pytest.raises(ValueError, match="free parameters"):
        SplineDensity().fit(data[:5])
    few = SplineDensity().fit(data[:12])  # under 20 training points: one bin, no comparison
    assert few.n_bins_ == 1 and few.bin_scores_ == {}


# --------------------------------------------------------------------------- PCHIP density
from fractions import Fraction  # noqa: E402

from scipy.integrate import quad  # noqa: E402
from scipy.interpolate import PchipInterpolator  # noqa: E402

from kdelib.spline import PchipDensity  # noqa: E402


def mid_ecdf(values, weights):
    """Distinct values and their mid-ECDF in exact rational arithmetic."""
    total = sum(Fraction(w) for w in weights)
    distinct = sorted(set(values))
    mass = {v: Fraction(0) for v in distinct}
    for v, w in zip(values, weights):
        mass[v] += Fraction(w)
    out, below = [], Fraction(0)
    for v in distinct:
        out.append((below + mass[v] / 2) / total)
        below += mass[v]
    return np.array(distinct), np.array([float(f) for f in out]), np.array([float(1 - f) for f in out])


def test_pchip_interpolates_the_tie_merged_mid_ecdf_exactly():
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=300), 1)  # many ties
    w = rng.integers(0, 4, size=x.size).astype(float)
    d = PchipDensity().fit(x, sample_weight=w)
    u, F, S = mid_ecdf(x[w > 0].tolist(), w[w > 0].tolist())
    np.testing.assert_array_equal(d.knots_, u)
    np.testing.assert_allclose(d.cdf_values_, F, rtol=4 * EPS)
    np.testing.assert_allclose(d.sf_values_, S, rtol=4 * EPS)  # S from above: no 1 - F
    np.testing.assert_array_equal(d.logcdf(u), np.log(d.cdf_values_))
    np.testing.assert_array_equal(d.logsf(u), np.log(d.sf_values_))
    # integer weights are repeated points
    again = PchipDensity().fit(np.repeat(x, w.astype(int)))
    t = np.linspace(-4.0, 4.0, 57)
    np.testing.assert_allclose(again.logcdf(t), d.logcdf(t), rtol=1e-13)
    np.testing.assert_allclose(again.logpdf(t), d.logpdf(t), rtol=1e-12)


def test_pchip_cdf_and_sf_are_accurate_in_the_end_bins_of_a_large_sample():
    # Near the ends one of F, S is ~1e-5 and the other ~1: each must keep its own relative
    # accuracy, against the same cubic Hermite pieces evaluated in 40 digits.
    d = PchipDensity().fit(np.random.default_rng(0).normal(size=100_000))
    u, F, S, D = d.knots_, d.cdf_values_, d.sf_values_, d.derivatives_
    worst = 0.0
    with mp.workdps(40):
        for k in [0, 1, 2, len(u) - 4, len(u) - 3, len(u) - 2]:
            h = mp.mpf(u[k + 1]) - mp.mpf(u[k])
            for frac in (0.01, 0.3, 0.5, 0.7, 0.99):
                t = u[k] + frac * (u[k + 1] - u[k])
                s = (mp.mpf(t) - mp.mpf(u[k])) / h
                r = 1 - s
                h00, h01 = r * r * (1 + 2 * s), s * s * (1 + 2 * r)
                slope = h * (mp.mpf(D[k]) * s * r * r - mp.mpf(D[k + 1]) * s * s * r)
                exact_F = mp.mpf(F[k]) * h00 + mp.mpf(F[k + 1]) * h01 + slope
                exact_S = mp.mpf(S[k]) * h00 + mp.mpf(S[k + 1]) * h01 - slope
                worst = max(worst, float(abs(mp.mpf(float(d.cdf(t))) / exact_F - 1)),
                            float(abs(mp.mpf(float(d.sf(t))) / exact_S - 1)))
    assert worst < 8 * EPS


def test_pchip_is_scipys_pchip_between_the_end_intervals():
    x = bimodal(200, seed=2)
    d = PchipDensity().fit(x)
    u = d.knots_
    reference = PchipInterpolator(u, d.cdf_values_)
    t = np.linspace(u[1], u[-2], 501)
    np.testing.assert_allclose(d.cdf(t), reference(t), rtol=0, atol=4 * EPS)
    np.testing.assert_allclose(d.pdf(t), reference.derivative()(t), rtol=1e-12)


def test_pchip_zero_end_slope_is_raised_to_the_end_secant():
    x = [0.0, 10.0, 10.5, 11.0]  # flat first interval, steep second: three-point slope < 0
    d = PchipDensity().fit(x)
    assert PchipInterpolator(d.knots_, d.cdf_values_).derivative()(0.0) == 0.0
    assert d.derivatives_[0] == pytest.approx(0.25 / 10.0, rel=1e-15)
    t = np.linspace(-5.0, 16.0, 211)
    assert np.all(np.isfinite(d.logpdf(t)))


@settings(max_examples=examples(40), deadline=None)
@given(st.lists(st.integers(-50, 50), min_size=2, max_size=40).filter(lambda v: len(set(v)) > 1),
       st.sampled_from([None, 2, 3, 7]))
def test_pchip_cdf_is_monotone_and_density_positive(values, max_knots):
    data = np.array(values, dtype=float) / 7.0
    d = PchipDensity(max_knots=max_knots).fit(data)
    t = np.sort(np.concatenate([np.linspace(-30.0, 30.0, 2001), d.knots_,
                                np.nextafter(d.knots_, -np.inf), np.nextafter(d.knots_, np.inf)]))
    log_cdf, log_sf, log_pdf = d.logcdf(t), d.logsf(t), d.logpdf(t)
    assert_monotone_up_to_rounding(log_cdf, log_sf)
    assert np.all(np.isfinite(log_pdf)) and np.all(np.isfinite(log_cdf)) and np.all(np.isfinite(log_sf))
    np.testing.assert_allclose(np.logaddexp(log_cdf, log_sf), 0.0, atol=1e-14)
    # the round trip between the knots and in both tails
    lower = log_cdf <= np.log(0.5)
    np.testing.assert_allclose(d.ppf_log(log_cdf[lower]), t[lower], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d.ppf_log(log_sf[~lower], upper=True), t[~lower], rtol=1e-12, atol=1e-12)


def test_pchip_normalised_bin_by_bin():
    d = PchipDensity().fit(bimodal(150, seed=7))
    u = d.knots_
    pdf = lambda t: float(np.exp(d.logpdf(t)))  # noqa: E731
    pieces = np.array([quad(pdf, a, b, epsabs=1e-15, epsrel=1e-13)[0] for a, b in zip(u[:-1], u[1:])])
    np.testing.assert_allclose(pieces, np.diff(d.cdf_values_), rtol=1e-10, atol=1e-15)
    left = quad(pdf, -np.inf, u[0], epsabs=1e-15)[0]
    right = quad(pdf, u[-1], np.inf, epsabs=1e-15)[0]
    assert left == pytest.approx(d.cdf_values_[0], rel=1e-10)
    assert right == pytest.approx(d.sf_values_[-1], rel=1e-10)
    assert left + pieces.sum() + right == pytest.approx(1.0, abs=1e-12)


def test_pchip_tails_continue_value_and_density():
    d = PchipDensity().fit(bimodal(150, seed=8))
    for end in (d.knots_[0], d.knots_[-1]):
        near = np.array([np.nextafter(end, -np.inf), end, np.nextafter(end, np.inf)])
        for method in (d.logcdf, d.logsf, d.logpdf):
            values = method(near)
            np.testing.assert_allclose(values, values[1], rtol=1e-12, atol=1e-14)
    # exponential tails: log F and log S linear, exact far below 1e-300
    lam_lo, lam_hi = d.tail_rates_
    far = np.array([d.knots_[0] - 1e4])
    assert d.logcdf(far)[0] == pytest.approx(np.log(d.cdf_values_[0]) - lam_lo * 1e4, rel=1e-14)
    assert d._log_pdf_over_tail(far, upper=False)[0] == np.log(lam_lo)
    far = np.array([d.knots_[-1] + 1e4])
    assert d.logsf(far)[0] == pytest.approx(np.log(d.sf_values_[-1]) - lam_hi * 1e4, rel=1e-14)
    assert d._log_pdf_over_tail(far, upper=True)[0] == np.log(lam_hi)
    assert d.ppf_log(d.logsf(far), upper=True)[0] == pytest.approx(far[0], rel=1e-14)


def test_pchip_thinning_keeps_ends_and_mid_ecdf_values():
    x = bimodal(1000, seed=9)
    full = PchipDensity().fit(x)
    thin = PchipDensity(max_knots=10).fit(x)
    assert 2 <= thin.knots_.size <= 10
    assert thin.knots_[0] == x.min() and thin.knots_[-1] == x.max()
    idx = np.searchsorted(full.knots_, thin.knots_)
    np.testing.assert_array_equal(full.knots_[idx], thin.knots_)
    np.testing.assert_array_equal(full.cdf_values_[idx], thin.cdf_values_)


def test_pchip_bad_input():
    data = bimodal(50)
    for bad in (1, 0, 2.5, "10", True):
        with pytest.raises(ValueError, match="max_knots"):
            PchipDensity(max_knots=bad).fit(data)
    with pytest.raises(ValueError, match="distinct"):
        PchipDensity().fit(np.ones(10))
    with pytest.raises(ValueError, match="distinct"):
        PchipDensity().fit([0.0, 1.0], sample_weight=[1.0, 0.0])
    with pytest.raises(ValueError, match="over- or underflow"):
        PchipDensity().fit([-1e308, 0.0, 1e308])
    with pytest.raises(ValueError, match="non-negative"):
        PchipDensity().fit(data, sample_weight=-np.ones(50))
    with pytest.raises(ValueError, match="one weight per point"):
        PchipDensity().fit(data, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        PchipDensity().fit([0.0, np.nan, 1.0])
