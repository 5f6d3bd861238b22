"""Tests for kdelib.ecdf: brute-force counts, statsmodels, the generalised inverse, bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.distributions.empirical_distribution import ECDF as StatsmodelsECDF

from hypothesis_profiles import examples
from kdelib import ECDF

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
# Small integer-valued samples make ties common.
samples = st.lists(st.integers(-5, 5).map(float) | finite, min_size=1, max_size=40)


def brute_force_cdf(x, t):
    return np.array([np.mean(np.asarray(x) <= ti) for ti in np.ravel(t)])


def brute_force_ppf(x, q):
    """Smallest data value whose brute-force CDF reaches q (the generalised inverse)."""
    xs = np.sort(x)
    heights = brute_force_cdf(x, xs)
    return np.array([-np.inf if qi == 0 else xs[np.argmax(heights >= qi)] for qi in q])


@settings(max_examples=examples(60), deadline=None)
@given(samples, st.lists(st.integers(-6, 6).map(float) | finite, min_size=1, max_size=20))
def test_cdf_and_sf_equal_brute_force_counts(x, t):
    ecdf = ECDF(x)
    points = np.concatenate([t, x])  # data points themselves exercise ties and right-continuity
    np.testing.assert_array_equal(ecdf.cdf(points), brute_force_cdf(x, points))
    expected_sf = np.array([np.mean(np.asarray(x) > p) for p in points])
    np.testing.assert_allclose(ecdf.sf(points), expected_sf, rtol=1e-15, atol=0)


@settings(max_examples=examples(60), deadline=None)
@given(samples, st.lists(st.floats(0, 1), min_size=1, max_size=20))
def test_ppf_is_the_generalised_inverse(x, q):
    ecdf = ECDF(x)
    q = np.concatenate([q, ecdf.cumulative])  # include the exact step heights
    np.testing.assert_array_equal(ecdf.ppf(q), brute_force_ppf(x, q))
    assert np.all(ecdf.cdf(ecdf.ppf(q[q > 0])) >= q[q > 0])
    quantiles = ecdf.ppf(np.sort(q))
    assert np.all(quantiles[1:] >= quantiles[:-1])


@settings(max_examples=examples(60), deadline=None)
@given(samples)
def test_ppf_of_cdf_returns_each_data_point(x):
    ecdf = ECDF(x)
    np.testing.assert_array_equal(ecdf.ppf(ecdf.cdf(x)), x)


def test_matches_statsmodels_ecdf():
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=500), 1)  # rounding creates ties
    t = np.concatenate([rng.normal(size=300) * 2, x[:50]])
    np.testing.assert_allclose(ECDF(x).cdf(t), StatsmodelsECDF(x)(t), rtol=1e-15, atol=0)


def test_right_continuous_with_ties():
    ecdf = ECDF([1.0, 2.0, 2.0, 2.0, 3.0])
    assert ecdf.cdf(2.0) == 4 / 5
    assert ecdf.cdf(np.nextafter(2.0, -np.inf)) == 1 / 5
    assert ecdf.sf(2.0) == 1 / 5
    assert ecdf.ppf(0.2) == 1.0 and ecdf.ppf(np.nextafter(0.2, 1)) == 2.0


def test_attributes_and_limits():
    x = np.array([3.0, -1.0, 2.0])
    ecdf = ECDF(x)
    assert ecdf.n == 3
    np.testing.assert_array_equal(ecdf.x, np.sort(x))
    assert ecdf.ppf(0.0) == -np.inf
    assert ecdf.ppf(1.0) == 3.0
    assert ecdf.cdf(-1e300) == 0.0 and ecdf.cdf(1e300) == 1.0  # tail-blind
    assert ecdf.ppf(np.zeros((2, 3))).shape == (2, 3)
    assert ecdf.cdf(np.zeros((4, 1))).shape == (4, 1)


def test_integer_weights_equal_repeated_points():
    rng = np.random.default_rng(1)
    x = rng.normal(size=30)
    counts = rng.integers(1, 5, size=30)
    weighted, repeated = ECDF(x, weights=counts), ECDF(np.repeat(x, counts))
    t = rng.normal(size=200) * 2
    np.testing.assert_allclose(weighted.cdf(t), repeated.cdf(t), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(weighted.sf(t), repeated.sf(t), rtol=1e-13, atol=1e-15)
    q = rng.uniform(size=200)  # away from the step heights, where rounding could differ
    np.testing.assert_array_equal(weighted.ppf(q), repeated.ppf(q))
    assert weighted.ppf(1.0) == x.max()


def test_weighted_upper_tail_keeps_small_values():
    # One tiny weight at the top: 1 - cdf would round it away, sf must not.
    ecdf = ECDF([0.0, 1.0], weights=[1.0, 1e-20])
    assert ecdf.sf(0.5) == pytest.approx(1e-20, rel=1e-12)
    assert ecdf.cdf(0.5) == 1.0


@pytest.mark.parametrize(
    ("x", "match"),
    [
        ([], "at least 1"),
        ([1.0, np.nan], "NaN"),
        ([1.0, np.inf], "infinite"),
        (np.zeros((3, 2)), "1-D"),
    ],
)
def test_bad_data(x, match):
    with pytest.raises(ValueError, match=match):
        ECDF(x)


def test_bad_evaluation_points_and_probabilities():
    ecdf = ECDF([1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        ecdf.cdf([np.nan])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ecdf.ppf([0.5, 1.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ecdf.ppf(np.nan)
    with pytest.raises(ValueError, match="negative"):
        ECDF([1.0, 2.0], weights=[1.0, -1.0])
