"""Tests for kdelib.normal_mixture against mpmath, scipy.stats.norm and invariants."""

import mpmath as mp
import numpy as np
import pytest
import scipy.stats as st
from scipy.special import ndtri_exp
from hypothesis import given, settings
from hypothesis import strategies as hs

from hypothesis_profiles import examples
from kdelib import normal_mixture as nm
from mpmath_reference import FUNCS, assert_close_or_exact_limit, mp_log_ndtr, mp_reference

@pytest.fixture(scope="module")
def mixture():
    rng = np.random.default_rng(20261123)
    k = 5
    means = rng.normal(scale=3.0, size=k)
    scales = rng.uniform(0.3, 2.0, size=k)
    weights = rng.uniform(0.1, 1.0, size=k)
    weights /= weights.sum()
    return means, scales, weights


TAIL_X = np.array(
    [-1e6, -1e4, -2e3, -400.0, -60.0, -45.0, -38.0, -20.0, -7.0, -1.0, 0.0, 0.4, 3.0, 9.0,
     21.0, 39.0, 50.0, 400.0, 2e3, 1e4, 1e6]
)


@pytest.mark.parametrize("equal", [False, True], ids=["weighted-varied-scales", "equal-one-scale"])
def test_all_functions_match_mpmath_in_tails(mixture, equal):
    means, scales, weights = mixture
    if equal:
        scales, weights = 0.8, np.full(means.size, 1.0 / means.size)
        log_weights = None
    else:
        log_weights = np.log(weights)
    ref = mp_reference(TAIL_X, means, scales, weights)
    for name in ("logcdf", "logsf", "logpdf"):
        got = getattr(nm, f"mixture_{name}")(TAIL_X, means, scales, log_weights)
        assert_close_or_exact_limit(got, ref[name], 1e-12, name)
    for name in ("cdf", "sf", "pdf"):
        got = getattr(nm, f"mixture_{name}")(TAIL_X, means, scales, log_weights)
        # exp of a rounded -z^2/2 carries a relative error of about z^2 * eps (conditioning).
        assert_close_or_exact_limit(got, ref[name], 5e-13, name)


def test_switch_to_log_space_is_seamless(mixture):
    """Points on both sides of the 1e-280 switch agree with mpmath to 1e-12 relative."""
    means, scales, weights = mixture
    log_weights = np.log(weights)
    # Sweep x through the region where the lower-tail sum and the density cross 1e-280.
    x_cdf = nm.mixture_ppf_log(np.log(1e-280) + np.linspace(-3, 3, 13), means, scales, log_weights)
    x_pdf = np.linspace(means.min() - 39 * scales.max(), means.min() - 33 * scales.max(), 13)
    x = np.concatenate([x_cdf, x_pdf])
    ref = mp_reference(x, means, scales, weights)
    for name in ("logcdf", "logpdf", "logsf"):
        got = getattr(nm, f"mixture_{name}")(x, means, scales, log_weights)
        assert_close_or_exact_limit(got, ref[name], 1e-12, name)
    lower, _ = nm._Mixture(means, scales, log_weights).raw_tails(x_cdf)
    assert np.any(lower < nm._SAFE_SUM) and np.any(lower > nm._SAFE_SUM)


def test_single_component_equals_scipy_norm():
    x = np.concatenate([np.linspace(-40, 40, 161), [-1e3, 1e3]])
    loc, scale = 1.5, 0.7
    dist = st.norm(loc, scale)
    for name in FUNCS:
        got = getattr(nm, f"mixture_{name}")(x, np.array([loc]), scale)
        # Both sides carry the z^2 * eps conditioning of exp/erfc in the deep tails.
        np.testing.assert_allclose(got, getattr(dist, name)(x), rtol=1e-12, atol=1e-300, err_msg=name)


def test_both_tails_are_complements(mixture):
    means, scales, weights = mixture
    x = np.linspace(-80, 80, 801)
    args = (means, scales, np.log(weights))
    np.testing.assert_allclose(nm.mixture_cdf(x, *args) + nm.mixture_sf(x, *args), 1.0, rtol=0, atol=4e-16)
    total = np.logaddexp(nm.mixture_logcdf(x, *args), nm.mixture_logsf(x, *args))
    np.testing.assert_allclose(total, 0.0, rtol=0, atol=4e-16)


def test_component_order_and_zero_weights_do_not_matter(mixture):
    means, scales, weights = mixture
    x = np.linspace(-50, 50, 101)
    perm = np.random.default_rng(1).permutation(means.size)
    padded_means = np.append(means, [0.0, 100.0])
    padded_scales = np.append(scales, [0.5, 1.0])
    with np.errstate(divide="ignore"):
        padded_log_w = np.log(np.append(weights, [0.0, 0.0]))
    for name in FUNCS:
        func = getattr(nm, f"mixture_{name}")
        base = func(x, means, scales, np.log(weights))
        np.testing.assert_allclose(func(x, means[perm], scales[perm], np.log(weights[perm])), base, rtol=1e-14)
        np.testing.assert_allclose(func(x, padded_means, padded_scales, padded_log_w), base, rtol=1e-14)


def test_blocked_threaded_path_equals_single_block(monkeypatch):
    rng = np.random.default_rng(3)
    means, x = rng.normal(size=3000), rng.normal(scale=3, size=700)
    log_w = np.log(rng.uniform(size=3000))
    log_w -= np.logaddexp.reduce(log_w)
    single = {name: getattr(nm, f"mixture_{name}")(x, means, 0.2, log_w) for name in FUNCS}
    monkeypatch.setattr(nm, "_BLOCK_ELEMENTS", 4096)
    monkeypatch.setattr(nm, "_PARALLEL_MIN_TERMS", 1)
    monkeypatch.setattr(nm, "n_workers", lambda: 3)
    for name in FUNCS:
        blocked = getattr(nm, f"mixture_{name}")(x, means, 0.2, log_w)
        np.testing.assert_allclose(blocked, single[name], rtol=1e-13, err_msg=name)


def test_extreme_inputs_give_exact_limits_without_nan(mixture):
    means, scales, weights = mixture
    x = np.array([-1.7e308, -1e300, 1e300, 1.7e308])
    for log_weights, s in [(np.log(weights), scales), (None, 1e-300), (None, 1e300)]:
        with np.errstate(all="raise"):
            vals = {name: getattr(nm, f"mixture_{name}")(x, means, s, log_weights) for name in FUNCS}
        assert not any(np.isnan(v).any() for v in vals.values())
        if np.max(s) < 1e300:
            np.testing.assert_array_equal(vals["cdf"], [0, 0, 1, 1])
            np.testing.assert_array_equal(vals["logsf"][:2], [0, 0])
            np.testing.assert_array_equal(vals["logcdf"][:2], [-np.inf, -np.inf])
            np.testing.assert_array_equal(vals["pdf"], 0.0)
    # With a huge scale the tails are moderate: compare with scipy.stats.norm.
    got = nm.mixture_logcdf(x, np.array([0.0]), 1e300)
    np.testing.assert_allclose(got, st.norm(0, 1e300).logcdf(x), rtol=1e-13)


def test_tiny_scale_uses_division_without_nan():
    # 1/s**2 overflows for s = 1e-200; the division route must still be exact.
    s = 1e-200
    x = np.array([-3e-200, 0.0, 1e-200, 5e-199, 1.0])
    for name in FUNCS:
        got = getattr(nm, f"mixture_{name}")(x, np.array([0.0]), s)
        with np.errstate(over="ignore"):  # scipy squares x / s = 1e200
            ref = getattr(st.norm, name)(x / s) - (np.log(s) if name == "logpdf" else 0.0)
            if name == "pdf":
                ref = st.norm.pdf(x / s) / s
        np.testing.assert_allclose(got, ref, rtol=1e-13, err_msg=name)


def test_shape_contract(mixture):
    means, scales, weights = mixture
    x = np.linspace(-3, 3, 6).reshape(2, 3)
    for name in FUNCS:
        func = getattr(nm, f"mixture_{name}")
        assert func(x, means, scales, np.log(weights)).shape == (2, 3)
        scalar = func(0.5, means, scales, np.log(weights))
        assert np.ndim(scalar) == 0
        assert scalar == func(np.array([0.5]), means, scales, np.log(weights))[0]
    assert nm.mixture_ppf(np.full((2, 2), 0.3), means, scales).shape == (2, 2)


# -- quantiles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("equal", [False, True])
def test_ppf_inverts_cdf_in_lower_half_and_sf_in_upper(mixture, equal):
    means, scales, weights = mixture
    if equal:
        scales, log_weights = 0.6, None
    else:
        log_weights = np.log(weights)
    x = np.linspace(-30, 30, 601)
    eps = np.finfo(float).eps
    pdf = nm.mixture_pdf(x, means, scales, log_weights)
    F = nm.mixture_cdf(x, means, scales, log_weights)
    lower = (F > 1e-300) & (F <= 0.5)  # subnormal q carry only a few significant bits
    back = nm.mixture_ppf(F[lower], means, scales, log_weights)
    # x is determined by q only up to (relative error of q) * F / f: large in flat gaps
    # between components, 1e-10 absolute or better where the density is not tiny.
    bound = 1e-10 + 16 * eps * F[lower] / pdf[lower]
    assert np.all(np.abs(back - x[lower]) <= bound)
    assert np.mean(np.abs(back - x[lower]) <= 1e-10) > 0.9
    S = nm.mixture_sf(x, means, scales, log_weights)
    upper = (S <= 0.5) & (1 - S < 1)
    back = nm.mixture_ppf(1 - S[upper], means, scales, log_weights)
    # 1 - S is rounded to a multiple of eps/2, so only that absolute accuracy carries over.
    bound = 1e-10 + 4 * eps / pdf[upper]
    assert np.all(np.abs(back - x[upper]) <= bound)


def test_ppf_log_round_trips_far_into_both_tails(mixture):
    means, scales, weights = mixture
    args = (means, scales, np.log(weights))
    x = np.concatenate([-np.logspace(0, 6, 40), np.logspace(0, 6, 40)])
    log_F, log_S = nm.mixture_logcdf(x, *args), nm.mixture_logsf(x, *args)
    lower, upper = log_F < -1e-300, log_S < -1e-300  # a log probability of -0.0 means q = 1
    np.testing.assert_allclose(nm.mixture_ppf_log(log_F[lower], *args), x[lower], rtol=1e-12)
    np.testing.assert_allclose(nm.mixture_ppf_log(log_S[upper], *args, upper=True), x[upper], rtol=1e-12)


def test_ppf_of_single_component_equals_scipy():
    q = np.array([1e-300, 1e-20, 0.01, 0.3, 0.5, 0.8, 1 - 1e-15])
    np.testing.assert_allclose(nm.mixture_ppf(q, np.array([2.0]), 3.0), st.norm(2, 3).ppf(q), rtol=1e-13)
    log_q = np.array([-1e5, -700.0, -1.0, -1e-30])
    got = nm.mixture_ppf_log(log_q, np.array([2.0]), 3.0)
    # scipy's ndtri_exp is good to about 5e-13 relative near log q = -1e5 (checked with mpmath).
    np.testing.assert_allclose(got, 2 + 3 * ndtri_exp(log_q), rtol=1e-12)
    upper = nm.mixture_ppf_log(log_q, np.array([2.0]), 3.0, upper=True)
    np.testing.assert_allclose(upper, 2 - 3 * ndtri_exp(log_q), rtol=1e-12)
    with mp.workdps(40):
        exact = mp.findroot(lambda t: mp_log_ndtr(t) - mp.mpf(-1e5), mp.mpf(-447.2))
    np.testing.assert_allclose(got[0], 2 + 3 * float(exact), rtol=1e-15)


def test_ppf_endpoints_and_bad_probabilities(mixture):
    means, scales, weights = mixture
    np.testing.assert_array_equal(nm.mixture_ppf([0.0, 1.0], means, scales), [-np.inf, np.inf])
    np.testing.assert_array_equal(nm.mixture_ppf_log([-np.inf, 0.0], means, scales), [-np.inf, np.inf])
    np.testing.assert_array_equal(nm.mixture_ppf_log([-np.inf, 0.0], means, scales, upper=True), [np.inf, -np.inf])
    with pytest.raises(ValueError, match=r"q must lie in \[0, 1\]"):
        nm.mixture_ppf([0.5, 1.5], means, scales)
    with pytest.raises(ValueError, match=r"q must lie in \[0, 1\]"):
        nm.mixture_ppf([np.nan], means, scales)
    with pytest.raises(ValueError, match="log_q must be <= 0"):
        nm.mixture_ppf_log([0.1], means, scales)


def test_ppf_raises_instead_of_returning_unconverged(mixture, monkeypatch):
    means, scales, weights = mixture
    monkeypatch.setattr(nm, "_PPF_MAXITER", 2)
    with pytest.raises(FloatingPointError, match=r"did not converge for log q = "):
        nm.mixture_ppf([0.2, 0.3], means, scales, np.log(weights))


def test_mismatched_component_arrays_raise():
    with pytest.raises(ValueError, match="scales has 2 entries"):
        nm.mixture_pdf(0.0, np.zeros(3), np.ones(2))
    with pytest.raises(ValueError, match="log_weights has 2 entries"):
        nm.mixture_cdf(0.0, np.zeros(3), 1.0, np.zeros(2))
    with pytest.raises(ValueError, match="at least one component"):
        nm.mixture_cdf(0.0, np.zeros(0), 1.0)


# -- properties --------------------------------------------------------------------------------

finite_x = hs.floats(-1e6, 1e6, allow_nan=False)


@hs.composite
def mixtures(draw):
    k = draw(hs.integers(1, 6))
    means = np.array(draw(hs.lists(hs.floats(-50, 50), min_size=k, max_size=k)))
    scales = np.array(draw(hs.lists(hs.floats(1e-3, 1e2), min_size=k, max_size=k)))
    weights = np.array(draw(hs.lists(hs.floats(0.01, 1.0), min_size=k, max_size=k)))
    log_w = np.log(weights) - np.log(weights.sum())
    return means, scales, log_w


def test_negative_zero_is_zero():
    args = (np.array([0.0, -0.0]), 1.0)
    np.testing.assert_array_equal(nm.mixture_cdf([-0.0, 0.0], *args), [0.5, 0.5])
    np.testing.assert_array_equal(nm.mixture_logsf([-0.0, 0.0], *args), [np.log(0.5)] * 2)


@settings(max_examples=examples(60), deadline=None)
@given(mixtures(), hs.lists(finite_x, min_size=1, max_size=30))
def test_property_bounds_monotone_and_consistent(mix, xs):
    x = np.sort(np.array(xs))
    F, S = nm.mixture_cdf(x, *mix), nm.mixture_sf(x, *mix)
    log_F, log_S = nm.mixture_logcdf(x, *mix), nm.mixture_logsf(x, *mix)
    assert np.all((F >= 0) & (F <= 1)) and np.all((S >= 0) & (S <= 1))
    assert np.all(log_F <= 0) and np.all(log_S <= 0)
    assert not np.isnan(log_F).any() and not np.isnan(log_S).any()
    # Non-decreasing up to a few ulps of rounding in the sums.
    assert np.all(np.diff(F) >= -8 * np.finfo(float).eps * F[1:])
    assert np.all(np.diff(log_F) >= -8 * np.finfo(float).eps * np.abs(log_F[:-1]))
    assert np.all(np.diff(log_S) <= 8 * np.finfo(float).eps * np.abs(log_S[1:]))
    np.testing.assert_allclose(np.logaddexp(log_F, log_S), 0.0, atol=1e-15)


@settings(max_examples=examples(60), deadline=None)
@given(mixtures(), hs.floats(-60, 60))
def test_property_ppf_log_inverts_logcdf(mix, u):
    means, scales, log_w = mix
    x = np.array([means[0] + u * scales[0]])
    log_F = nm.mixture_logcdf(x, *mix)
    log_S = nm.mixture_logsf(x, *mix)
    use_upper = log_S[0] < log_F[0]
    log_q = log_S if use_upper else log_F
    if log_q[0] == 0 or log_q[0] == -np.inf:
        return
    back = nm.mixture_ppf_log(log_q, *mix, upper=bool(use_upper))
    # The root satisfies the equation to a few ulps of log q plus the slope times the
    # root finder's x tolerance (4 ulps of x) ...
    eps = np.finfo(float).eps
    log_tail = nm.mixture_logsf if use_upper else nm.mixture_logcdf
    residual = abs(log_tail(back, *mix)[0] - log_q[0])
    slope = np.exp(nm.mixture_logpdf(back, *mix)[0] - log_q[0])
    assert residual <= 16 * eps * max(1.0, abs(log_q[0])) + slope * 8 * eps * (abs(back[0]) + scales.min())
    # ... and x is recovered up to ulp(log q) / (d log q / dx) = ulp(log q) * q / f(x) where that
    # linearisation holds (not in flat gaps between far-apart components).
    log_f = nm.mixture_logpdf(x, *mix)
    log_conditioning = np.log(16 * eps * max(1.0, abs(log_q[0]))) + log_q[0] - log_f[0]
    if log_conditioning < np.log(1e-8 * scales.min()):
        conditioning = np.exp(log_conditioning)
        assert abs(back[0] - x[0]) <= 1e-12 * (abs(x[0]) + scales.max()) + 4 * conditioning
