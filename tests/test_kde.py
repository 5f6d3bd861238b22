"""Tests for kdelib.GaussianKDE against scipy, scikit-learn, statsmodels and mpmath."""

import numpy as np
import pytest
import scipy.stats as st
from hypothesis import example, given, settings
from hypothesis import strategies as hs
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.neighbors import KernelDensity
from statsmodels.nonparametric.kde import KDEUnivariate
from mpmath_reference import assert_close_or_exact_limit, mp_reference

from hypothesis_profiles import examples
from kdelib import GaussianKDE
from kdelib.bandwidth import select_bandwidth
from kdelib.kde import MAX_GRID_POINTS, binned_spacing

FUNCS = ("pdf", "logpdf", "cdf", "sf", "logcdf", "logsf")


@pytest.fixture(scope="module")
def sample():
    return np.random.default_rng(42).normal(loc=1.0, scale=2.0, size=400)


def scipy_kde(data, h, weights=None):
    """scipy's gaussian_kde with kernel standard deviation exactly h (scipy takes a factor)."""
    ref = st.gaussian_kde(data, weights=weights)
    data_std = np.sqrt(ref.covariance[0, 0]) / ref.factor
    ref.set_bandwidth(bw_method=h / data_std)
    return ref


# -- agreement with independent implementations -------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
def test_pdf_equals_scipy_gaussian_kde(sample, weighted):
    h = 0.37
    weights = np.random.default_rng(0).uniform(size=sample.size) if weighted else None
    x = np.linspace(sample.min() - 5, sample.max() + 5, 500)
    ours = GaussianKDE(bandwidth=h).fit(sample, sample_weight=weights)
    ref = scipy_kde(sample, h, weights)
    np.testing.assert_allclose(ours.pdf(x), ref.evaluate(x), rtol=1e-12)
    np.testing.assert_allclose(ours.logpdf(x), ref.logpdf(x), rtol=1e-12)


def test_cdf_equals_scipy_integrate_box(sample):
    h = 0.37
    x = np.linspace(sample.min() - 3, sample.max() + 3, 60)
    ref = scipy_kde(sample, h)
    expected = np.array([ref.integrate_box_1d(-np.inf, v) for v in x])
    np.testing.assert_allclose(GaussianKDE(bandwidth=h).fit(sample).cdf(x), expected, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("weighted", [False, True])
def test_logpdf_equals_sklearn_kernel_density(sample, weighted):
    h = 0.37
    weights = np.random.default_rng(1).uniform(size=sample.size) if weighted else None
    x = np.linspace(sample.min() - 30, sample.max() + 30, 400)
    ref = KernelDensity(bandwidth=h, kernel="gaussian", algorithm="kd_tree", rtol=0, atol=0)
    ref.fit(sample[:, None], sample_weight=weights)
    ours = GaussianKDE(bandwidth=h).fit(sample, sample_weight=weights)
    np.testing.assert_allclose(ours.logpdf(x), ref.score_samples(x[:, None]), rtol=1e-12)


def test_density_and_cdf_equal_statsmodels_on_its_grid(sample):
    h = 0.37
    ref = KDEUnivariate(sample)
    ref.fit(bw=h, kernel="gau", fft=False, gridsize=200)
    ours = GaussianKDE(bandwidth=h).fit(sample)
    np.testing.assert_allclose(ours.pdf(ref.support), ref.density, rtol=1e-12)
    # statsmodels integrates its density numerically (quad), accurate to ~1e-14 absolute.
    np.testing.assert_allclose(ours.cdf(ref.support), ref.cdf, rtol=0, atol=1e-12)


def test_integer_weights_equal_repeated_points():
    rng = np.random.default_rng(5)
    data = rng.normal(size=30)
    counts = rng.integers(0, 4, size=30)
    counts[0] = 2  # at least one positive count
    x = np.concatenate([np.linspace(-8, 8, 101), [-60.0, 60.0]])
    weighted = GaussianKDE(bandwidth=0.4).fit(data, sample_weight=counts)
    repeated = GaussianKDE(bandwidth=0.4).fit(np.repeat(data, counts))
    for name in FUNCS:
        np.testing.assert_allclose(getattr(weighted, name)(x), getattr(repeated, name)(x), rtol=1e-12, err_msg=name)
    q = np.array([1e-12, 0.2, 0.7, 1 - 1e-9])
    np.testing.assert_allclose(weighted.ppf(q), repeated.ppf(q), rtol=1e-12)


def test_single_point_with_float_bandwidth_is_a_normal():
    kde = GaussianKDE(bandwidth=0.8).fit([2.5])
    x = np.linspace(-30, 30, 121)
    dist = st.norm(2.5, 0.8)
    for name in FUNCS:
        np.testing.assert_allclose(getattr(kde, name)(x), getattr(dist, name)(x), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(kde.ppf([0.1, 0.9]), dist.ppf([0.1, 0.9]), rtol=1e-13)


def test_far_tails_match_mpmath():
    data = np.array([-1.0, 0.2, 0.5, 3.0, 4.5])
    h = 0.6
    kde = GaussianKDE(bandwidth=h).fit(data)
    x = np.array([-1e5, -600.0, -50.0, -20.0, -3.0, 1.0, 8.0, 30.0, 700.0, 1e5])
    ref = mp_reference(x, data, np.full(data.size, h), np.ones(data.size))
    for name in ("logpdf", "logcdf", "logsf"):
        assert_close_or_exact_limit(getattr(kde, name)(x), ref[name], 1e-12, name)
    for name in ("pdf", "cdf", "sf"):
        assert_close_or_exact_limit(getattr(kde, name)(x), ref[name], 5e-13, name)


def test_huge_inputs_stay_finite_where_representable_and_never_nan(sample):
    kde = GaussianKDE(bandwidth=0.5).fit(sample)
    x = np.array([-1e300, -1e150, -1e20, 1e20, 1e150, 1e300])
    for name in FUNCS:
        assert not np.isnan(getattr(kde, name)(x)).any()
    log_F = kde.logcdf(x)
    assert np.all(np.isfinite(log_F[1:3])) and np.all(np.diff(log_F) >= 0)
    assert log_F[0] == -np.inf  # the true value, about -2e600, is below the double range
    np.testing.assert_array_equal(kde.logsf(x[:3]), 0.0)


# -- quantiles ---------------------------------------------------------------------------------


def test_ppf_round_trip_to_1e_10_for_z_within_37(sample):
    h = 0.5
    kde = GaussianKDE(bandwidth=h).fit(sample)
    x = np.linspace(sample.min() - 37 * h, sample.max() + 37 * h, 2001)
    F, log_S = kde.cdf(x), kde.logsf(x)
    lower = F <= 0.5
    np.testing.assert_allclose(kde.ppf(F[lower]), x[lower], rtol=0, atol=1e-10)
    np.testing.assert_allclose(kde.ppf_log(log_S[~lower], upper=True), x[~lower], rtol=0, atol=1e-10)
    # Far beyond, where F < 1e-300, the log-space inverse still recovers x.
    far = np.array([-1e4, -500.0, 500.0, 1e4])
    np.testing.assert_allclose(kde.ppf_log(kde.logcdf(far[:2])), far[:2], rtol=1e-12)
    np.testing.assert_allclose(kde.ppf_log(kde.logsf(far[2:]), upper=True), far[2:], rtol=1e-12)


def test_ppf_is_increasing_and_ends_at_infinities(sample):
    kde = GaussianKDE(bandwidth="silverman").fit(sample)
    q = np.array([0.0, 1e-300, 1e-10, 0.25, 0.5, 0.75, 1 - 1e-10, 1.0])
    x = kde.ppf(q)
    assert x[0] == -np.inf and x[-1] == np.inf
    assert np.all(np.diff(x) > 0)


# -- binned fast path --------------------------------------------------------------------------


def _binned_sample(kind, rng, n=3000):
    if kind == "normal":
        return rng.normal(size=n)
    if kind == "bimodal":
        return np.concatenate([rng.normal(-4, 0.3, n // 3), rng.normal(2, 1.5, n - n // 3)])
    if kind == "heavy":
        return rng.standard_t(df=2, size=n)
    return rng.exponential(size=n)


@pytest.mark.parametrize("kind", ["normal", "bimodal", "heavy", "exponential"])
@pytest.mark.parametrize("tol", [1e-4, 1e-7, 1e-9])
def test_binned_error_within_tol_of_exact(kind, tol):
    rng = np.random.default_rng([len(kind), round(-np.log10(tol))])
    data = _binned_sample(kind, rng)
    weights = rng.uniform(size=data.size) if kind == "normal" else None
    exact = GaussianKDE(bandwidth="scott").fit(data, sample_weight=weights)
    binned = GaussianKDE(bandwidth="scott", method="binned", tol=tol).fit(data, sample_weight=weights)
    x = np.concatenate([rng.uniform(data.min() - 5, data.max() + 5, 2000), data[:200]])
    pdf = exact.pdf(x)
    assert np.max(np.abs(binned.pdf(x) - pdf)) <= tol * pdf.max()
    assert np.max(np.abs(binned.cdf(x) - exact.cdf(x))) <= tol
    assert np.max(np.abs(binned.sf(x) - exact.sf(x))) <= tol
    # Log-space methods and quantiles stay exact under method="binned".
    np.testing.assert_array_equal(binned.logcdf(x[:50]), exact.logcdf(x[:50]))
    np.testing.assert_array_equal(binned.ppf([0.1, 0.6]), exact.ppf([0.1, 0.6]))


def test_binned_spacing_follows_documented_bound():
    h, tol = 0.3, 1e-8
    delta, reach = binned_spacing(h, tol)
    phi1 = np.exp(-0.5) / np.sqrt(2 * np.pi)
    assert delta**2 * phi1 / (4 * h**2) <= tol / 2 * (1 + 1e-12)
    assert delta**2 * 4 * np.exp(-1.25) * np.sqrt(2) / (4 * h**2) <= tol / 2 * (1 + 1e-12)
    assert st.norm.sf(reach) <= tol / 4 and np.sqrt(2) * np.exp(-(reach**2) / 4) <= tol / 4 * (1 + 1e-12)


def test_binned_grid_too_large_raises_clear_error():
    data = np.array([0.0, 1e7])
    with pytest.raises(ValueError, match=r"method='binned' would need a grid of .* Use method='exact'"):
        GaussianKDE(bandwidth=1.0, method="binned", tol=1e-8).fit(data)
    assert MAX_GRID_POINTS >= 1 << 20


# -- sampling ----------------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
def test_sample_follows_the_kde(sample, weighted):
    weights = np.linspace(0.0, 1.0, sample.size) if weighted else None
    kde = GaussianKDE(bandwidth=0.6).fit(sample, sample_weight=weights)
    draws = kde.sample(4000, random_state=np.random.default_rng(7))
    assert draws.shape == (4000,)
    assert st.kstest(draws, kde.cdf).pvalue > 1e-3
    np.testing.assert_array_equal(kde.sample(10, random_state=3), kde.sample(10, random_state=3))


# -- parameters, validation and errors -------------------------------------------------------


def test_string_bandwidth_uses_the_selector(sample):
    for rule in ("scott", "silverman", " ISJ "):
        assert GaussianKDE(bandwidth=rule).fit(sample).bandwidth_ == select_bandwidth(sample, rule)
    weights = np.arange(1.0, sample.size + 1)
    fitted = GaussianKDE(bandwidth="scott").fit(sample, sample_weight=weights)
    assert fitted.bandwidth_ == select_bandwidth(sample, "scott", weights)


def test_fitted_attributes_and_clone(sample):
    weights = np.arange(sample.size, dtype=float)
    kde = GaussianKDE(bandwidth=0.5).fit(sample[:, None], sample_weight=weights)
    order = np.argsort(sample, kind="stable")
    np.testing.assert_array_equal(kde.dataset_, sample[order])
    np.testing.assert_allclose(kde.weights_, weights[order] / weights.sum())
    assert kde.n_ == sample.size and kde.bandwidth_ == 0.5 and kde.method_ == "exact"
    params = clone(kde).get_params()
    assert params["bandwidth"] == 0.5 and params["method"] == "exact" and params["tol"] == 1e-8
    assert set(params) == {"bandwidth", "method", "tol", "bounds", "boundary"}  # no data travels with clone
    assert not hasattr(clone(kde), "dataset_")


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        ([1.0, np.nan, 2.0], {}, "NaN"),
        ([1.0, np.inf, 2.0], {}, "infinite"),
        ([], {"bandwidth": 1.0}, "at least 1"),
        (np.ones((3, 2)), {"bandwidth": 1.0}, "must be 1-D"),
        ([1.0], {}, "needs at least 2 data points"),
        ([2.0, 2.0, 2.0], {}, "zero spread"),
        ([1.0, 2.0], {"bandwidth": 0.0}, "positive"),
        ([1.0, 2.0], {"bandwidth": -1.0}, "positive"),
        ([1.0, 2.0], {"bandwidth": np.inf}, "positive and finite"),
        ([1.0, 2.0], {"bandwidth": True}, "positive and finite float"),
        ([1.0, 2.0], {"bandwidth": "wide"}, "choose one of 'scott'"),
        ([1.0, 2.0], {"method": "fast"}, "choose one of 'exact', 'binned'"),
        ([1.0, 2.0], {"tol": 0.0}, r"tol must lie in \[1e-12, 0.1\]"),
        ([1.0, 2.0], {"tol": "small"}, "tol must be a real number"),
        ([1.0, 2.0], {"sample_weight": [1.0, -1.0]}, "non-negative"),
        ([1.0, 2.0], {"sample_weight": [1.0]}, "one weight per point"),
    ],
)
def test_bad_fit_input_raises_value_error(data, kwargs, message):
    fit_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k == "sample_weight"}
    with pytest.raises(ValueError, match=message):
        GaussianKDE(**kwargs).fit(data, **fit_kwargs)


def test_bad_evaluation_input_raises(sample):
    kde = GaussianKDE(bandwidth=0.5).fit(sample)
    for name in FUNCS:
        with pytest.raises(ValueError, match="NaN"):
            getattr(kde, name)([0.0, np.nan])
        with pytest.raises(ValueError, match="infinite"):
            getattr(kde, name)([np.inf])
    with pytest.raises(ValueError, match=r"q must lie in \[0, 1\]"):
        kde.ppf([0.5, 1.2])
    with pytest.raises(ValueError, match="log_q must be <= 0"):
        kde.ppf_log([0.5])
    with pytest.raises(ValueError, match="n_samples must be a non-negative integer"):
        kde.sample(-1)


def test_methods_before_fit_raise_not_fitted():
    kde = GaussianKDE()
    for name in (*FUNCS, "ppf", "ppf_log", "sample"):
        with pytest.raises(NotFittedError):
            getattr(kde, name)(0.5)


def test_output_shape_follows_input(sample):
    kde = GaussianKDE(bandwidth=0.5).fit(sample)
    x = np.zeros((2, 3, 4))
    for name in FUNCS:
        assert getattr(kde, name)(x).shape == (2, 3, 4)
        assert np.ndim(getattr(kde, name)(0.0)) == 0
    binned = GaussianKDE(bandwidth=0.5, method="binned").fit(sample)
    assert binned.pdf(x).shape == (2, 3, 4) and np.ndim(binned.cdf(0.0)) == 0


# -- properties --------------------------------------------------------------------------------

data_lists = hs.lists(hs.floats(-100, 100), min_size=1, max_size=20)


@settings(max_examples=examples(50), deadline=None)
@given(data_lists, hs.floats(1e-2, 10.0), hs.lists(hs.floats(-1e4, 1e4), min_size=2, max_size=20))
def test_property_cdf_bounded_monotone_and_log_consistent(data, h, xs):
    kde = GaussianKDE(bandwidth=h).fit(data)
    x = np.sort(xs)
    F, log_F, log_S = kde.cdf(x), kde.logcdf(x), kde.logsf(x)
    assert np.all((F >= 0) & (F <= 1))
    assert np.all(np.diff(F) >= -8 * np.finfo(float).eps * F[1:])
    assert np.all(log_F <= 0) and np.all(log_S <= 0)
    np.testing.assert_allclose(np.logaddexp(log_F, log_S), 0.0, atol=1e-15)


@settings(max_examples=examples(50), deadline=None)
@given(data_lists, hs.floats(0.05, 5.0), hs.floats(-30.0, 30.0))
@example(data=[0.0, 53.0], h=0.5, u=8.5)  # F(x) rounds to the plateau 0.5; ppf gives its midpoint
def test_property_ppf_inverts_cdf(data, h, u):
    kde = GaussianKDE(bandwidth=h).fit(data)
    x = np.array([kde.dataset_[0] + u * h])
    F = kde.cdf(x)
    if not 1e-300 < F[0] <= 0.5:
        return
    back = kde.ppf(F)[0]
    # back is a quantile of q = F(x): F(back) = q up to rounding of q and the root finder's
    # x tolerance (1e-10 relative) times the slope there
    eps = np.finfo(float).eps
    residual = abs(kde.cdf(back) - F[0])
    assert residual <= 8 * eps * F[0] + kde.pdf(back) * 1e-10 * (1 + abs(back))
    # It is x itself where x is pinned down, to ulp(q) / f(x), within a fraction of a kernel.
    # In a gap between far-apart points F(x) can round to the plateau value (e.g. 0.5 between
    # two points), and every point of the plateau is then a quantile of it.
    slack = 16 * eps * F[0] / kde.pdf(x)[0]
    if slack < 0.1 * h:
        assert abs(back - x[0]) <= 1e-10 * (1 + abs(x[0])) + slack


# --------------------------------------------------------------------------- pointwise uncertainty
def test_pdf_std_equals_the_weighted_plug_in_sum_by_hand():
    rng = np.random.default_rng(3)
    data, w = rng.normal(size=80), rng.uniform(0.2, 2.0, 80)
    h, x = 0.35, np.linspace(-3.0, 3.0, 13)
    kde = GaussianKDE(bandwidth=h).fit(data, sample_weight=w)
    wn = w / w.sum()
    kernel = st.norm.pdf(x[:, None], data[None, :], h)
    mean, square = kernel @ wn, (kernel**2) @ wn
    np.testing.assert_allclose(kde.pdf_std(x), np.sqrt((square - mean**2) * np.sum(wn**2)), rtol=1e-12)
    lower, upper = kde.pdf_band(x, level=0.9)
    np.testing.assert_allclose(upper - kde.pdf(x), st.norm.ppf(0.95) * kde.pdf_std(x), rtol=1e-13)
    np.testing.assert_allclose(kde.pdf(x) - lower, upper - kde.pdf(x), rtol=1e-13)
    assert kde.pdf_std(np.zeros((2, 3))).shape == (2, 3) and np.shape(kde.pdf_std(0.1)) == ()
    for bad in (0.0, 1.0, np.nan):
        with pytest.raises(ValueError, match="level"):
            kde.pdf_band(x, level=bad)
    with pytest.raises(ValueError, match="NaN"):
        kde.pdf_std([np.nan])
    with pytest.raises(NotFittedError):
        GaussianKDE().pdf_std(0.0)


def test_pdf_variance_matches_monte_carlo_on_a_known_truth():
    # Truth N(0, 1): (K_h * f)(x) = phi(x; 0, 1 + h^2) and (K_h^2 * f)(x) = phi(x; 0, 1 + h^2/2)
    # / (2 sqrt(pi) h). The Monte Carlo variance of the KDE over 1500 samples of n = 150 must
    # match this closed form, and the mean of pdf_std^2 must match the Monte Carlo variance,
    # each within 4 standard errors.
    n, h, reps = 150, 0.4, 1500
    x = np.array([-2.0, -0.7, 0.0, 1.2, 2.5])
    rng = np.random.default_rng(12)
    values, estimates = np.empty((reps, x.size)), np.empty((reps, x.size))
    for r in range(reps):
        kde = GaussianKDE(bandwidth=h).fit(rng.standard_normal(n))
        values[r], estimates[r] = kde.pdf(x), kde.pdf_std(x) ** 2
    truth = (st.norm.pdf(x, 0, np.sqrt(1 + h**2 / 2)) / (2 * np.sqrt(np.pi) * h)
             - st.norm.pdf(x, 0, np.sqrt(1 + h**2)) ** 2) / n
    mc_var = values.var(axis=0, ddof=1)
    centred = values - values.mean(axis=0)
    se_var = np.sqrt((np.mean(centred**4, axis=0) - mc_var**2) / reps)
    assert np.all(np.abs(mc_var - truth) < 4 * se_var)
    se_est = estimates.std(axis=0, ddof=1) / np.sqrt(reps)
    assert np.all(np.abs(estimates.mean(axis=0) - mc_var) < 4 * np.hypot(se_var, se_est))
