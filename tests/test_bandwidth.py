"""Tests for kdelib.bandwidth: textbook formulas by hand, KDEpy's ISJ, the true LOO optimum."""

import os
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from KDEpy.bw_selection import improved_sheather_jones as kdepy_isj
from scipy.special import logsumexp
from scipy.stats import norm
from sklearn.neighbors import KernelDensity

from hypothesis_profiles import examples
from kdelib import bandwidth as bw
from kdelib.bandwidth import (
    BANDWIDTH_SELECTORS,
    cv_bandwidth,
    cv_log_likelihood,
    isj_bandwidth,
    scott_bandwidth,
    select_bandwidth,
    silverman_bandwidth,
    sj_bandwidth,
)


def normal_sample(n, seed):
    return np.random.default_rng(seed).standard_normal(n)


def bimodal_sample(n, seed):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(-3.0, 1.0, n // 2), rng.normal(3.0, 0.5, n - n // 2)])


# --------------------------------------------------------------------------- Scott and Silverman
@pytest.mark.parametrize("n", [2, 7, 100, 5000])
def test_scott_and_silverman_equal_the_textbook_formulas(n):
    x = np.random.default_rng(n).gamma(2.0, size=n)
    sigma = np.std(x, ddof=1)
    iqr = np.percentile(x, 75) - np.percentile(x, 25)
    assert scott_bandwidth(x) == pytest.approx((4 / 3) ** 0.2 * sigma * n**-0.2, rel=1e-14)
    expected = 0.9 * min(sigma, iqr / 1.34) * n**-0.2
    assert silverman_bandwidth(x) == pytest.approx(expected, rel=1e-14)


def test_silverman_uses_the_iqr_branch_for_heavy_tails():
    x = np.random.default_rng(3).standard_cauchy(400)
    iqr = np.percentile(x, 75) - np.percentile(x, 25)
    assert iqr / 1.34 < np.std(x, ddof=1)
    assert silverman_bandwidth(x) == pytest.approx(0.9 * iqr / 1.34 * 400**-0.2, rel=1e-14)


def test_weighted_rules_use_weighted_moments_and_effective_size():
    rng = np.random.default_rng(4)
    x, w = rng.normal(size=300), rng.uniform(0.1, 2.0, size=300)
    n_eff = w.sum() ** 2 / np.sum(w**2)
    sigma = np.sqrt(np.cov(x, aweights=w))  # numpy's unbiased weighted variance
    assert scott_bandwidth(x, w) == pytest.approx((4 / 3) ** 0.2 * sigma * n_eff**-0.2, rel=1e-13)
    # Equal weights, and weights on any scale, reproduce the unweighted rules.
    for rule in (scott_bandwidth, silverman_bandwidth, isj_bandwidth):
        assert rule(x, np.full(300, 7.0)) == pytest.approx(rule(x), rel=1e-12)
        assert rule(x, 3.0 * w) == pytest.approx(rule(x, w), rel=1e-12)


def test_zero_weight_points_are_ignored():
    rng = np.random.default_rng(5)
    x = rng.normal(size=200)
    w = np.where(np.arange(200) < 150, 1.0, 0.0)
    for rule in (scott_bandwidth, silverman_bandwidth, isj_bandwidth):
        assert rule(x, w) == pytest.approx(rule(x[:150]), rel=1e-12)


def test_weighted_quantile_reduces_to_numpy_linear():
    x = np.random.default_rng(6).normal(size=41)
    q = np.linspace(0, 1, 17)
    equal = bw.weighted_quantile(x, q, np.full(41, 1 / 41))
    np.testing.assert_allclose(equal, np.percentile(x, 100 * q), rtol=1e-13, atol=1e-14)


def scott_spread(x):
    return np.std(x, ddof=1)


def silverman_spread(x):
    return min(np.std(x, ddof=1), (np.percentile(x, 75) - np.percentile(x, 25)) / 1.34)


@pytest.mark.parametrize(
    ("rule", "spread"), [(scott_bandwidth, scott_spread), (silverman_bandwidth, silverman_spread)]
)
def test_rules_scale_as_n_to_the_minus_one_fifth(rule, spread):
    # Repeating a sample k times keeps its spread (up to ddof and percentile interpolation,
    # divided out here) and multiplies n by k.
    x = normal_sample(500, 7)
    for k in (2, 8):
        xk = np.tile(x, k)
        ratio = rule(xk) / rule(x)
        assert ratio == pytest.approx(spread(xk) / spread(x) * k**-0.2, rel=1e-12)


# --------------------------------------------------------------------------- ISJ
# KDEpy pads its grid by max(R/2, 6) and rescales by the data range R instead of the grid span
# L = 2R. For data whose range is at least 12 the grids coincide, so (after rescaling to such a
# range) KDEpy's value times L/R = 2 must equal ours. The residual differences come from
# KDEpy's brentq tolerance (xtol = 2e-12 on t ~ 1e-4, i.e. ~1e-8 relative): measured worst
# 5e-9 over these cases.
ISJ_KDEPY_RTOL = 1e-7


@pytest.mark.parametrize("n", [50, 200, 2000, 50_000])
@pytest.mark.parametrize("make", [normal_sample, bimodal_sample])
def test_isj_agrees_with_kdepy(make, n):
    x = make(n, n)
    scale = 13.0 / np.ptp(x)
    kdepy = kdepy_isj((scale * x).reshape(-1, 1)) / scale
    assert isj_bandwidth(x) == pytest.approx(2.0 * kdepy, rel=ISJ_KDEPY_RTOL)


def test_isj_is_scale_and_shift_equivariant():
    x = bimodal_sample(1000, 8)
    h = isj_bandwidth(x)
    for a, b in [(1e-3, 5.0), (1e4, -2e4)]:
        assert isj_bandwidth(a * x + b) == pytest.approx(a * h, rel=1e-9)


def test_isj_approaches_the_normal_amise_optimum_and_scales_as_n_to_the_minus_one_fifth():
    # For normal data the AMISE-optimal bandwidth is (4/3)^(1/5) n^(-1/5); ISJ estimates it.
    ns = np.array([1_000, 10_000, 100_000])
    slopes = []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        h = np.array([isj_bandwidth(rng.standard_normal(n)) for n in ns])
        np.testing.assert_allclose(h, (4 / 3) ** 0.2 * ns**-0.2, rtol=0.1)
        slopes.append(np.polyfit(np.log(ns), np.log(h), 1)[0])
    assert np.mean(slopes) == pytest.approx(-0.2, abs=0.03)


def test_isj_resolves_bimodal_data_better_than_scott():
    x = bimodal_sample(2000, 9)
    assert isj_bandwidth(x) < 0.5 * scott_bandwidth(x)


@pytest.mark.filterwarnings("ignore::RuntimeWarning:KDEpy")
def test_isj_raises_when_the_fixed_point_has_no_root():
    with pytest.raises(ValueError, match="no root.*silverman"):
        isj_bandwidth([0.0, 1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="Root finding"):  # KDEpy gives up on the same data
        kdepy_isj(np.arange(5.0).reshape(-1, 1) * 4)


def test_linear_binning_conserves_mass_and_mean():
    rng = np.random.default_rng(10)
    x, w = rng.normal(size=500), rng.uniform(size=500)
    w /= w.sum()
    grid = bw.isj_grid(x, 64)
    mass = bw.linear_binning(x, grid[0], grid[1] - grid[0], grid.size, w)
    assert mass.sum() == pytest.approx(1.0, rel=1e-14)
    assert np.dot(mass, grid) == pytest.approx(np.dot(w, x), rel=1e-12, abs=1e-13)  # linear: exact mean


# --------------------------------------------------------------------------- likelihood CV
def brute_force_loo(x, h):
    """sum_i log( 1/(n-1) sum_{j != i} phi_h(x_i - x_j) ), with scipy's normal and a mask."""
    n = x.size
    log_kernel = norm.logpdf(x[:, None], loc=x[None, :], scale=h)
    others = ~np.eye(n, dtype=bool)
    return np.sum(logsumexp(log_kernel, b=others, axis=1) - np.log(n - 1))


def test_cv_log_likelihood_matches_sklearn_leave_one_out():
    x = bimodal_sample(40, 11)
    h = 0.4
    expected = sum(
        KernelDensity(bandwidth=h).fit(np.delete(x, i)[:, None]).score_samples([[x[i]]])[0]
        for i in range(x.size)
    )
    assert cv_log_likelihood(x, h) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("make", [normal_sample, bimodal_sample])
def test_cv_bandwidth_is_the_true_leave_one_out_optimum(make):
    x = make(120, 12)
    h_cv = cv_bandwidth(x)
    grid = np.exp(np.linspace(np.log(0.02), np.log(3.0), 800))  # ~0.6% steps
    scores = np.array([brute_force_loo(x, h) for h in grid])
    best = np.argmax(scores)
    assert grid[best - 1] <= h_cv <= grid[best + 1]
    assert brute_force_loo(x, h_cv) >= scores.max() - 1e-9 * abs(scores.max())
    # Stationary in log h: a central difference of the objective vanishes.
    step = 1e-4
    slope = (brute_force_loo(x, h_cv * np.exp(step)) - brute_force_loo(x, h_cv * np.exp(-step))) / (2 * step)
    assert abs(slope) < 1e-3


def test_cv_blocked_evaluation_equals_one_block(monkeypatch):
    x = normal_sample(300, 13)
    one_block = cv_log_likelihood(x, [0.1, 0.5, 2.0])
    monkeypatch.setattr(bw, "CV_BLOCK_TERMS", 1000)  # 3 rows per block
    np.testing.assert_allclose(cv_log_likelihood(x, [0.1, 0.5, 2.0]), one_block, rtol=1e-13)


def test_cv_log_likelihood_stays_finite_when_kernels_underflow():
    # Neighbours 40 bandwidths apart: phi_h underflows to 0, the log-space sum does not.
    x = np.array([0.0, 40.0, 80.0])
    value = cv_log_likelihood(x, 1.0)
    # Ends: log((phi(40) + phi(80)) / 2), phi(80)/phi(40) = e^-2400; middle: log phi(40).
    assert value == pytest.approx(3 * norm.logpdf(40.0) - 2 * np.log(2.0), rel=1e-14)
    expected = brute_force_loo(x, 1.0)
    assert value == pytest.approx(expected, rel=1e-12)


def test_cv_weighted_equal_weights_and_weighted_objective():
    x = normal_sample(60, 14)
    assert cv_bandwidth(x, np.full(60, 2.0)) == pytest.approx(cv_bandwidth(x), rel=1e-6)
    w = np.random.default_rng(15).uniform(0.5, 1.5, 60)
    wn = w / w.sum()
    log_kernel = norm.logpdf(x[:, None], loc=x[None, :], scale=0.3) + np.log(wn)[None, :]
    np.fill_diagonal(log_kernel, -np.inf)
    expected = 60 * np.dot(wn, logsumexp(log_kernel, axis=1) - np.log1p(-wn))
    assert cv_log_likelihood(x, 0.3, w) == pytest.approx(expected, rel=1e-12)


def test_cv_rejects_ties_and_edge_maxima():
    with pytest.raises(ValueError, match="repeated values"):
        cv_bandwidth([0.0, 1.0, 1.0, 2.5, 4.0])
    x = normal_sample(100, 16)
    with pytest.raises(ValueError, match="edge of the search interval"):
        cv_bandwidth(x, bounds=(1.0, 10.0))
    with pytest.raises(ValueError, match="0 < lo < hi"):
        cv_bandwidth(x, bounds=(1.0, 0.5))


# --------------------------------------------------------------------------- registry and bad input
def test_registry_lookup_normalises_names():
    x = normal_sample(300, 17)
    assert set(BANDWIDTH_SELECTORS) == {"scott", "silverman", "isj", "cv", "sj"}
    for name, rule in BANDWIDTH_SELECTORS.items():
        assert select_bandwidth(x, f"  {name.upper()} ") == rule(x)
    with pytest.raises(ValueError, match="'scott', 'silverman', 'isj', 'cv', 'sj'"):
        select_bandwidth(x, "normal_reference")
    with pytest.raises(ValueError, match="must be a string"):
        select_bandwidth(x, 0.5)


@pytest.mark.parametrize("rule", list(BANDWIDTH_SELECTORS.values()))
@pytest.mark.parametrize(
    ("x", "match"),
    [
        ([1.0], "at least 2"),
        ([], "at least 2"),
        ([1.0, np.nan, 2.0], "NaN"),
        ([1.0, np.inf, 2.0], "infinite"),
        (np.ones((4, 2)), "1-D"),
        ([2.0, 2.0, 2.0], "zero spread.*float bandwidth"),
    ],
)
def test_bad_data_raise_with_a_fix(rule, x, match):
    with pytest.raises(ValueError, match=match):
        rule(x)


def test_silverman_rejects_zero_iqr():
    x = np.array([0.0] * 10 + [1.0, 2.0])  # std > 0 but IQR = 0
    with pytest.raises(ValueError, match=r"min\(std, IQR / 1.34\)"):
        silverman_bandwidth(x)
    assert scott_bandwidth(x) > 0


def test_bad_weights():
    with pytest.raises(ValueError, match="one weight per point"):
        scott_bandwidth([0.0, 1.0, 2.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="positive weight"):
        scott_bandwidth([0.0, 1.0, 2.0], [1.0, 0.0, 0.0])


# --------------------------------------------------------------------------- properties
data = st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=60)
small_integers = st.lists(st.integers(-50, 50).map(float), min_size=2, max_size=60)


@settings(max_examples=examples(40), deadline=None)
@given(data | small_integers, st.integers(-30, 30), st.integers(-1000, 1000))
def test_rules_are_positive_and_equivariant_or_raise(x, log2_scale, shift):
    x = np.asarray(x)
    for rule in (scott_bandwidth, silverman_bandwidth, isj_bandwidth):
        try:
            h = rule(x)
        except ValueError:
            continue  # documented refusals (zero spread, no ISJ root)
        assert np.isfinite(h) and h > 0
        # Scaling by a power of two is exact in floating point, so the result scales exactly.
        assert rule(x * 2.0**log2_scale) == pytest.approx(2.0**log2_scale * h, rel=1e-12)
        if np.all(x == np.round(x)):  # integer data: a shift is exact too
            assert rule(x + shift) == pytest.approx(h, rel=1e-9)


# --------------------------------------------------------------------------- Sheather-Jones
RSCRIPT = shutil.which("Rscript")
# R bins pairwise distances into nb bins of 1.01 * range / nb; 1e7 bins move each distance by
# at most 1e-7 of the range (h moves by about 1e-6), and tol = 1e-14 removes uniroot's default 1 % stopping tolerance.
SJ_R_RTOL = 5e-6


def r_bw_sj(x, **args):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.txt")
        np.savetxt(path, x, fmt="%.17g")
        extra = "".join(f", {k} = {v}" for k, v in args.items())
        script = f'x <- scan("{path}", quiet = TRUE); cat(sprintf("%.17g", bw.SJ(x, method = "ste"{extra})))'
        out = subprocess.run([RSCRIPT, "-e", script], capture_output=True, text=True, check=True)
    return float(out.stdout)


@pytest.mark.skipif(RSCRIPT is None, reason="Rscript not found: install Debian's r-base-core (.ci/run does) to compare with R's bw.SJ")
@pytest.mark.parametrize("make", [normal_sample, bimodal_sample, lambda n, s: np.random.default_rng(s).lognormal(size=n)],
                         ids=["normal", "bimodal", "lognormal"])
def test_sj_agrees_with_r_bw_sj_with_fine_binning(make):
    x = make(400, 3)
    h = sj_bandwidth(x)
    assert h == pytest.approx(r_bw_sj(x, nb="10000000L", tol="1e-14"), rel=SJ_R_RTOL)
    # R's defaults (1000 bins, tol = 1 % of h_max) land within about a percent.
    assert h == pytest.approx(r_bw_sj(x), rel=0.02)


def test_sj_functional_equals_the_double_sum_by_hand():
    x = np.random.default_rng(5).normal(size=37)
    alpha = 0.7
    u = (x[:, None] - x[None, :]) / alpha
    phi = np.exp(-u**2 / 2) / np.sqrt(2 * np.pi)
    phi4 = (u**4 - 6 * u**2 + 3) * phi
    phi6 = (u**6 - 15 * u**4 + 45 * u**2 - 15) * phi
    n = x.size
    assert bw.sj_functional(x, alpha, 4) == pytest.approx(phi4.sum() / (n * (n - 1) * alpha**5), rel=1e-13)
    assert bw.sj_functional(x, alpha, 6) == pytest.approx(-phi6.sum() / (n * (n - 1) * alpha**7), rel=1e-13)
    # blocks of a few rows give the same sums
    old = bw.SJ_BLOCK_TERMS
    try:
        bw.SJ_BLOCK_TERMS = 50
        assert bw.sj_functional(x, alpha, 4) == pytest.approx(phi4.sum() / (n * (n - 1) * alpha**5), rel=1e-13)
    finally:
        bw.SJ_BLOCK_TERMS = old


def test_sj_functional_has_its_analytic_mean_on_normal_data():
    # For N(0, 1) data, E phi4_alpha(X_i - X_j) = phi4(0) / (2 + alpha^2)^(5/2) off the
    # diagonal (phi4 the fourth derivative of phi), and the diagonal adds
    # phi4(0) / ((n - 1) alpha^5).
    n, alpha = 2000, 0.6
    values = [bw.sj_functional(normal_sample(n, seed), alpha) for seed in range(6)]
    c = 3 / np.sqrt(2 * np.pi)
    expected = c / (2 + alpha**2) ** 2.5 + c / ((n - 1) * alpha**5)
    assert np.mean(values) == pytest.approx(expected, abs=4 * np.std(values, ddof=1) / np.sqrt(6))


@settings(max_examples=examples(25), deadline=None)
@given(st.floats(1e-3, 1e3), st.floats(-1e3, 1e3), st.booleans())
def test_sj_is_scale_and_shift_equivariant(a, b, flip):
    x = bimodal_sample(120, 2)
    h = sj_bandwidth(x)
    a = -a if flip else a
    assert sj_bandwidth(a * x + b) == pytest.approx(abs(a) * h, rel=1e-9)


def test_sj_weights():
    x = bimodal_sample(150, 4)
    assert sj_bandwidth(x, np.full(x.size, 3.0)) == pytest.approx(sj_bandwidth(x), rel=1e-12)
    w = np.random.default_rng(0).uniform(0.5, 1.5, x.size)
    n_eff = w.sum() ** 2 / np.sum(w * w)
    h = sj_bandwidth(x, w)
    # check the weighted equation at its root: h = [2 sqrt(pi) n_eff S(alpha_2(h))]^(-1/5)
    ww = w / w.sum()
    sd = np.sqrt(np.dot(ww, (x - ww @ x) ** 2) / (1 - ww @ ww))
    q = bw.weighted_quantile(x, [0.25, 0.75], ww)
    lam = min(sd, (q[1] - q[0]) / 1.349)
    s_a = bw.sj_functional(x, 1.24 * lam * n_eff ** (-1 / 7), 4, w)
    t_b = bw.sj_functional(x, 1.23 * lam * n_eff ** (-1 / 9), 6, w)
    alpha = 1.357 * (s_a / t_b) ** (1 / 7) * h ** (5 / 7)
    assert h == pytest.approx((2 * np.sqrt(np.pi) * n_eff * bw.sj_functional(x, alpha, 4, w)) ** -0.2, rel=1e-10)
    assert select_bandwidth(x, " SJ ") == sj_bandwidth(x)
    assert BANDWIDTH_SELECTORS["sj"] is sj_bandwidth


def test_sj_is_near_the_normal_amise_optimum():
    x = normal_sample(3000, 8)
    assert sj_bandwidth(x) == pytest.approx((4 / 3) ** 0.2 * 3000**-0.2, rel=0.1)


def test_sj_bad_input():
    with pytest.raises(ValueError, match="zero spread"):
        sj_bandwidth([1.0, 1.0, 1.0])
    with pytest.raises(ValueError):
        sj_bandwidth([1.0])
    with pytest.raises(ValueError, match="NaN|finite"):
        sj_bandwidth([1.0, np.nan, 2.0])
