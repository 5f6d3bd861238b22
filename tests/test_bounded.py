"""Bounded supports of GaussianKDE: reflection and transformation against independent sums."""

import numpy as np
import pytest
import scipy.stats as st
from scipy.integrate import quad
from scipy.special import expit, logit, logsumexp
from sklearn.base import clone

from kdelib import GaussianKDE, KDEGaussianizer
from kdelib import normal_mixture as nm
from kdelib.bounded import MAX_CELLS, log_interval_mass

INF = np.inf


def positive(n=300, seed=0):
    return np.random.default_rng(seed).exponential(size=n)


def unit(n=300, seed=0):
    return np.random.default_rng(seed).beta(1.0, 2.5, size=n)


def negative(n=300, seed=0):
    return -positive(n, seed) + 1.0


# name -> (data, bounds)
SUPPORTS = {
    "lower": (positive, (0.0, INF)),
    "upper": (negative, (-INF, 1.0)),
    "both": (unit, (0.0, 1.0)),
}
CASES = [(s, b) for s in SUPPORTS for b in ("reflect", "transform")]


def fitted(support, boundary, **kwargs):
    make, bounds = SUPPORTS[support]
    return GaussianKDE(bounds=bounds, boundary=boundary, **kwargs).fit(make()), make(), bounds


def total_mass(kde, bounds, pieces=40):
    """Quadrature of exp(logpdf) over the support, split at quantiles, plus the exact far tails."""
    lo_t, hi_t = kde.ppf_log(np.array([-60.0])), kde.ppf_log(np.array([-60.0]), upper=True)
    lo = bounds[0] if np.isfinite(bounds[0]) else lo_t[0]
    hi = bounds[1] if np.isfinite(bounds[1]) else hi_t[0]
    cuts = np.concatenate([[lo], kde.ppf(np.linspace(0.0, 1.0, pieces + 1)[1:-1]), [hi]])
    total = 0.0
    for a, b in zip(cuts[:-1], cuts[1:]):
        value, _ = quad(lambda t: float(np.exp(kde.logpdf(t))), a, b, epsabs=1e-15, epsrel=1e-14, limit=200)
        total += value
    # the mass beyond a quadrature end at an infinite side is exp(-60) (exact, tiny)
    return total + np.exp(-60.0) * (np.isinf(bounds[0]) + np.isinf(bounds[1]))


@pytest.mark.parametrize(("support", "boundary"), CASES)
def test_density_integrates_to_one_to_1e_12(support, boundary):
    kde, _, bounds = fitted(support, boundary)
    assert total_mass(kde, bounds) == pytest.approx(1.0, abs=1e-12)


def test_two_bound_reflection_with_a_wide_kernel_needs_and_uses_many_reflections():
    data = unit(40, 3)
    kde = GaussianKDE(bandwidth=0.9, bounds=(0.0, 1.0)).fit(data)
    assert len(kde._boundary_model.branches) > 15
    assert total_mass(kde, (0.0, 1.0), pieces=4) == pytest.approx(1.0, abs=1e-12)
    # a kernel as wide as the support makes the estimate almost uniform
    assert np.ptp(kde.pdf(np.linspace(0, 1, 11))) < 0.05
    with pytest.raises(ValueError, match="reflections"):
        GaussianKDE(bandwidth=200.0, bounds=(0.0, 1.0)).fit(data)
    assert MAX_CELLS > 20


@pytest.mark.parametrize(("support", "boundary"), CASES)
def test_cdf_is_exact_at_and_beyond_the_bounds(support, boundary):
    kde, _, (lo, hi) = fitted(support, boundary)
    for end, f_value in ((lo, 0.0), (hi, 1.0)):
        if np.isfinite(end):
            assert kde.cdf(end) == f_value and kde.sf(end) == 1.0 - f_value
            outside = end - 1.0 if f_value == 0 else end + 1.0
            assert kde.pdf(outside) == 0 and kde.logpdf(outside) == -INF
            assert kde.cdf(outside) == f_value
    np.testing.assert_array_equal(kde.ppf([0.0, 1.0]), [lo, hi])


@pytest.mark.parametrize(("support", "boundary"), CASES)
def test_quantiles_round_trip_everywhere_including_next_to_the_bounds(support, boundary):
    kde, data, (lo, hi) = fitted(support, boundary)
    q = np.concatenate([np.logspace(-12, -1, 12), np.linspace(0.2, 0.8, 7), 1 - np.logspace(-1, -12, 12)])
    x = kde.ppf(q)
    assert np.all((x >= lo) & (x <= hi)) and np.all(np.diff(x) > 0)
    # x is a double: near a bound at 1, 1 - x moves in steps of 1.1e-16, which limits how
    # close F(x) can come to q
    atol = 4 * kde.pdf(x) * np.spacing(np.abs(x))
    assert np.all(np.abs(kde.cdf(x) - q) <= 1e-12 * q + atol)
    assert np.all(np.abs(kde.sf(x) - (1 - q)) <= 1e-12 * (1 - q) + atol)
    inner = np.sort(data)[[1, 50, 150, 250, -2]]
    np.testing.assert_allclose(kde.ppf(kde.cdf(inner)), inner, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize(("support", "boundary"), CASES)
def test_samples_follow_the_cdf_and_stay_in_the_support(support, boundary):
    kde, _, (lo, hi) = fitted(support, boundary)
    draws = kde.sample(3000, random_state=7)
    assert np.all((draws >= lo) & (draws <= hi))
    assert st.kstest(draws, kde.cdf).pvalue > 1e-3


def test_one_sided_reflection_equals_the_two_image_sum():
    data = positive(50, 1)
    h = 0.3
    kde = GaussianKDE(bandwidth=h, bounds=(0.0, INF)).fit(data)
    x = np.array([0.0, 1e-9, 0.05, 0.4, 2.0, 6.0])
    by_hand = st.norm.pdf(x[:, None], data, h).mean(1) + st.norm.pdf(x[:, None], -data, h).mean(1)
    np.testing.assert_allclose(kde.pdf(x), by_hand, rtol=1e-13)
    # F(x) = P(-x <= Y <= x) for the unbounded mixture Y
    cdf = (st.norm.cdf(x[:, None], data, h) - st.norm.cdf(-x[:, None], data, h)).mean(1)
    np.testing.assert_allclose(kde.cdf(x), cdf, rtol=1e-12, atol=1e-16)
    # near the bound F ~ 2 x f(0): full relative precision where the difference above cancels
    assert kde.cdf(1e-12) == pytest.approx(1e-12 * kde.pdf(0.0), rel=1e-9)


def test_upper_reflection_mirrors_lower_reflection():
    data = positive(60, 2)
    a = GaussianKDE(bandwidth=0.25, bounds=(0.0, INF)).fit(data)
    b = GaussianKDE(bandwidth=0.25, bounds=(-INF, 0.0)).fit(-data)
    x = np.array([0.0, 0.01, 0.3, 1.0, 4.0])
    np.testing.assert_allclose(b.logpdf(-x), a.logpdf(x), rtol=1e-13)
    np.testing.assert_allclose(b.logsf(-x), a.logcdf(x[::1]), rtol=1e-12)


def test_two_sided_reflection_equals_the_image_sum():
    data = unit(40, 5)
    h = 0.2
    kde = GaussianKDE(bandwidth=h, bounds=(0.0, 1.0)).fit(data)
    x = np.linspace(0.0, 1.0, 21)
    images = [data + 2 * k for k in range(-4, 5)] + [-data + 2 * k for k in range(-4, 5)]
    by_hand = sum(st.norm.pdf(x[:, None], c, h).mean(1) for c in images)
    np.testing.assert_allclose(kde.pdf(x), by_hand, rtol=1e-13)
    cdf = [quad(lambda t: float(kde.pdf(t)), 0.0, v, epsabs=1e-15, epsrel=1e-14)[0] for v in x]
    np.testing.assert_allclose(kde.cdf(x), cdf, rtol=1e-12, atol=1e-15)


def test_transformations_equal_the_jacobian_formula():
    h = 0.3
    data = positive(40, 6)
    kde = GaussianKDE(bandwidth=h, bounds=(0.0, INF), boundary="transform").fit(data)
    x = np.array([1e-6, 0.01, 0.5, 3.0, 30.0])
    y = np.log(x)
    np.testing.assert_allclose(kde.pdf(x), st.norm.pdf(y[:, None], np.log(data), h).mean(1) / x, rtol=1e-13)
    np.testing.assert_allclose(kde.cdf(x), st.norm.cdf(y[:, None], np.log(data), h).mean(1), rtol=1e-13)
    u = unit(40, 6)
    kde = GaussianKDE(bandwidth=h, bounds=(0.0, 1.0), boundary="transform").fit(u)
    x = np.array([1e-6, 0.2, 0.5, 0.9, 1 - 1e-6])
    jac = 1.0 / (x * (1 - x))
    log_by_hand = logsumexp(st.norm.logpdf(logit(x)[:, None], logit(u), h), axis=1) - np.log(u.size)
    np.testing.assert_allclose(kde.logpdf(x), log_by_hand + np.log(jac), rtol=1e-12)
    np.testing.assert_allclose(kde.sf(x), st.norm.sf(logit(x)[:, None], logit(u), h).mean(1), rtol=1e-12)
    np.testing.assert_allclose(kde.ppf(0.3), expit(kde.transformed_.ppf(0.3)), rtol=1e-14)
    # the bandwidth rule sees the transformed data
    rule = GaussianKDE(bandwidth="silverman", bounds=(0.0, 1.0), boundary="transform").fit(u)
    assert rule.bandwidth_ == GaussianKDE(bandwidth="silverman").fit(logit(u)).bandwidth_


def test_reflection_bandwidth_rule_sees_the_data():
    data = positive(200, 8)
    for rule in ("scott", "sj"):
        kde = GaussianKDE(bandwidth=rule, bounds=(0.0, INF)).fit(data)
        assert kde.bandwidth_ == pytest.approx(GaussianKDE(bandwidth=rule).fit(data).bandwidth_, rel=1e-13)


def test_log_interval_mass_is_accurate_for_narrow_and_far_intervals():
    means = np.array([0.0, 3.0])
    a = np.array([1.0, -40.0, 50.0, -1e-12, 2.0, -INF])
    b = np.array([1.0 + 1e-10, -39.0, 50.5, 1e-12, 2.5, INF])
    got = log_interval_mass(a, b, means, 1.0, np.log([0.25, 0.75]))
    import mpmath as mp

    mp.mp.dps = 60

    def ref(lo, hi):
        total = mp.mpf(0)
        for m, w in ((0.0, 0.25), (3.0, 0.75)):
            if lo - m >= 0:  # upper tails keep the digits
                total += w * (mp.ncdf(m - mp.mpf(lo)) - mp.ncdf(m - mp.mpf(hi)))
            else:
                total += w * (mp.ncdf(mp.mpf(hi) - m) - mp.ncdf(mp.mpf(lo) - m))
        return float(mp.log(total))

    np.testing.assert_allclose(got, [ref(x, y) for x, y in zip(a, b)], rtol=1e-13, atol=1e-15)


def test_unbounded_estimate_is_unchanged():
    data = positive(80, 9)
    x = np.linspace(-3.0, 8.0, 50)
    plain = GaussianKDE().fit(data)
    for same in (GaussianKDE(bounds=None).fit(data), GaussianKDE(bounds=(-INF, INF)).fit(data)):
        for method in ("pdf", "logpdf", "cdf", "logcdf", "sf", "logsf"):
            np.testing.assert_array_equal(getattr(same, method)(x), getattr(plain, method)(x))
    np.testing.assert_array_equal(plain.logcdf(x), nm.mixture_logcdf(x, np.sort(data), plain.bandwidth_))
    assert plain.support_ == (-INF, INF) and plain.boundary_ is None and plain.transformed_ is None
    bounded = GaussianKDE(bounds=(0.0, INF)).fit(data)
    with pytest.raises(ValueError, match="not a normal mixture"):
        nm.mixture_parameters(bounded)


def test_weights_equal_repeated_points():
    data = unit(30, 10)
    counts = np.random.default_rng(10).integers(1, 4, size=30)
    x = np.linspace(0.0, 1.0, 17)
    for boundary in ("reflect", "transform"):
        kw = {"bandwidth": 0.2, "bounds": (0.0, 1.0), "boundary": boundary}
        a = GaussianKDE(**kw).fit(data, sample_weight=counts)
        b = GaussianKDE(**kw).fit(np.repeat(data, counts))
        np.testing.assert_allclose(a.logcdf(x[1:]), b.logcdf(x[1:]), rtol=1e-12)
        np.testing.assert_allclose(a.logpdf(x[1:-1]), b.logpdf(x[1:-1]), rtol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "data", "match"),
    [
        ({"bounds": (0.0, 1.0)}, [0.5, 1.5], "not inside"),
        ({"bounds": (0.0, INF), "boundary": "transform"}, [0.0, 1.0], "strictly inside"),
        ({"bounds": (1.0, 1.0)}, [1.0, 1.0], "lower < upper"),
        ({"bounds": (2.0, 1.0)}, [1.5], "lower < upper"),
        ({"bounds": (np.nan, 1.0)}, [0.5], "NaN"),
        ({"bounds": (0.0, np.nan)}, [0.5], "NaN"),
        ({"bounds": (0.0,)}, [0.5], "pair"),
        ({"bounds": "0, 1"}, [0.5], "pair"),
        ({"boundary": "reflect"}, [0.5, 1.0], "finite bound"),
        ({"bounds": (-INF, INF), "boundary": "transform"}, [0.5, 1.0], "finite bound"),
        ({"bounds": (0.0, 1.0), "boundary": "mirror"}, [0.5], "boundary"),
        ({"bounds": (0.0, 1.0), "method": "binned"}, [0.5, 0.6], "exact"),
    ],
)
def test_bad_bounds_raise_value_error(kwargs, data, match):
    with pytest.raises(ValueError, match=match):
        GaussianKDE(bandwidth=0.1, **kwargs).fit(data)


def test_clone_and_default_boundary():
    kde = GaussianKDE(bounds=(0.0, 1.0)).fit(unit(50))
    assert kde.boundary_ == "reflect" and kde.support_ == (0.0, 1.0)
    assert clone(kde).get_params()["bounds"] == (0.0, 1.0)


@pytest.mark.parametrize(("support", "boundary"), CASES)
def test_bounded_pdf_variance_matches_monte_carlo(support, boundary):
    # The plug-in variance (mean over replicates) against the Monte Carlo variance of the
    # estimate at fixed points, within 4 standard errors.
    make, bounds = SUPPORTS[support]
    n, reps, h = 100, 400, 0.15
    x = {"lower": [0.0, 0.2, 1.0], "upper": [1.0, 0.8, 0.0], "both": [0.0, 0.3, 0.9]}[support]
    rng = np.random.default_rng(21)
    values, estimates = np.empty((reps, 3)), np.empty((reps, 3))
    for r in range(reps):
        kde = GaussianKDE(bandwidth=h if boundary == "reflect" else 0.3, bounds=bounds,
                          boundary=boundary).fit(make(n, int(rng.integers(2**31))))
        values[r], estimates[r] = kde.pdf(x), kde.pdf_std(x) ** 2
    mc = values.var(axis=0, ddof=1)
    se_mc = np.sqrt((np.mean((values - values.mean(0)) ** 4, axis=0) - mc**2) / reps)
    se_est = estimates.std(axis=0, ddof=1) / np.sqrt(reps)
    finite = np.isfinite(mc) & (mc > 0)
    assert np.all(np.abs(estimates.mean(0) - mc)[finite] < 4 * np.hypot(se_mc, se_est)[finite])


def test_gaussianizer_passes_the_bounds_on():
    X = np.column_stack([positive(200, 1), positive(200, 2)])
    for boundary in ("reflect", "transform"):
        g = KDEGaussianizer(bounds=(0.0, INF), boundary=boundary).fit(X)
        assert all(m.support_ == (0.0, INF) and m.boundary_ == boundary for m in g.marginals_)
        np.testing.assert_allclose(g.inverse_transform(g.transform(X)), X, rtol=1e-12, atol=1e-13)
        z = g.transform(X)
        assert st.kstest(z[:, 0], "norm").pvalue > 1e-3
