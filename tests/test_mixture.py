"""Tests for kdelib.GaussianMixtureCDF and select_n_components against scikit-learn and scipy."""

import dataclasses

import numpy as np
import pytest
import scipy.stats as st
from hypothesis import given, settings
from hypothesis import strategies as hs
from sklearn.exceptions import NotFittedError
from sklearn.mixture import GaussianMixture
from mpmath_reference import assert_close_or_exact_limit, mp_reference

from hypothesis_profiles import examples
from kdelib import GaussianMixtureCDF, select_n_components

FUNCS = ("pdf", "logpdf", "cdf", "sf", "logcdf", "logsf")


@pytest.fixture(scope="module")
def bimodal():
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.normal(-3.0, 0.7, 700), rng.normal(2.0, 1.5, 500)])
    rng.shuffle(x)
    return x


@pytest.fixture(scope="module")
def fitted(bimodal):
    return GaussianMixtureCDF(n_components=2, random_state=0).fit(bimodal)


def sklearn_twin(x, k, random_state=0):
    # kdelib's EM defaults are tighter than sklearn's (tol 1e-6, max_iter 1000): match them.
    model = GaussianMixture(n_components=k, random_state=random_state, tol=1e-6, max_iter=1000)
    return model.fit(x[:, None])


def test_parameters_equal_sklearn_gaussian_mixture(bimodal, fitted):
    ref = sklearn_twin(bimodal, 2)
    order = np.argsort(ref.means_[:, 0])
    np.testing.assert_allclose(fitted.means_, ref.means_[order, 0], rtol=1e-14)
    np.testing.assert_allclose(fitted.scales_, np.sqrt(ref.covariances_[order, 0, 0]), rtol=1e-14)
    np.testing.assert_allclose(fitted.weights_, ref.weights_[order], rtol=1e-14)
    assert np.all(np.diff(fitted.means_) > 0) and fitted.converged_


def test_log_likelihood_equals_sklearn_score_samples(bimodal, fitted):
    ref = sklearn_twin(bimodal, 2)
    x = np.concatenate([bimodal[:200], np.linspace(-300, 300, 61)])
    np.testing.assert_allclose(fitted.score_samples(x), ref.score_samples(x[:, None]), rtol=1e-12)
    np.testing.assert_allclose(fitted.logpdf(x), ref.score_samples(x[:, None]), rtol=1e-12)
    assert fitted.score(bimodal) == pytest.approx(ref.score(bimodal[:, None]), rel=1e-12)


def test_bic_and_aic_equal_sklearn_and_the_formula(bimodal):
    for k in (1, 2, 3):
        ours = GaussianMixtureCDF(n_components=k, random_state=0).fit(bimodal)
        ref = sklearn_twin(bimodal, k)
        assert ours.n_parameters() == 3 * k - 1
        assert ours.bic(bimodal) == pytest.approx(ref.bic(bimodal[:, None]), rel=1e-12)
        assert ours.aic(bimodal) == pytest.approx(ref.aic(bimodal[:, None]), rel=1e-12)
        log_lik = np.sum(ref.score_samples(bimodal[:, None]))
        by_hand = -2 * log_lik + (3 * k - 1) * np.log(bimodal.size)
        assert ours.bic(bimodal) == pytest.approx(by_hand, rel=1e-12)


def test_distribution_functions_equal_weighted_scipy_norms(fitted):
    x = np.linspace(-15, 15, 301)
    comps = [st.norm(m, s) for m, s in zip(fitted.means_, fitted.scales_)]
    for name in ("pdf", "cdf", "sf"):
        expected = sum(w * getattr(c, name)(x) for w, c in zip(fitted.weights_, comps))
        np.testing.assert_allclose(getattr(fitted, name)(x), expected, rtol=1e-13, atol=1e-300, err_msg=name)


def test_tails_match_mpmath(fitted):
    x = np.array([-1e5, -900.0, -60.0, -12.0, 0.5, 14.0, 70.0, 900.0, 1e5])
    ref = mp_reference(x, fitted.means_, fitted.scales_, fitted.weights_)
    for name in ("logpdf", "logcdf", "logsf"):
        assert_close_or_exact_limit(getattr(fitted, name)(x), ref[name], 1e-12, name)


def test_quantiles_round_trip(fitted):
    x = np.linspace(-40, 40, 401)
    F, log_S = fitted.cdf(x), fitted.logsf(x)
    lower = (F > 1e-300) & (F <= 0.5)
    np.testing.assert_allclose(fitted.ppf(F[lower]), x[lower], rtol=0, atol=1e-10)
    upper = (log_S < np.log(0.5)) & (log_S > -690)
    np.testing.assert_allclose(fitted.ppf_log(log_S[upper], upper=True), x[upper], rtol=0, atol=1e-10)
    far = np.array([-1e4, -300.0])
    np.testing.assert_allclose(fitted.ppf_log(fitted.logcdf(far)), far, rtol=1e-12)
    np.testing.assert_array_equal(fitted.ppf([0.0, 1.0]), [-np.inf, np.inf])


def test_sample_follows_the_mixture(fitted):
    draws = fitted.sample(3000, random_state=np.random.default_rng(3))
    assert st.kstest(draws, fitted.cdf).pvalue > 1e-3


def test_tied_data_fit_a_narrow_component():
    gm = GaussianMixtureCDF(n_components=1).fit(np.full(10, 3.0))
    assert gm.means_[0] == pytest.approx(3.0, rel=1e-15)
    np.testing.assert_allclose(gm.scales_, np.sqrt(1e-6))  # reg_covar keeps the scale positive
    assert np.isfinite(gm.logcdf(2.0)) and gm.cdf(3.0) == pytest.approx(0.5)


# -- select_n_components -----------------------------------------------------------------------


def test_select_n_components_reports_both_criteria(bimodal):
    train, held_out = bimodal[:800], bimodal[800:]
    result = select_n_components(train, held_out, ks=[1, 2, 3, 4], random_state=0)
    assert result.ks == (1, 2, 3, 4)
    assert result.best_k_by_train_bic == 2
    assert result.best_k_by_held_out_nll in (2, 3)
    rows = zip(result.ks, result.train_bic, result.train_nll, result.held_out_nll)
    for k, bic, train_nll, nll in rows:
        ref = sklearn_twin(train, k)
        assert bic == pytest.approx(ref.bic(train[:, None]), rel=1e-12)
        assert train_nll == pytest.approx(-ref.score(train[:, None]), rel=1e-12)
        # BIC is the training NLL plus the penalty: 2 n NLL + (3K - 1) log n.
        assert bic == pytest.approx(2 * train.size * train_nll + (3 * k - 1) * np.log(train.size))
        assert nll == pytest.approx(-np.mean(ref.score_samples(held_out[:, None])), rel=1e-12)
    assert result.best_k_by_train_bic == result.ks[int(np.argmin(result.train_bic))]
    assert result.best_k_by_held_out_nll == result.ks[int(np.argmin(result.held_out_nll))]
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.ks = (1,)
    table = result.to_markdown()
    assert "BIC (training data)" in table and "held-out" in table and table.count("\n") == 5


@pytest.mark.parametrize("ks", [[], [0, 1], [1.5], ["2"], [True]])
def test_select_n_components_rejects_bad_ks(bimodal, ks):
    with pytest.raises(ValueError, match=r"ks .*(positive integer|non-empty)"):
        select_n_components(bimodal[:100], bimodal[100:200], ks=ks)


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        ([1.0, np.nan, 2.0], {}, "NaN"),
        ([1.0, -np.inf], {}, "infinite"),
        ([], {}, "at least 1"),
        (np.ones((4, 2)), {}, "must be 1-D"),
        ([1.0, 2.0], {"n_components": 3}, "needs at least 3 data points"),
        ([1.0, 2.0], {"n_components": 0}, "positive integer"),
        ([1.0, 2.0], {"n_components": 1.5}, "positive integer"),
    ],
)
def test_bad_input_raises_value_error(data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixtureCDF(**kwargs).fit(data)


def test_bad_evaluation_input_and_not_fitted(fitted):
    with pytest.raises(ValueError, match="NaN"):
        fitted.cdf([np.nan])
    with pytest.raises(ValueError, match=r"q must lie in \[0, 1\]"):
        fitted.ppf(-0.1)
    with pytest.raises(ValueError, match="log_q must be <= 0"):
        fitted.ppf_log(1.0)
    unfitted = GaussianMixtureCDF(n_components=2)
    for name in (*FUNCS, "ppf", "ppf_log", "score_samples", "bic", "aic", "score"):
        with pytest.raises(NotFittedError):
            getattr(unfitted, name)([0.5])


# -- properties --------------------------------------------------------------------------------


@settings(max_examples=examples(40), deadline=None)
@given(hs.integers(1, 3), hs.integers(0, 2**16), hs.lists(hs.floats(-1e3, 1e3), min_size=2, max_size=20))
def test_property_bounds_monotone_and_round_trip(k, seed, xs):
    rng = np.random.default_rng(seed)
    data = np.concatenate([rng.normal(rng.uniform(-10, 10), rng.uniform(0.1, 3), 40) for _ in range(k)])
    gm = GaussianMixtureCDF(n_components=k, random_state=seed).fit(data)
    x = np.sort(xs)
    F, log_F, log_S = gm.cdf(x), gm.logcdf(x), gm.logsf(x)
    assert np.all((F >= 0) & (F <= 1)) and np.all(np.diff(F) >= -8 * np.finfo(float).eps * F[1:])
    assert np.all(log_F <= 0) and np.all(log_S <= 0)
    np.testing.assert_allclose(np.logaddexp(log_F, log_S), 0.0, atol=1e-15)
    ok = (F > 1e-300) & (F <= 0.5)
    if np.any(ok):
        eps = np.finfo(float).eps
        back = gm.ppf(F[ok])
        # back is a quantile of q: F(back) = q up to rounding and the root finder's tolerance
        residual = np.abs(gm.cdf(back) - F[ok])
        assert np.all(residual <= 8 * eps * F[ok] + gm.pdf(back) * 1e-10 * (1 + np.abs(back)))
        # and x itself where x is pinned down (not on a plateau of F between components)
        slack = 16 * eps * F[ok] / gm.pdf(x[ok])
        pinned = slack < 0.1 * gm.scales_.min()
        assert np.all((np.abs(back - x[ok]) <= 1e-10 * (1 + np.abs(x[ok])) + slack)[pinned])
