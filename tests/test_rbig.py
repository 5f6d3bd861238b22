"""Tests for kdelib.rbig: exactness of the change of variables, and the estimator API.

Independent references: quadrature of the fitted density on a fine grid (it must integrate to
one), a finite-difference Jacobian of ``transform`` for the log-determinant, the identity map
for the round trip, and scikit-learn's estimator checks for the API.
"""

import numpy as np
import pytest
from scipy import integrate
from scipy.special import ndtri
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from kdelib import RBIG, KDEGaussianizer, PiecewiseGaussianizer
from kdelib.rbig import MARGINALS, ROTATIONS, pca_rotation, random_rotation

MARGINAL_NAMES = sorted(MARGINALS)


def moons(n=120, seed=0):
    """Two interleaved half circles with noise: curved, bimodal, nothing like a normal."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, np.pi, n)
    upper = rng.uniform(size=n) < 0.5
    x = np.where(upper, np.cos(t), 1 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    return np.column_stack([x, y]) + 0.1 * rng.normal(size=(n, 2))


@pytest.fixture(scope="module", params=[(m, r) for m in MARGINAL_NAMES for r in sorted(ROTATIONS)],
                ids=lambda p: f"{p[0]}-{p[1]}")
def fitted(request):
    marginal, rotation = request.param
    X = moons()
    model = RBIG(marginal=marginal, rotation=rotation, max_layers=4, validation_fraction=0,
                 random_state=0)
    if marginal == "piecewise":
        model.set_params(marginal=PiecewiseGaussianizer(n_knots=12))
    return model.fit(X), X


# --------------------------------------------------------------------------- scikit-learn API
@parametrize_with_checks([
    RBIG(max_layers=3, random_state=0),
    RBIG(marginal="mixture", rotation="random", max_layers=2, random_state=0),
    RBIG(marginal="piecewise", max_layers=3, random_state=0),
    PiecewiseGaussianizer(),
])
def test_sklearn_compatible(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------- exactness
def _grid_integral(model, box, n):
    """Midpoint rule for the integral of exp(score_samples) over ``box`` with n x n cells."""
    (x0, x1), (y0, y1) = box
    xs = x0 + (np.arange(n) + 0.5) * (x1 - x0) / n
    ys = y0 + (np.arange(n) + 0.5) * (y1 - y0) / n
    gx, gy = np.meshgrid(xs, ys)
    density = np.exp(model.score_samples(np.column_stack([gx.ravel(), gy.ravel()])))
    return density.sum() * (x1 - x0) * (y1 - y0) / n**2


def _box(X, pad):
    lo, hi = X.min(axis=0), X.max(axis=0)
    width = hi - lo
    return [(lo[0] - pad * width[0], hi[0] + pad * width[0]),
            (lo[1] - pad * width[1], hi[1] + pad * width[1])]


@pytest.mark.parametrize("marginal", ["kde", "mixture"])
def test_density_integrates_to_one(marginal):
    X = moons(50, seed=1)
    model = RBIG(marginal=marginal, max_layers=2, validation_fraction=0, random_state=0).fit(X)
    box = _box(X, 1.0)
    coarse, fine = _grid_integral(model, box, 200), _grid_integral(model, box, 400)
    # The density is smooth, so the midpoint rule converges as h^2: the fine grid's error is
    # about a third of the change between the grids, which must therefore be small too.
    assert abs(fine - coarse) < 1e-3
    assert abs(fine - 1.0) < 1e-3


def test_piecewise_density_integrates_to_one_in_two_dimensions():
    X = moons(80, seed=1)
    model = RBIG(marginal=PiecewiseGaussianizer(n_knots=10), max_layers=2, validation_fraction=0,
                 random_state=0).fit(X)
    # The density jumps across the knot lines, so the midpoint rule converges only as h;
    # averaging randomly shifted grids removes the bias of one alignment.
    box = _box(X, 1.0)
    rng = np.random.default_rng(0)
    n = 800
    (x0, x1), (y0, y1) = box
    step = np.array([(x1 - x0) / n, (y1 - y0) / n])
    values = []
    for _ in range(4):
        shift = (rng.uniform(size=2) - 0.5) * step
        shifted = [(x0 + shift[0], x1 + shift[0]), (y0 + shift[1], y1 + shift[1])]
        values.append(_grid_integral(model, shifted, n))
    assert abs(np.mean(values) - 1.0) < 3e-3


def _fd_log_abs_det(model, x, h):
    """log|det J| of transform at x from a fourth-order central difference per column."""
    d = x.size
    steps = np.array([-2.0, -1.0, 1.0, 2.0])[:, None, None] * h * np.eye(d)[None]
    points = (x[None, None, :] + steps).reshape(-1, d)
    values = model.transform(points).reshape(4, d, d)  # [step, perturbed column, output]
    jac = (8 * (values[2] - values[1]) - (values[3] - values[0])) / (12 * h)
    return np.linalg.slogdet(jac.T)[1]


@pytest.mark.parametrize("marginal", ["kde", "mixture"])
@pytest.mark.parametrize("rotation", sorted(ROTATIONS))
def test_log_det_matches_finite_difference_jacobian(marginal, rotation):
    X = moons(100, seed=2)
    model = RBIG(marginal=marginal, rotation=rotation, max_layers=3, validation_fraction=0,
                 random_state=0).fit(X)
    points = X[::10] + 0.01
    log_det = model.log_det_jacobian(points)
    fd = np.array([_fd_log_abs_det(model, p, 1e-3) for p in points])
    np.testing.assert_allclose(np.exp(fd - log_det), 1.0, rtol=0, atol=1e-6)


def test_piecewise_log_det_matches_finite_difference_inside_pieces():
    X = moons(100, seed=3)
    model = RBIG(marginal=PiecewiseGaussianizer(n_knots=8), max_layers=2, validation_fraction=0,
                 random_state=0).fit(X)
    points = X[::10] + 1e-3
    log_det = model.log_det_jacobian(points)
    # The map is linear on each piece, so a small step that stays inside gives it exactly.
    fd = np.array([_fd_log_abs_det(model, p, 1e-7) for p in points])
    np.testing.assert_allclose(np.exp(fd - log_det), 1.0, rtol=0, atol=1e-6)


def test_score_is_normal_log_density_plus_log_det(fitted):
    model, X = fitted
    Z = model.transform(X)
    expected = -0.5 * (Z**2).sum(axis=1) - np.log(2 * np.pi) + model.log_det_jacobian(X)
    np.testing.assert_allclose(model.score_samples(X), expected, rtol=1e-13, atol=1e-12)


def test_round_trip_on_training_data(fitted):
    model, X = fitted
    back = model.inverse_transform(model.transform(X))
    np.testing.assert_allclose(back, X, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("far", [1e6, 1e100])
def test_every_output_is_finite_far_from_the_data(fitted, far):
    model, _ = fitted
    X = np.array([[far, 0.0], [-far, 0.5], [0.3, far], [far, -far], [-far, -far]])
    Z = model.transform(X)
    assert np.all(np.isfinite(Z))
    assert np.all(np.isfinite(model.log_det_jacobian(X)))
    scores = model.score_samples(X)
    assert np.all(np.isfinite(scores)) and np.all(scores < -100)
    assert np.all(np.isfinite(model.inverse_transform(Z)))


def test_training_curve_matches_score_without_validation(fitted):
    model, X = fitted
    assert model.n_layers_ == 4 and model.train_log_likelihood_.shape == (4,)
    assert model.validation_log_likelihood_.size == 0
    assert model.train_log_likelihood_[-1] == pytest.approx(model.score(X), rel=1e-12)


def test_stopping_keeps_the_best_prefix():
    X = moons(200, seed=4)
    model = RBIG(marginal=PiecewiseGaussianizer(n_knots=40), max_layers=30, patience=2,
                 random_state=0).fit(X)
    curve = model.validation_log_likelihood_
    assert model.n_layers_ == int(np.argmax(curve)) + 1
    # It stopped after `patience` layers without improvement (or at max_layers).
    assert curve.size == min(30, model.n_layers_ + 2)
    assert len(model.layers_) == model.n_layers_


def test_threads_do_not_change_results():
    rng = np.random.default_rng(5)
    X = rng.standard_t(3, size=(1500, 40)) @ rng.normal(size=(40, 40))
    results = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads):
            model = RBIG(marginal="piecewise", max_layers=3, random_state=0).fit(X)
            results.append((model.score_samples(X), model.transform(X)))
    if int(np.__version__.split(".")[0]) >= 2:
        np.testing.assert_array_equal(results[0][0], results[1][0])
        np.testing.assert_array_equal(results[0][1], results[1][1])
    else:  # numpy 1.26's OpenBLAS (the floor) rounds some products differently per thread count
        np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12, atol=0)
        np.testing.assert_allclose(results[0][1], results[1][1], rtol=0, atol=1e-11)


def test_samples_follow_the_data():
    rng = np.random.default_rng(6)
    X = rng.normal(size=(3000, 2)) @ np.array([[1.0, 0.8], [0.0, 0.6]]) + [2.0, -1.0]
    model = RBIG(marginal="piecewise", max_layers=5, random_state=0).fit(X)
    S = model.sample(3000, random_state=1)
    assert S.shape == (3000, 2) and np.all(np.isfinite(S))
    np.testing.assert_allclose(S.mean(axis=0), X.mean(axis=0), atol=0.1)
    np.testing.assert_allclose(np.cov(S.T), np.cov(X.T), atol=0.1)
    np.testing.assert_array_equal(S, model.sample(3000, random_state=1))


def test_rotations_are_orthogonal_with_fixed_signs():
    rng = np.random.default_rng(7)
    U = rng.normal(size=(50, 5)) @ rng.normal(size=(5, 5))
    for R in (pca_rotation(U, None), random_rotation(U, np.random.RandomState(0))):
        np.testing.assert_allclose(R.T @ R, np.eye(5), atol=1e-13)
    R = pca_rotation(U, None)
    assert np.all(R[np.argmax(np.abs(R), axis=0), np.arange(5)] > 0)
    variances = np.var(U @ R, axis=0)
    assert np.all(np.diff(variances) <= 1e-12)


def test_an_estimator_instance_is_cloned_per_layer():
    X = moons(100)
    template = KDEGaussianizer(bandwidth=0.3)
    model = RBIG(marginal=template, max_layers=2, validation_fraction=0).fit(X)
    assert not hasattr(template, "marginals_")
    assert all(g.bandwidth_.tolist() == [0.3, 0.3] for g, _ in model.layers_)
    assert model.layers_[0][0] is not model.layers_[1][0]


# --------------------------------------------------------------------------- the piecewise map
def test_piecewise_density_integrates_to_one_exactly():
    x = np.random.default_rng(8).gamma(2.0, size=(500, 1))
    g = PiecewiseGaussianizer(n_knots=20).fit(x)
    t, s = g.knots_[0], g.knot_scores_[0]
    b_left, b_right = g.tail_slopes_[0]
    # Mass of phi(z(x)) z'(x) over each piece is Phi(z(t_k+1)) - Phi(z(t_k)) with z linear.
    z_left_of = s[0]
    pieces = np.diff(np.concatenate([[-np.inf], s, [np.inf]]))
    assert np.all(pieces > 0) and np.all(np.diff(t) > 0)
    grid = np.linspace(t[0] - 40 / b_left, t[-1] + 40 / b_right, 400_001)
    density = np.exp(g.score_samples(grid[:, None]))
    assert integrate.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-6)
    assert g.transform([[t[0]]])[0, 0] == z_left_of


def test_piecewise_scores_and_ties():
    x = np.array([[0.0], [0.0], [1.0], [2.0], [2.0], [3.0]])
    g = PiecewiseGaussianizer(n_knots=6).fit(x)
    t, s = g.knots_[0], g.knot_scores_[0]
    np.testing.assert_array_equal(t, [0.0, 1.0, 2.0, 3.0])
    levels = (np.arange(6) + 0.5) / 6
    expected = ndtri(levels)
    np.testing.assert_allclose(s, [expected[:2].mean(), expected[2], expected[3:5].mean(), expected[5]])


def test_piecewise_saturates_only_at_overflow():
    g = PiecewiseGaussianizer(n_knots=10).fit(np.random.default_rng(9).normal(size=(100, 1)) * 1e-3)
    Z = g.transform([[1.7e308], [-1.7e308], [1e300]])
    assert np.all(np.isfinite(Z)) and Z[0, 0] > 0 and Z[1, 0] < 0
    assert np.all(np.diff(g.transform(np.array([[1e300], [1e301], [1.7e308]]))[:, 0]) >= 0)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "params, X, match",
    [
        ({}, np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 3.0], [2.0, 0.5], [3.0, 1.5]]), "NaN"),
        ({}, np.array([[0.0, 1.0], [np.inf, 2.0], [1.0, 3.0], [2.0, 0.5], [3.0, 1.5]]), "infinity"),
        ({}, np.arange(10.0), "2D array"),
        ({}, np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]]), "n_samples = 3"),
        ({"validation_fraction": 0.8}, moons(10), "fitting part"),
        ({}, np.column_stack([np.arange(10.0), np.ones(10)]), "constant column"),
        ({"marginal": "histogram"}, moons(20), "unknown marginal"),
        ({"marginal": object()}, moons(20), "missing"),
        ({"rotation": "ica"}, moons(20), "unknown rotation"),
        ({"max_layers": 0}, moons(20), "max_layers"),
        ({"patience": 1.5}, moons(20), "patience"),
        ({"validation_fraction": 1.0}, moons(20), "validation_fraction"),
    ],
)
def test_bad_input_is_rejected(params, X, match):
    with pytest.raises(ValueError, match=match):
        RBIG(**params).fit(X)


def test_width_mismatch_is_rejected(fitted):
    model, _ = fitted
    for method in (model.transform, model.inverse_transform, model.score_samples):
        with pytest.raises(ValueError, match="features"):
            method(np.zeros((3, 3)))
