"""One contract suite over every one-dimensional density estimator in kdelib.

The contract is written down in :mod:`kdelib.base`. Every entry of ``DENSITY_ESTIMATORS`` runs
every test here: scikit-learn's API checks that apply to a one-variable estimator, the method
set, shapes, agreement between the ten distribution methods, normalisation by quadrature,
the derivative of the CDF, quantile round trips, sampling (a KS test against ``cdf``), sample
weights, pickling, and errors. A new estimator joins by adding one entry.
"""

import inspect
import pickle

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.differentiate import derivative
from scipy.integrate import quad
from scipy.stats import kstest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks as checks

from hypothesis_profiles import examples
from rounding import assert_monotone_up_to_rounding
from kdelib import GaussianKDE, GaussianMixtureCDF, PchipDensity, SplineDensity
from kdelib.base import DensityMixin

METHODS = ("pdf", "logpdf", "cdf", "logcdf", "sf", "logsf", "ppf", "ppf_log", "sample",
           "score_samples", "score")


def bimodal(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return np.where(rng.uniform(size=n) < 0.3, rng.normal(-2.0, 0.5, n), rng.normal(1.0, 1.0, n))


# name -> (factory of an unfitted estimator, does fit take sample_weight)
DENSITY_ESTIMATORS = {
    "kde-scott": (lambda: GaussianKDE(), True),
    "kde-isj": (lambda: GaussianKDE(bandwidth="isj"), True),
    "kde-binned": (lambda: GaussianKDE(method="binned", tol=1e-9), True),
    "mixture": (lambda: GaussianMixtureCDF(n_components=2, random_state=0), False),
    # Bounded supports just outside the data of this suite (the density is far from 0 there).
    "kde-reflect-lower": (lambda: GaussianKDE(bounds=(-3.5, np.inf)), True),
    "kde-reflect-both-sj": (lambda: GaussianKDE(bandwidth="sj", bounds=(-3.5, 3.9)), True),
    "kde-transform-upper": (lambda: GaussianKDE(bounds=(-np.inf, 3.9), boundary="transform"), True),
    "kde-transform-both": (lambda: GaussianKDE(bounds=(-3.5, 3.9), boundary="transform"), True),
    "spline": (lambda: SplineDensity(random_state=0), False),
    # The density has a kink at every knot: quad is told where they are (few knots keep the
    # suite fast; tests/test_spline.py integrates all-knot fits bin by bin).
    "pchip": (lambda: PchipDensity(max_knots=16), False),
}
# Tolerance of pdf/cdf/sf against the exact log-space methods (the binned path is within tol).
EXACTNESS = {"kde-binned": 1e-8}


@pytest.fixture(scope="module", params=list(DENSITY_ESTIMATORS))
def case(request):
    make, _ = DENSITY_ESTIMATORS[request.param]
    data = bimodal()
    return request.param, make().fit(data), data


def support(est):
    """The ends of the support, -inf and inf for an estimator on the whole line."""
    return getattr(est, "support_", (-np.inf, np.inf))


def kinks(est):
    """Points where the density's derivative jumps (spline knots), for quad's ``points``."""
    if isinstance(est, SplineDensity):
        return est.center_ + est.scale_ * est.spline_.x
    if isinstance(est, PchipDensity):
        return est.knots_
    return np.array([])


def evaluation_grid(est, data, n=201):
    lo, hi = est.ppf([1e-6, 1 - 1e-6])
    return np.linspace(lo, hi, n)


# --------------------------------------------------------------------------- scikit-learn API
# The full check_estimator feeds multi-column X, which a one-variable density rejects by design;
# these are the checks of its API contract that do not assume several features.
SKLEARN_CHECKS = (
    checks.check_no_attributes_set_in_init,
    checks.check_parameters_default_constructible,
    checks.check_get_params_invariance,
    checks.check_set_params,
    checks.check_estimator_repr,
    checks.check_estimator_cloneable,
    checks.check_do_not_raise_errors_in_init_or_set_params,
)


@pytest.mark.parametrize("name", list(DENSITY_ESTIMATORS))
@pytest.mark.parametrize("check", SKLEARN_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_api_checks(name, check):
    check(type(DENSITY_ESTIMATORS[name][0]()).__name__, DENSITY_ESTIMATORS[name][0]())


@pytest.mark.parametrize("name", list(DENSITY_ESTIMATORS))
def test_init_is_keyword_only_and_fit_returns_self(name):
    est = DENSITY_ESTIMATORS[name][0]()
    params = list(inspect.signature(type(est).__init__).parameters.values())[1:]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    assert isinstance(est, DensityMixin)
    assert est.fit(bimodal(50)) is est
    learned = [a for a in vars(est) if a.endswith("_") and not a.startswith("_")]
    assert learned, "fit sets attributes ending in _"
    assert not any(a.endswith("_") for a in vars(clone(est)))


@pytest.mark.parametrize("name", list(DENSITY_ESTIMATORS))
def test_every_method_needs_fit(name):
    est = DENSITY_ESTIMATORS[name][0]()
    for method in METHODS:
        with pytest.raises(NotFittedError):
            getattr(est, method)([0.5] if method != "sample" else 3)


def test_fit_is_idempotent_and_pickles(case):
    name, est, data = case
    x = evaluation_grid(est, data, 31)
    again = clone(est).fit(data).fit(data)
    np.testing.assert_array_equal(again.logcdf(x), est.logcdf(x))
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(restored.logpdf(x), est.logpdf(x))


# --------------------------------------------------------------------------- the method set
def test_shapes_follow_the_input(case):
    _, est, _ = case
    for method in ("pdf", "logpdf", "cdf", "logcdf", "sf", "logsf"):
        assert np.shape(getattr(est, method)(0.3)) == ()
        assert getattr(est, method)(np.zeros((2, 3))).shape == (2, 3)
    assert est.ppf(np.full((2, 2), 0.4)).shape == (2, 2)
    assert est.ppf_log(np.full((3, 1), -2.0), upper=True).shape == (3, 1)
    assert est.sample(7, random_state=0).shape == (7,)
    assert est.score_samples(np.zeros(5)).shape == (5,)
    assert isinstance(est.score(np.zeros(5)), float)


def test_methods_agree(case):
    name, est, data = case
    x = evaluation_grid(est, data)
    rtol = EXACTNESS.get(name, 1e-13)
    np.testing.assert_allclose(est.pdf(x), np.exp(est.logpdf(x)), rtol=rtol if rtol < 1e-12 else 0,
                               atol=rtol * est.pdf(x).max() if rtol >= 1e-12 else 0)
    np.testing.assert_allclose(est.cdf(x), np.exp(est.logcdf(x)), rtol=0, atol=max(rtol, 1e-15))
    np.testing.assert_allclose(est.sf(x), np.exp(est.logsf(x)), rtol=0, atol=max(rtol, 1e-15))
    np.testing.assert_allclose(np.logaddexp(est.logcdf(x), est.logsf(x)), 0.0, atol=1e-14)
    np.testing.assert_allclose(est.score_samples(data), est.logpdf(data), rtol=0, atol=0)
    assert est.score(data) == pytest.approx(np.mean(est.logpdf(data)), rel=1e-15)


def test_density_integrates_to_one_and_is_the_cdf_derivative(case):
    name, est, data = case
    lo, hi = est.ppf([1e-12, 1 - 1e-12])
    points = [p for p in kinks(est) if lo < p < hi]
    total, err = quad(lambda t: float(np.exp(est.logpdf(t))), lo, hi, limit=400, epsabs=1e-13,
                      points=points or None)
    assert total == pytest.approx(1.0 - 2e-12, abs=1e-9)
    x = evaluation_grid(est, data, 25)
    lo, hi = support(est)
    x = x[(x - lo > 0.1) & (hi - x > 0.1)]  # the difference stencil stays inside the support
    res = derivative(lambda t: np.exp(est.logcdf(t)), x, initial_step=0.05)
    assert np.all(res.success)
    np.testing.assert_allclose(res.df, np.exp(est.logpdf(x)), rtol=1e-7, atol=1e-10)


def test_quantiles_round_trip_in_both_tails(case):
    _, est, data = case
    x = evaluation_grid(est, data, 41)
    lower = est.cdf(x) <= 0.5
    np.testing.assert_allclose(est.ppf_log(est.logcdf(x[lower])), x[lower], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(est.ppf_log(est.logsf(x[~lower]), upper=True), x[~lower],
                               rtol=1e-12, atol=1e-12)
    lo, hi = support(est)
    np.testing.assert_array_equal(est.ppf([0.0, 1.0]), [lo, hi])
    if np.isfinite(lo):
        assert est.cdf(lo) == 0 and est.sf(lo) == 1
    if np.isfinite(hi):
        assert est.cdf(hi) == 1 and est.sf(hi) == 0
    far = est.ppf_log(np.array([-1e4]))
    assert np.isfinite(far[0])
    next_up = np.nextafter(lo, np.inf)
    if est.logcdf(next_up) <= -1e4:
        assert est.logcdf(far)[0] == pytest.approx(-1e4, rel=1e-12)
    else:  # F(next double above the bound) > e^-10000: the quantile is the bound, to the
        # root-finder's tolerance (4 eps relative)
        assert 0 <= far[0] - lo <= 4 * np.finfo(float).eps * abs(lo) + np.spacing(lo)


@pytest.mark.parametrize("name", DENSITY_ESTIMATORS)
def test_cdf_is_monotone_between_neighbouring_doubles(name):
    # Runs of 400 consecutive doubles around points in the body and the tails: where
    # rounding, not the function, decides the order of neighbouring values.
    est = _FITTED.setdefault(name, DENSITY_ESTIMATORS[name][0]().fit(bimodal()))
    centres = np.concatenate([np.random.default_rng(0).normal(0.0, 3.0, 150), [0.0, -1.0, 8.0]])
    steps = np.arange(-200, 200)
    x = np.unique((centres[:, None] + np.spacing(np.abs(centres) + 1e-300)[:, None] * steps))
    assert_monotone_up_to_rounding(est.logcdf(x), est.logsf(x))


@settings(max_examples=examples(40), deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=30))
@example(values=[0.0, 3.7896415476250617e-16])  # PCHIP once stepped back one ulp here
def test_cdf_is_monotone_and_tails_are_finite(values):
    x = np.sort(np.array(values))
    for name, (make, _) in DENSITY_ESTIMATORS.items():
        est = _FITTED.setdefault(name, make().fit(bimodal()))
        log_cdf, log_sf = est.logcdf(x), est.logsf(x)
        assert_monotone_up_to_rounding(log_cdf, log_sf)
        lo, hi = support(est)
        inside = (x > lo) & (x < hi)
        assert np.all(np.isfinite(log_cdf[inside])) and np.all(np.isfinite(log_sf[inside]))
        assert np.all(np.isfinite(est.logpdf(x[inside])))
        assert np.all(log_cdf[x <= lo] == -np.inf) and np.all(log_sf[x >= hi] == -np.inf)
        assert np.all(est.logpdf(x[(x < lo) | (x > hi)]) == -np.inf)


_FITTED = {}


def extreme_samples():
    """Finite samples that stress the arithmetic: magnitudes 1e-300..1e300, ties, tiny spread."""
    magnitude = st.floats(-300, 300).map(lambda e: 10.0**e)
    sign = st.sampled_from([-1.0, 1.0])
    wide = st.lists(st.tuples(sign, magnitude).map(lambda t: t[0] * t[1]), min_size=2, max_size=20)
    ties = st.lists(st.sampled_from([0.0, 1.0, 1.0, 1.0, 2.5]), min_size=2, max_size=30)
    tiny = st.tuples(st.floats(-1e6, 1e6), st.lists(st.integers(-5, 5), min_size=2, max_size=20)).map(
        lambda t: [t[0] + k * 1e-9 * max(1.0, abs(t[0])) for k in t[1]]
    )
    return st.one_of(wide, ties, tiny)


@settings(max_examples=examples(25), deadline=None)
@given(extreme_samples())
@example([-1.0, -1.0, -1.0, -10.0, -1e65, 1e48])  # spline: log F(-1) was 42 eps below log F(-10)
@example([-1.0] * 7 + [-1e63, 1e48])  # spline: S was 1 - 8e-9 at a knot (scipy 1.15: S > 1)
def test_extreme_but_finite_data_fit_cleanly_or_raise_clearly(values):
    """Every estimator either refuses the sample with a ValueError or fits a valid distribution."""
    data = np.array(values)
    probe = np.concatenate([data, [-1e300, 0.0, 1e300]])
    for name, (make, _) in DENSITY_ESTIMATORS.items():
        try:
            est = make().fit(data)
        except ValueError as err:
            assert str(err), name
            continue
        log_cdf, log_sf = est.logcdf(np.sort(probe)), est.logsf(np.sort(probe))
        assert not np.any(np.isnan(log_cdf)) and not np.any(np.isnan(log_sf)), name
        # Monotone up to the rounding of the sums: a few ulps of the values themselves.
        slack = 8 * np.finfo(float).eps * np.maximum(1.0, np.abs(log_cdf[:-1]))
        assert np.all(np.diff(log_cdf) >= -slack), name
        slack = 8 * np.finfo(float).eps * np.maximum(1.0, np.abs(log_sf[:-1]))
        assert np.all(np.diff(log_sf) <= slack), name
        assert np.all(log_cdf <= 0) and np.all(log_sf <= 0), name
        assert not np.any(np.isnan(est.logpdf(probe))), name


def test_samples_follow_the_cdf(case):
    _, est, _ = case
    draws = est.sample(4000, random_state=1)
    assert kstest(draws, est.cdf).pvalue > 1e-3
    np.testing.assert_array_equal(draws, est.sample(4000, random_state=1))


# --------------------------------------------------------------------------- weights and errors
@pytest.mark.parametrize("name", [n for n, (_, weighted) in DENSITY_ESTIMATORS.items() if weighted])
def test_integer_weights_equal_repeated_points_and_scale_freely(name):
    make, _ = DENSITY_ESTIMATORS[name]
    data = bimodal(60, seed=4)
    counts = np.random.default_rng(4).integers(0, 4, size=data.size)
    x = np.linspace(-5.0, 5.0, 41)
    bandwidth = {"bandwidth": 0.4}
    weighted = make().set_params(**bandwidth).fit(data, sample_weight=counts)
    repeated = make().set_params(**bandwidth).fit(np.repeat(data, counts))
    scaled = make().set_params(**bandwidth).fit(data, sample_weight=7.5 * counts)
    np.testing.assert_allclose(weighted.logcdf(x), repeated.logcdf(x), rtol=1e-12)
    np.testing.assert_allclose(weighted.logpdf(x), scaled.logpdf(x), rtol=1e-14)


@pytest.mark.parametrize("name", list(DENSITY_ESTIMATORS))
def test_bad_input_raises_value_error(name):
    make, weighted = DENSITY_ESTIMATORS[name]
    for bad in ([1.0, np.nan, 2.0], [1.0, np.inf, 2.0], [], np.ones((5, 2))):
        with pytest.raises(ValueError):
            make().fit(bad)
    est = make().fit(bimodal(60))
    for method in ("pdf", "logpdf", "cdf", "logcdf", "sf", "logsf", "score_samples"):
        with pytest.raises(ValueError, match="NaN"):
            getattr(est, method)([0.0, np.nan])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        est.ppf([0.5, 1.5])
    with pytest.raises(ValueError, match="<= 0"):
        est.ppf_log([0.1])
    with pytest.raises(ValueError, match="non-negative integer"):
        est.sample(-1)
    if weighted:
        with pytest.raises(ValueError, match="non-negative"):
            make().fit(bimodal(60), sample_weight=-np.ones(60))
