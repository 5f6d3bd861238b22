"""Tests for kdelib.gaussianize: one contract suite over both Gaussianizers, plus sklearn checks.

References are independent: scipy.differentiate for the Jacobian, mpmath (50 digits) for the
far tails, scikit-learn's estimator checks for the API.
"""

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.differentiate import derivative
from scipy.special import ndtri_exp
from scipy.stats import kstest
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from hypothesis_profiles import examples
from kdelib import KDEGaussianizer, MixtureGaussianizer, SplineGaussianizer
from kdelib.bandwidth import select_bandwidth
from kdelib import gaussianize
from kdelib.gaussianize import Z_LOG_MAX, Z_MAX
from kdelib.normal_mixture import mixture_parameters

FINITE_MAX = np.finfo(np.float64).max


def normal_mixture_of(dist):
    """(means, scales, weights) of a fitted normal-mixture marginal, for the mpmath reference."""
    means, scales, log_weights = mixture_parameters(dist)
    return means, scales, np.exp(log_weights)


def mixture_reference(dist, x):
    """z and log-det at x for a normal-mixture marginal (see log_det_reference)."""
    return log_det_reference(normal_mixture_of(dist), x)


def spline_reference(dist, x):
    """z and log-det at x for a SplineDensity marginal, from its knots and tails in mpmath.

    Standardised u = (x - c) / sigma; half-normal tails F = 2 p Phi((u - u_0) / s) below the
    first knot (S likewise above the last), the spline in the usual form between them.
    """
    spline = dist.spline_
    X, Y, D = spline.x, spline.y, spline.derivatives
    p_lo, p_hi = np.exp(dist.log_tail_masses_)
    s_lo, s_hi = dist.tail_scales_
    u_float = (float(x) - dist.center_) / dist.scale_
    with mp.workdps(50 + 2 * int(np.log10(1.0 + abs(u_float)))):
        u = (mp.mpf(float(x)) - mp.mpf(dist.center_)) / mp.mpf(dist.scale_)
        if u < X[0]:
            t = (u - mp.mpf(X[0])) / mp.mpf(s_lo)
            F = 2 * mp.mpf(p_lo) * mp.ncdf(t)
            S, f = 1 - F, mp.mpf(D[0]) * mp.exp(-t * t / 2)
        elif u >= X[-1]:
            t = (u - mp.mpf(X[-1])) / mp.mpf(s_hi)
            S = 2 * mp.mpf(p_hi) * mp.ncdf(-t)
            F, f = 1 - S, mp.mpf(D[-1]) * mp.exp(-t * t / 2)
        else:
            k = int(np.searchsorted(X, float(u), side="right") - 1)
            x0, x1, y0, y1, d0, d1 = (mp.mpf(float(v)) for v in (X[k], X[k + 1], Y[k], Y[k + 1], D[k], D[k + 1]))
            w, h = x1 - x0, y1 - y0
            sl, xi = h / w, (u - x0) / w
            om = xi * (1 - xi)
            den = sl + (d0 + d1 - 2 * sl) * om
            F = y0 + h * (sl * xi**2 + d0 * om) / den
            # 1 - F from the upper masses, as the reference for the upper tail
            upper = mp.mpf(p_hi) + mp.fsum(mp.mpf(float(v)) for v in np.diff(Y)[k + 1:])
            S = upper + h - h * (sl * xi**2 + d0 * om) / den
            f = sl**2 * (d1 * xi**2 + 2 * sl * om + d0 * (1 - xi) ** 2) / den**2
        return tails_log_det_reference(F, S, f / mp.mpf(dist.scale_))


# One entry per Gaussianizer: how to build it, its mpmath reference for z and the log-det of
# one fitted marginal at one point, and any tolerance that differs between them.
GAUSSIANIZERS = {
    KDEGaussianizer: {"make": lambda: KDEGaussianizer(), "reference": mixture_reference},
    MixtureGaussianizer: {
        "make": lambda: MixtureGaussianizer(n_components=3, random_state=0),
        "reference": mixture_reference,
    },
    SplineGaussianizer: {
        "make": lambda: SplineGaussianizer(random_state=0),
        "reference": spline_reference,
    },
}
ROUND_TRIP_ATOL = 1e-10
DERIVATIVE_RTOL = 1e-8
MPMATH_RTOL = 1e-10


def training_data(n=120, seed=0):
    """Three columns: skewed, bimodal, and a narrow normal (scales far from 1)."""
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [
            0.3 * rng.exponential(size=n),
            np.where(rng.uniform(size=n) < 0.4, rng.normal(-2.0, 0.3, n), rng.normal(1.5, 0.5, n)),
            rng.normal(5.0, 0.2, n),
        ]
    )


@pytest.fixture(scope="module", params=list(GAUSSIANIZERS), ids=lambda c: c.__name__)
def fitted(request):
    X = training_data()
    return request.param, GAUSSIANIZERS[request.param]["make"]().fit(X), X


# --------------------------------------------------------------------------- scikit-learn API
@parametrize_with_checks([KDEGaussianizer(), MixtureGaussianizer(random_state=0),
                          SplineGaussianizer(random_state=0)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------- contract suite
def test_shapes_and_finite_scores(fitted):
    _, g, X = fitted
    Z = g.transform(X)
    assert Z.shape == X.shape and np.all(np.isfinite(Z))
    assert g.log_det_jacobian(X).shape == (X.shape[0],)
    assert g.score_samples(X).shape == (X.shape[0],)


def test_samples_of_the_fitted_marginals_become_standard_normal(fitted):
    # Probability integral transform: if x ~ F_j then Phi^-1(F_j(x)) ~ N(0, 1).
    _, g, X = fitted
    rng = np.random.default_rng(3)
    Z = g.transform(np.column_stack([dist.sample(3000, random_state=rng) for dist in g.marginals_]))
    for j in range(X.shape[1]):
        assert kstest(Z[:, j], "norm").pvalue > 1e-3


def column_span(g, z_max=37.0):
    """x-range per column whose z lies in [-z_max, z_max] (found with the inverse)."""
    return g.inverse_transform(np.full((2, g.n_features_in_), [[-z_max], [z_max]]))


def test_round_trip_x_to_z_to_x(fitted):
    _, g, X = fitted
    lo, hi = column_span(g)
    rng = np.random.default_rng(1)
    grid = np.vstack([np.linspace(lo, hi, 600), rng.uniform(lo, hi, size=(400, lo.size)), X])
    Z = g.transform(grid)
    inside = np.abs(Z) <= 37.0
    assert inside.mean() > 0.95 and np.any(np.abs(Z[inside]) > 36.0)
    back = g.inverse_transform(Z)
    np.testing.assert_allclose(back[inside], grid[inside], rtol=0, atol=ROUND_TRIP_ATOL)


def test_round_trip_z_to_x_to_z(fitted):
    _, g, X = fitted
    z = np.linspace(-37.0, 37.0, 741)
    Z = np.column_stack([z] * X.shape[1])
    np.testing.assert_allclose(g.transform(g.inverse_transform(Z)), Z, rtol=0, atol=1e-9)


def test_transform_is_monotone_and_finite_over_every_double(fitted):
    _, g, X = fitted
    magnitudes = np.logspace(-300, 308, 200)
    x = np.sort(np.concatenate([-magnitudes, [0.0], magnitudes, [-FINITE_MAX, FINITE_MAX]]))
    Z = g.transform(np.column_stack([x] * X.shape[1]))
    assert np.all(np.isfinite(Z)) and np.all(np.abs(Z) <= Z_MAX)
    assert np.all(np.diff(Z, axis=0) >= 0)
    # Saturation happens only where the log tail is -inf, i.e. beyond the last finite z.
    saturated = np.abs(Z) == Z_MAX
    assert np.all(saturated[0]) and np.all(saturated[-1])
    assert np.all(np.abs(Z[~saturated]) <= Z_LOG_MAX)


_CACHE = {}


def _fitted_once(cls):
    if cls not in _CACHE:
        _CACHE[cls] = GAUSSIANIZERS[cls]["make"]().fit(training_data())
    return _CACHE[cls]


@settings(max_examples=examples(40), deadline=None)
@given(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.floats(1e-6, 1e6, allow_nan=False),
)
def test_transform_is_strictly_increasing(x, gap):
    for cls in GAUSSIANIZERS:
        g = _fitted_once(cls)
        pair = np.array([[x] * 3, [x + gap * max(1.0, abs(x))] * 3])
        Z = g.transform(pair)
        assert np.all(Z[1] > Z[0]), (cls.__name__, x, gap, Z)


@settings(max_examples=examples(25), deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=8))
def test_no_nan_for_any_finite_input(values):
    for cls in GAUSSIANIZERS:
        g = _fitted_once(cls)
        X = np.column_stack([values] * 3)
        Z = g.transform(X)
        assert np.all(np.isfinite(Z))
        assert not np.any(np.isnan(g.log_det_jacobian(X)))
        assert not np.any(np.isnan(g.score_samples(X)))
        assert not np.any(np.isnan(g.inverse_transform(Z)))


def test_log_det_matches_numerical_derivative_in_the_interior(fitted):
    _, g, X = fitted
    for j in range(X.shape[1]):
        x = np.quantile(X[:, j], np.linspace(0.01, 0.99, 21))
        one = _single_column(g, j)
        res = derivative(
            lambda t: one.transform(t.reshape(-1, 1)).reshape(t.shape),
            x,
            initial_step=0.25 * np.std(X[:, j]) * X.shape[0] ** -0.2,
        )
        assert np.all(res.success)
        log_det = one.log_det_jacobian(x[:, None])
        np.testing.assert_allclose(res.df, np.exp(log_det), rtol=DERIVATIVE_RTOL)


def _single_column(g, j):
    """A fitted copy of ``g`` restricted to column ``j`` (same marginal)."""
    one = type(g)(**g.get_params())
    one.marginals_ = [g.marginals_[j]]
    one.n_features_in_ = 1
    return one


def log_det_reference(mixture, x):
    """z and log f - log phi(z) at x, from the mixture parameters in high precision.

    log f and z^2/2 agree in their leading digits, so the working precision grows with
    log10 |x|: 50 digits plus two per decade.
    """
    means, scales, weights = mixture
    weights = np.full(means.size, 1.0 / means.size) if weights is None else weights
    spread = abs(float(x) - float(np.median(means))) / float(np.min(scales))
    with mp.workdps(50 + 2 * int(np.log10(1.0 + spread))):
        xm = mp.mpf(float(x))
        terms = [
            (mp.mpf(float(w)), mp.mpf(float(m)), mp.mpf(float(s)))
            for w, m, s in zip(weights, means, scales)
        ]
        F = mp.fsum(w * mp.ncdf((xm - m) / s) for w, m, s in terms)
        S = mp.fsum(w * mp.ncdf((m - xm) / s) for w, m, s in terms)
        f = mp.fsum(w * mp.npdf((xm - m) / s) / s for w, m, s in terms)
        return tails_log_det_reference(F, S, f)


def tails_log_det_reference(F, S, f):
    """z = Phi^-1(F) and log f - log phi(z) from mpmath values of F, S and f (at their precision)."""
    tail, sign = (F, -1) if F <= S else (S, 1)
    # Newton on log Phi(t) = log tail, started from the asymptotic root.
    t = -mp.sqrt(-2 * mp.log(tail))
    for _ in range(60):
        step = (mp.log(mp.ncdf(t)) - mp.log(tail)) * mp.ncdf(t) / mp.npdf(t)
        t -= step
        if abs(step) < mp.mpf(10) ** (5 - mp.mp.dps) * (1 + abs(t)):
            break
    z = -sign * t
    return float(z), float(mp.log(f) + z**2 / 2 + mp.log(2 * mp.pi) / 2)


def test_log_det_and_z_match_mpmath_in_the_tails(fitted):
    cls, g, X = fitted
    reference = GAUSSIANIZERS[cls]["reference"]
    # z targets from moderate tails to far beyond 1e-300 (|z| > 37), out to |log F| ~ 1e200.
    targets = np.array([3.0, 8.0, 20.0, 37.0, 60.0, 300.0, 5e3, 1e6, 1e10, 1e100])
    z_targets = np.concatenate([-targets, targets])
    for j in range(X.shape[1]):
        one = _single_column(g, j)
        x = one.inverse_transform(z_targets[:, None])[:, 0]
        z = one.transform(x[:, None])[:, 0]
        log_det = one.log_det_jacobian(x[:, None])
        for xi, zi, ldi in zip(x, z, log_det):
            z_ref, log_det_ref = reference(g.marginals_[j], xi)
            assert zi == pytest.approx(z_ref, rel=1e-13), (j, xi)
            assert ldi == pytest.approx(log_det_ref, rel=MPMATH_RTOL), (j, xi, zi)


def test_component_sum_log_det_equals_plain_difference_where_both_are_accurate(fitted, monkeypatch):
    # Moderate tails (|log T| < 700): log f - log T is accurate either way, so the far-tail
    # component-sum path must reproduce the plain path there.
    _, g, X = fitted
    lo, hi = column_span(g, z_max=30.0)
    points = np.vstack([X, np.linspace(lo, hi, 300)])
    monkeypatch.setattr(gaussianize, "FAR_TAIL_LOG", np.inf)
    plain = g.log_det_jacobian(points)
    monkeypatch.setattr(gaussianize, "FAR_TAIL_LOG", 0.0)
    component_sums = g.log_det_jacobian(points)
    np.testing.assert_allclose(component_sums, plain, rtol=1e-12, atol=1e-12)


def test_score_samples_identity(fitted):
    _, g, X = fitted
    rng = np.random.default_rng(2)
    lo, hi = column_span(g, z_max=30.0)
    points = np.vstack([X, rng.uniform(lo, hi, size=(200, lo.size))])
    Z = g.transform(points)
    log_phi = -0.5 * Z**2 - 0.5 * np.log(2.0 * np.pi)
    expected = log_phi.sum(axis=1) + g.log_det_jacobian(points)
    np.testing.assert_allclose(g.score_samples(points), expected, rtol=1e-12, atol=1e-12)
    by_column = sum(g.marginals_[j].logpdf(points[:, j]) for j in range(X.shape[1]))
    np.testing.assert_allclose(g.score_samples(points), by_column, rtol=1e-14)
    assert g.score(points) == pytest.approx(np.mean(by_column), rel=1e-14)


def test_saturation_beyond_the_log_range(fitted):
    _, g, X = fitted
    x = np.array([-FINITE_MAX, -1e300, 1e300, FINITE_MAX])
    P = np.column_stack([x] * X.shape[1])
    Z = g.transform(P)
    np.testing.assert_array_equal(Z, np.sign(P) * Z_MAX)
    assert np.all(g.log_det_jacobian(P) == -np.inf)  # the saturated map is flat
    assert np.all(g.score_samples(P) == -np.inf)  # true log f < -1.8e308
    back = g.inverse_transform(Z)
    np.testing.assert_array_equal(back, np.sign(P) * np.inf)


def test_z_max_is_just_beyond_the_largest_log_space_z():
    assert Z_LOG_MAX == -ndtri_exp(-FINITE_MAX)
    assert Z_MAX == np.nextafter(Z_LOG_MAX, np.inf)
    assert np.isfinite(Z_MAX)


@pytest.mark.parametrize("cls", list(GAUSSIANIZERS), ids=lambda c: c.__name__)
def test_bad_input(cls):
    g = GAUSSIANIZERS[cls]["make"]()
    X = training_data(40)
    with pytest.raises(NotFittedError):
        g.transform(X)
    for bad in (np.where(X > 1, np.nan, X), np.where(X > 1, np.inf, X)):
        with pytest.raises(ValueError, match="NaN|infinity"):
            g.fit(bad)
    with pytest.raises(ValueError, match="2D array"):
        g.fit(X[:, 0])
    with pytest.raises(ValueError, match="minimum of 2"):
        g.fit(X[:1])
    g.fit(X)
    with pytest.raises(ValueError, match="features"):
        g.transform(X[:, :2])
    with pytest.raises(ValueError, match="NaN"):
        g.inverse_transform(np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="NaN"):
        g.log_det_jacobian(np.full((2, 3), np.nan))


# --------------------------------------------------------------------------- class specifics
def test_kde_gaussianizer_bandwidths():
    X = training_data(60)
    for rule in ("scott", " ISJ ", "silverman"):
        g = KDEGaussianizer(bandwidth=rule).fit(X)
        expected = [select_bandwidth(X[:, j], rule) for j in range(X.shape[1])]
        np.testing.assert_allclose(g.bandwidth_, expected, rtol=1e-15)
    g = KDEGaussianizer(bandwidth=0.25).fit(X)
    np.testing.assert_array_equal(g.bandwidth_, 0.25)
    for bad in (-1.0, 0.0, "normal_reference"):
        with pytest.raises(ValueError, match="bandwidth|method"):
            KDEGaussianizer(bandwidth=bad).fit(X)
    with pytest.raises(ValueError, match="zero spread"):
        KDEGaussianizer().fit(np.column_stack([X[:, 0], np.ones(60)]))


def test_mixture_gaussianizer_is_reproducible_and_matches_its_marginals():
    X = training_data(80)
    a = MixtureGaussianizer(n_components=2, random_state=3).fit(X)
    b = MixtureGaussianizer(n_components=2, random_state=3).fit(X)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    for j, dist in enumerate(a.marginals_):
        assert dist.means_.shape == (2,)
    with pytest.raises(ValueError):
        MixtureGaussianizer(n_components=0).fit(X)
