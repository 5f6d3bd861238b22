"""Tests of kdelib.image: exactness against independent references, dispatch, bounds, errors."""

import math
import sys
import warnings

import mpmath
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist
from scipy.special import logsumexp

from hypothesis_profiles import examples
from kdelib import image
from kdelib.image import _fold, _gpu, _kernels, _plan

SIGMAS = np.array([0.05, 0.08, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0])


# ------------------------------------------------------------------------------------------
# Independent references


def direct_reference(train, data, sigmas):
    """Per-row values from direct squared differences (scipy cdist) and scipy logsumexp."""
    sq = cdist(np.asarray(data, float), np.asarray(train, float), "sqeuclidean")
    k, d = np.shape(train)
    return np.array([
        logsumexp(-sq / (2 * s * s), axis=1) - math.log(k) - 0.5 * d * math.log(2 * math.pi * s * s)
        for s in np.atleast_1d(sigmas)
    ])


def integer_reference(train_codes, data_codes, scale, sigmas):
    """Per-row values from exact int64 squared differences of integer codes."""
    a = np.asarray(train_codes, np.int64)
    x = np.asarray(data_codes, np.int64)
    sq = ((x[:, None, :] - a[None, :, :]) ** 2).sum(axis=2).astype(np.float64)
    k, d = a.shape
    return np.array([
        logsumexp(-sq / (2 * s * s * scale * scale), axis=1) - math.log(k)
        - 0.5 * d * math.log(2 * math.pi * s * s)
        for s in np.atleast_1d(sigmas)
    ])


def assert_rel(actual, expected, rtol):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    err = np.abs(actual - expected) / np.maximum(np.abs(expected), 1.0)
    assert err.max() <= rtol, f"max relative error {err.max():.3e} > {rtol:.1e}"


def random_codes(rng, n, d, density=0.3, top=255):
    """Sparse 8-bit 'images': mostly zeros, some bright pixels, like MNIST."""
    codes = rng.integers(0, top + 1, size=(n, d))
    codes[rng.random((n, d)) > density] = 0
    return codes.astype(np.uint8)


# ------------------------------------------------------------------------------------------
# MNIST (skipped without the files)


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    from kdelib.datasets import mnist_splits

    return mnist_splits(data_dir=mnist_dir)


# ------------------------------------------------------------------------------------------
# Exactness


def test_float64_path_matches_direct_differences():
    rng = np.random.default_rng(1)
    train, data = rng.normal(size=(60, 5)), rng.normal(size=(40, 5))
    assert image.distance_plan(train, data).method == "float64"
    got = image.log_likelihood(train, data, [0.05, 0.3, 1.0, 3.0], per_sample=True)
    assert_rel(got, direct_reference(train, data, [0.05, 0.3, 1.0, 3.0]), 1e-12)


def test_lattice_path_is_exact_against_integer_distances():
    rng = np.random.default_rng(2)
    a, x = random_codes(rng, 300, 50), random_codes(rng, 80, 50)
    plan = image.distance_plan(a / 256, x / 256)
    assert (plan.method, plan.scale, plan.float32_rows) == ("lattice", 256, 80)
    got = image.log_likelihood(a / 256, x / 256, SIGMAS, per_sample=True)
    assert_rel(got, integer_reference(a, x, 256, SIGMAS), 1e-13)


@pytest.mark.parametrize("scale", [255, 1])
def test_other_lattices(scale):
    rng = np.random.default_rng(3)
    a, x = random_codes(rng, 120, 30), random_codes(rng, 50, 30)
    train, data = a / np.float64(scale), x / np.float64(scale)
    plan = image.distance_plan(train, data)
    assert (plan.method, plan.scale) == ("lattice", scale)
    sigmas = SIGMAS * (255 if scale == 1 else 1)
    got = image.log_likelihood(train, data, sigmas, per_sample=True)
    assert_rel(got, direct_reference(train, data, sigmas), 1e-12)


def test_float32_inputs_are_read_exactly_as_given():
    """float32 k/256 stays on the lattice; float32 k/255 and normal data take float64."""
    rng = np.random.default_rng(16)
    a, x = random_codes(rng, 90, 30), random_codes(rng, 40, 30)
    train, data = (a / 256).astype(np.float32), (x / 256).astype(np.float32)
    assert image.distance_plan(train, data).method == "lattice"
    got = image.log_likelihood(train, data, SIGMAS, per_sample=True)
    assert_rel(got, integer_reference(a, x, 256, SIGMAS), 1e-13)
    # float32(k / 255) is not k / 255: the values as stored are the data
    train, data = (a / 255).astype(np.float32), (x / 255).astype(np.float32)
    assert image.distance_plan(train, data).method == "float64"
    got = image.log_likelihood(train, data, SIGMAS, per_sample=True)
    assert_rel(got, direct_reference(train, data, SIGMAS), 1e-12)
    train, data = rng.normal(size=(50, 6)).astype(np.float32), rng.normal(size=(20, 6))
    got = image.log_likelihood(train, data, [0.3, 1.0], per_sample=True)
    assert_rel(got, direct_reference(train, data, [0.3, 1.0]), 1e-12)


def _lattice_reference(values):
    """The first scale s of LATTICE_SCALES with every value == k / s (float64 division, k in
    0..255), and the codes; None if no scale fits. Python floats, one value at a time."""
    for scale in _plan.LATTICE_SCALES:
        codes = []
        for v in map(float, values.ravel()):
            k = round(v * scale)
            if not (0 <= k <= 255 and k / scale == v):
                break
            codes.append(k)
        else:
            return scale, np.array(codes).reshape(values.shape)
    return None


lattice_values = st.one_of(
    st.integers(0, 255).map(lambda k: k / 256), st.integers(0, 255).map(lambda k: k / 255),
    st.integers(0, 255).map(float), st.sampled_from([-1 / 256, 256 / 256, 256.0, 0.5 / 256, -0.0]),
    st.integers(0, 255).map(lambda k: float(np.nextafter(k / 256, 1.0))),
    st.integers(1, 255).map(lambda k: float(np.nextafter(k / 255, 0.0))))


@given(st.lists(st.lists(lattice_values, min_size=3, max_size=3), min_size=1, max_size=4),
       st.sampled_from([np.float64, np.float32]))
@settings(max_examples=examples(300))
def test_property_lattice_detection_matches_a_value_by_value_reference(rows, dtype):
    x = np.array(rows, dtype=dtype)
    got, expected = _plan._lattice_codes(x), _lattice_reference(x)
    if expected is None:
        assert got is None
        return
    scale, codes = expected
    assert got[0] == scale and np.array_equal(got[1], codes)
    assert [list(v) for v in got[2]] == [list(codes.sum(1)), list(codes.max(1)),
                                         list((codes.astype(np.int64) ** 2).sum(1))]


def test_float64_expansion_with_zero_and_rounding_negative_distances():
    """Data rows equal to training rows: the expansion gives 0 or rounds below, clamped to 0."""
    rng = np.random.default_rng(0)
    train = rng.normal(size=(40, 9)) + 0.1
    data = np.vstack([train[:10], rng.normal(size=(5, 9))])
    raw = (np.einsum("ij,ij->i", data, data)[:, None] + np.einsum("ij,ij->i", train, train)
           - 2 * data @ train.T)
    assert (np.diag(raw[:10, :10]) < 0).any() and (np.diag(raw[:10, :10]) == 0).any()
    assert image.distance_plan(train, data).method == "float64"
    sigmas = [0.05, 0.5, 5.0]
    got = image.log_likelihood(train, data, sigmas, per_sample=True)
    assert_rel(got, direct_reference(train, data, sigmas), 1e-12)


def test_float32_bound_sends_heavy_rows_to_float64():
    """Rows whose cross products could pass 2**24 are not computed in float32."""
    rng = np.random.default_rng(4)
    d = 400
    a = rng.integers(200, 256, size=(90, d)).astype(np.uint8)
    x = random_codes(rng, 40, d, density=0.05)
    x[:5] = 255  # x . a = 255 * sum(a) > 2**24: these rows must take the float64 GEMM
    plan = image.distance_plan(a / 256, x / 256)
    assert plan.method == "lattice" and plan.float32_rows <= 35
    assert plan.chunked_rows == 40 - plan.float32_rows
    safe = _plan.prepare(a / 256.0, x / 256.0).gemm_mode == "float32"
    exact_dot = x.astype(np.int64) @ a.astype(np.int64).T
    assert np.all(exact_dot[safe].max(axis=1) <= 2**24)  # the certificate holds
    assert not safe[:5].any()
    got = image.log_likelihood(a / 256, x / 256, SIGMAS, per_sample=True)
    assert_rel(got, integer_reference(a, x, 256, SIGMAS), 1e-13)


def test_zero_training_columns_still_count_in_the_distance():
    rng = np.random.default_rng(5)
    a, x = random_codes(rng, 70, 20), random_codes(rng, 30, 20, density=0.8)
    a[:, :6] = 0  # pixels dark in every training image, bright in the data
    plan = image.distance_plan(a / 256, x / 256)
    assert plan.gemm_columns <= 14
    got = image.log_likelihood(a / 256, x / 256, SIGMAS, per_sample=True)
    assert_rel(got, integer_reference(a, x, 256, SIGMAS), 1e-13)
    zero = np.zeros((10, 20))
    assert_rel(image.log_likelihood(zero, x / 256, SIGMAS, per_sample=True),
               integer_reference(np.zeros((10, 20)), x, 256, SIGMAS), 1e-13)


def _sigma_paths_as_expected(plan):
    """SIGMAS on random codes: 0.5 and below near terms, 2.0 exp, 1.0 from it, 1.5 exp."""
    paths = dict(zip(plan.sigmas, plan.sigma_paths))
    near = all(paths[s] == "near" for s in (0.05, 0.08, 0.1))
    return near and paths[2.0] == "exp" and paths[1.5] == "exp" and paths[1.0] == ("square", 7, 2)


@pytest.mark.parametrize("setting, reported", [
    ({}, lambda p: p.float32_rows == p.n_rows and _sigma_paths_as_expected(p)),
    # the float64 expansion
    ({"LATTICE_SCALES": ()}, lambda p: p.method == "float64" and _sigma_paths_as_expected(p)),
    # every sigma through the gathered near terms
    ({"SPARSE_FRACTION": 1.0}, lambda p: set(p.sigma_paths) == {"near"}),
    # every sigma through all terms: exponentials, and squarings for ratios 2**j, j <= 4
    ({"SPARSE_FRACTION": -1.0}, lambda p: "near" not in p.sigma_paths
     and p.sigma_paths.count("exp") == 4 and ("square", 7, 4) in p.sigma_paths),
    # stream the training set in chunks
    ({"_MAX_TRAIN_CHUNK": 7}, lambda p: _sigma_paths_as_expected(p)),
    # streamed, near terms per chunk
    ({"_MAX_TRAIN_CHUNK": 7, "SPARSE_FRACTION": 1.0}, lambda p: set(p.sigma_paths) == {"near"}),
    # no row certified: float32 GEMMs over column chunks
    ({"_FLOAT32_EXACT": 0}, lambda p: p.chunked_rows == p.n_rows),
    # many column chunks
    ({"_FLOAT32_EXACT": 0, "FLOAT32_COLUMNS": 7}, lambda p: p.chunked_rows == p.n_rows),
    # a BLAS failing the canary: float64 GEMMs
    ({"_float32_gemm_check": {"ok": False}},
     lambda p: p.method == "lattice" and p.float32_rows == p.chunked_rows == 0),
    # no squarings: every dense sigma by its own exponential
    ({"MAX_SQUARINGS": 0}, lambda p: p.sigma_paths[5:] == ("exp", "exp", "exp")),
])
def test_every_internal_path_gives_the_same_values(monkeypatch, setting, reported):
    """Each dispatch path, forced, is reported by distance_plan and equals exact integers."""
    rng = np.random.default_rng(6)
    a, x = random_codes(rng, 61, 40), random_codes(rng, 33, 40)
    # far training images first, so the running minimum moves when streaming
    order = np.argsort(-cdist(x[:1] / 256, a / 256).ravel())
    a = a[order]
    for name, value in setting.items():
        monkeypatch.setattr(_plan if hasattr(_plan, name) else _kernels, name, value)
    plan = image.distance_plan(a / 256, x / 256, SIGMAS)
    assert reported(plan), plan.describe()
    got = image.log_likelihood(a / 256, x / 256, SIGMAS, per_sample=True, block_size=9)
    assert_rel(got, integer_reference(a, x, 256, SIGMAS), 1e-13)


def test_dropped_terms_respect_the_documented_bound(monkeypatch):
    """With a loose cut-off (2**-5) the error is visible and stays below k * exp(-T)."""
    monkeypatch.setattr(_kernels, "NEGLIGIBLE_LOG2", 5)
    k, sigma = 400, 0.1
    threshold = math.log(k) + 5 * math.log(2)
    # one training image at the data point, the others just beyond the cut-off
    radius = math.sqrt((threshold + 0.05) * 2 * sigma**2)
    train = np.zeros((k, 2))
    angles = np.linspace(0, 2 * np.pi, k - 1, endpoint=False)
    train[1:] = radius * np.c_[np.cos(angles), np.sin(angles)]
    data = np.zeros((1, 2))
    monkeypatch.setattr(_kernels, "SPARSE_FRACTION", 1.0)  # make sure the cut-off is applied
    got = image.log_likelihood(train, data, sigma, per_sample=True)[0]
    full = direct_reference(train, data, sigma)[0, 0]
    dropped = full - got
    assert 0 < dropped <= k * math.exp(-threshold)


def test_dense_exponentials_and_squarings_are_accurate():
    """sigma = 2 and 1.5 by exp, sigma = 1 by two squarings of sigma = 2's terms, vs mpmath."""
    sig = np.array([1.5, 2.0, 1.0])
    coef = 1 / (2 * sig**2 * 65536)
    kernel = _kernels._Kernel(coef=coef, drop=np.full(3, np.inf))
    rng = np.random.default_rng(7)
    deltas = rng.integers(0, 150 * 65536, size=(3, 300)).astype(np.int32)
    deltas[:, 0] = 0
    schedule = _kernels._schedule(deltas, kernel)
    assert schedule.sparse == [] and schedule.dense == [(1, [(2, 2)]), (0, [])]
    terms = _kernels._Terms.from_schedule(schedule, kernel)
    mins, sums = _kernels._fold_chunk(deltas.astype(np.float32), np.zeros(300, np.int32), None,
                                      True, terms, 3)
    assert np.array_equal(mins, np.zeros(3))
    for s in range(3):
        for row in range(3):
            exact = mpmath.fsum(mpmath.exp(-mpmath.mpf(int(d)) * mpmath.mpf(float(coef[s])))
                                for d in deltas[row])
            rel = abs((mpmath.mpf(float(sums[s, row])) - exact) / exact)
            # a few ulps per term (times 2**2 after two squarings) plus the summation
            assert rel <= (4 * 8 + 300) * 2.0**-53


def _ulps_from_mpmath(x, value):
    exact = mpmath.exp(mpmath.mpf(x))
    return float(abs(mpmath.mpf(value) - exact) / (exact * mpmath.mpf(2) ** -52))


def test_compiled_exponential_is_within_an_ulp_of_mpmath():
    """exp_nonpositive over its range (ends, ties of the reduction, tiny arguments) vs mpmath."""
    mpmath.mp.prec = 120
    rng = np.random.default_rng(11)
    ln2 = math.log(2.0)
    points = np.concatenate([
        -rng.uniform(0, 708, 3000), -rng.uniform(0, 1, 1000), -np.logspace(-300, 0, 200),
        -(np.arange(1, 1022) + 0.5) * ln2,  # the rounding of k changes here
        -np.arange(0, 1022) * ln2, [0.0, -0.0, -5e-324, -707.9999, -708.0 + 1e-13]])
    points = points[points > _fold.EXP_FLOOR]
    worst = max(_ulps_from_mpmath(x, _fold.exp_nonpositive(x)) for x in points)
    assert worst <= 1.0, worst  # one ulp of the result (numpy's own exp is within about 1)


@given(st.floats(-1e300, -708.0, exclude_max=False))
@settings(max_examples=examples(200))
def test_property_compiled_exponential_flushes_below_its_floor(x):
    assert _fold.exp_nonpositive(x) == (0.0 if x <= _fold.EXP_FLOOR else math.exp(x))


@given(st.floats(-708.0, 0.0, exclude_min=True))
@settings(max_examples=examples(300))
def test_property_compiled_exponential_is_monotone_and_accurate(x):
    lower = np.nextafter(x, -np.inf)
    assert _fold.exp_nonpositive(lower) <= _fold.exp_nonpositive(x) <= 1.0
    assert _ulps_from_mpmath(x, _fold.exp_nonpositive(x)) <= 1.0


def test_tiny_sigma_large_magnitudes():
    rng = np.random.default_rng(9)
    a, x = random_codes(rng, 50, 64), random_codes(rng, 20, 64)
    sigmas = [1e-3, 1e-2]
    got = image.log_likelihood(a / 256, x / 256, sigmas, per_sample=True)
    assert np.abs(got).max() > 1e5
    assert_rel(got, integer_reference(a, x, 256, sigmas), 1e-14)


# ------------------------------------------------------------------------------------------
# Properties


codes_arrays = st.integers(1, 12).flatmap(
    lambda d: st.tuples(
        st.lists(st.lists(st.integers(0, 255), min_size=d, max_size=d), min_size=1, max_size=15),
        st.lists(st.lists(st.integers(0, 255), min_size=d, max_size=d), min_size=1, max_size=8),
    )
)
sigma_values = st.floats(0.01, 5.0)


@settings(max_examples=examples(40), deadline=None)
@given(codes_arrays, sigma_values)
def test_property_matches_integer_reference(arrays, sigma):
    a, x = (np.array(v, dtype=np.uint8) for v in arrays)
    got = image.log_likelihood(a / 256, x / 256, sigma, per_sample=True)
    assert_rel(got, integer_reference(a, x, 256, sigma)[0], 1e-13)


@settings(max_examples=examples(40), deadline=None)
@given(codes_arrays, sigma_values)
def test_property_duplicated_centres_change_nothing(arrays, sigma):
    a, x = (np.array(v, dtype=np.float64) / 256 for v in arrays)
    once = image.log_likelihood(a, x, sigma, per_sample=True)
    twice = image.log_likelihood(np.vstack([a, a[::-1]]), x, sigma, per_sample=True)
    assert_rel(twice, once, 1e-13)


@settings(max_examples=examples(40), deadline=None)
@given(codes_arrays, sigma_values)
def test_property_bounded_by_nearest_centre(arrays, sigma):
    """-m/(2s^2) - log k - c <= log p(x) <= -m/(2s^2) - c, m the nearest squared distance."""
    a, x = (np.array(v, dtype=np.float64) for v in arrays)
    got = image.log_likelihood(a, x, sigma, per_sample=True)
    nearest = cdist(x, a, "sqeuclidean").min(axis=1)
    const = 0.5 * a.shape[1] * math.log(2 * math.pi * sigma**2)
    upper = -nearest / (2 * sigma**2) - const
    slack = 1e-12 * np.maximum(np.abs(upper), 1)
    assert np.all(got <= upper + slack)
    assert np.all(got >= upper - math.log(len(a)) - slack)


@settings(max_examples=examples(25), deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 30), st.integers(1, 20))
@example(seed=38, k=29, n=12)  # 1.6e-12 relative: the expansion's own rounding (sigma = 0.054)
def test_property_float_data_matches_direct(seed, k, n):
    """Within the float64 expansion's documented error: each distance is off by about
    eps (|x|^2 + |a|^2) (at most (2 d + 4) eps of it, d-term sums included), divided by
    2 sigma^2 in the log-likelihood; plus the rounding of the log-sum-exp itself."""
    rng = np.random.default_rng(seed)
    d = int(rng.integers(1, 9))
    train, data = rng.normal(size=(k, d)) * 3, rng.normal(size=(n, d)) * 3
    sigmas = np.exp(rng.uniform(-3, 2, size=3))
    got = image.log_likelihood(train, data, sigmas, per_sample=True)
    expected = direct_reference(train, data, sigmas)
    eps = np.finfo(float).eps
    norms = np.einsum("ij,ij->i", data, data) + np.einsum("ij,ij->i", train, train).max()
    bound = (2 * d + 4) * eps * norms / (2 * sigmas[:, None] ** 2)
    assert np.all(np.abs(got - expected) <= bound + 1e-13 * np.maximum(1, np.abs(expected)))


# ------------------------------------------------------------------------------------------
# Shapes, threads, blocks


def test_output_shapes_and_mean():
    rng = np.random.default_rng(10)
    train, data = rng.random((30, 4)), rng.random((12, 4))
    assert image.log_likelihood(train, data, 0.3).shape == ()
    assert image.log_likelihood(train, data, [0.3]).shape == (1,)
    assert image.log_likelihood(train, data, 0.3, per_sample=True).shape == (12,)
    rows = image.log_likelihood(train, data, [0.3, 1.0], per_sample=True)
    assert rows.shape == (2, 12)
    means = image.log_likelihood(train, data, [0.3, 1.0])
    np.testing.assert_allclose(means, [math.fsum(r) / 12 for r in rows], rtol=1e-15)


def test_threads_and_blocks_do_not_change_results():
    from threadpoolctl import threadpool_info

    rng = np.random.default_rng(11)
    a, x = random_codes(rng, 200, 30) / 256, random_codes(rng, 150, 30) / 256
    before = [(i["prefix"], i["num_threads"]) for i in threadpool_info()]
    one = image.log_likelihood(a, x, SIGMAS, per_sample=True, n_threads=1, block_size=16)
    three = image.log_likelihood(a, x, SIGMAS, per_sample=True, n_threads=3, block_size=16)
    np.testing.assert_array_equal(one, three)
    big = image.log_likelihood(a, x, SIGMAS, per_sample=True, block_size=1000)
    assert_rel(big, one, 1e-14)
    assert [(i["prefix"], i["num_threads"]) for i in threadpool_info()] == before


def test_progress_bar_when_asked(capsys):
    rng = np.random.default_rng(12)
    a = rng.random((20, 3))
    image.log_likelihood(a, a, 0.5, progress=True)
    assert "image KDE" in capsys.readouterr().err
    image.log_likelihood(a, a, 0.5, progress=False)
    assert capsys.readouterr().err == ""


def test_distance_plan_description():
    rng = np.random.default_rng(13)
    codes = random_codes(rng, 10, 8)
    text = image.distance_plan(codes / 256, codes / 256).describe()
    assert "k/256" in text and "float32" in text
    assert "float64" in image.distance_plan(codes / 3.7, codes / 3.7).describe()


# ------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("train, data, sigmas, message", [
    (np.ones((3, 4)), np.ones((2, 5)), 1.0, "same number of columns"),
    (np.ones((0, 4)), np.ones((2, 4)), 1.0, "empty"),
    (np.ones((3, 4)), np.ones((0, 4)), 1.0, "empty"),
    (np.ones(4), np.ones((2, 4)), 1.0, "2-D"),
    (np.ones((3, 4)), np.ones((2, 4)), 0.0, "positive"),
    (np.ones((3, 4)), np.ones((2, 4)), [0.5, -1.0], "positive"),
    (np.ones((3, 4)), np.ones((2, 4)), np.nan, "NaN"),
    (np.ones((3, 4)), np.ones((2, 4)), [[0.5]], "1-D"),
    (np.ones((3, 4)), np.ones((2, 4)), [], "at least 1"),
])
def test_bad_input_raises_value_error(train, data, sigmas, message):
    with pytest.raises(ValueError, match=message):
        image.log_likelihood(train, data, sigmas)


def test_nan_in_images_is_rejected():
    train = np.ones((3, 4))
    train[1, 2] = np.nan
    with pytest.raises(ValueError, match="train contains 1 NaN"):
        image.log_likelihood(train, np.ones((2, 4)), 1.0)
    data = np.ones((2, 4))
    data[0, 0] = np.inf
    with pytest.raises(ValueError, match="data contains 0 NaN and 1 infinite"):
        image.log_likelihood(np.ones((3, 4)), data, 1.0)


@pytest.mark.parametrize("setting", [{"n_threads": 0}, {"block_size": -2}, {"block_size": 0},
                                     {"block_size": 2.5}, {"n_threads": "two"}])
def test_bad_thread_and_block_settings(setting):
    with pytest.raises(ValueError, match=f"{next(iter(setting))} must be a positive integer"):
        image.log_likelihood(np.ones((3, 2)), np.ones((2, 2)), 1.0, **setting)
    with pytest.raises(ValueError, match="positive integer"):
        image.log_likelihood(np.ones((3, 2)), np.ones((2, 2)), 1.0, device="cuda", **setting)


# ------------------------------------------------------------------------------------------
# Optional GPU path


def test_unknown_device_is_rejected():
    with pytest.raises(ValueError, match="device must be"):
        image.log_likelihood(np.ones((3, 2)), np.ones((2, 2)), 1.0, device="tpu")


def test_cuda_without_torch_or_cupy_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    monkeypatch.setitem(sys.modules, "cupy", None)
    with pytest.raises(ImportError, match="PyTorch or CuPy"):
        image.log_likelihood(np.ones((3, 2)), np.ones((2, 2)), 1.0, device="cuda")


def test_device_algorithm_matches_reference_on_numpy_backend():
    """The device code path, run with the NumPy backend, is plain exact float64."""
    rng = np.random.default_rng(14)
    a, x = random_codes(rng, 80, 30) / 256, random_codes(rng, 25, 30) / 256
    got = _gpu.backend_log_likelihood(_gpu.NumpyBackend(), a, x, SIGMAS, block_size=7)
    assert_rel(got, integer_reference(a * 256, x * 256, 256, SIGMAS), 1e-12)


class _FakeTensor(np.ndarray):
    """A NumPy array with the PyTorch tensor methods the torch backend calls."""

    def double(self):
        return self.astype(np.float64)

    def amin(self, dim):
        return self.min(axis=dim)

    def sum(self, *args, dim=None, **kwargs):
        return super().sum(*args, **({"axis": dim} if dim is not None else {}), **kwargs)

    def mul_(self, value):
        self *= value
        return self

    def add_(self, value):
        self += value
        return self

    def clamp_(self, min):
        return np.maximum(self, min, out=self)

    def exp_(self):
        return np.exp(self, out=self)

    def cpu(self):
        return self

    def numpy(self):
        return np.asarray(self)


def _fake_torch(devices):
    import types

    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(is_available=lambda: devices > 0)
    torch.device = lambda name: name
    torch.float64 = np.float64
    torch.as_tensor = lambda x, device: np.array(x).view(_FakeTensor)
    torch.empty = lambda shape, dtype, device: np.empty(shape, dtype).view(_FakeTensor)
    torch.mul = lambda x, value, out: np.multiply(x, value, out=out)
    torch.log = lambda x: np.log(x).view(_FakeTensor)
    return torch


def _fake_cupy():
    import contextlib
    import types

    cupy = types.ModuleType("cupy")
    used = []
    cupy.cuda = types.SimpleNamespace(Device=lambda i: used.append(i) or contextlib.nullcontext())
    for name in ("asarray", "float64", "empty", "log", "exp", "maximum", "multiply"):
        setattr(cupy, name, getattr(np, name))
    cupy.asnumpy = np.asarray
    return cupy, used


def test_torch_and_cupy_backends_run_the_same_algorithm(monkeypatch):
    """Both device backends, driven through stand-in modules, give the exact values."""
    rng = np.random.default_rng(15)
    a, x = random_codes(rng, 70, 20) / 256, random_codes(rng, 30, 20) / 256
    expected = integer_reference(a * 256, x * 256, 256, SIGMAS)
    monkeypatch.setitem(sys.modules, "torch", _fake_torch(devices=1))
    backend = _gpu.gpu_backend("CUDA:0")
    assert isinstance(backend, _gpu.TorchBackend) and backend.device == "cuda:0"
    got = image.log_likelihood(a, x, SIGMAS, per_sample=True, device="cuda", block_size=8)
    assert_rel(got, expected, 1e-12)
    monkeypatch.setitem(sys.modules, "torch", _fake_torch(devices=0))
    with pytest.raises(RuntimeError, match="no CUDA device"):
        image.log_likelihood(a, x, 1.0, device="cuda")
    cupy, used = _fake_cupy()
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    assert isinstance(_gpu.gpu_backend("cuda:1"), _gpu.CupyBackend)
    got = image.log_likelihood(a, x, SIGMAS, per_sample=True, device="cuda:1", block_size=8)
    assert_rel(got, expected, 1e-12)
    assert used and set(used) == {1}
    assert _gpu.gpu_backend("cpu") is None and _gpu.gpu_backend(None) is None


def test_import_does_not_load_gpu_libraries():
    import subprocess

    code = "import sys, kdelib.image; print('torch' in sys.modules or 'cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------
# Reference libraries on MNIST


def _sklearn_rows(train, data, sigma, **settings):
    from sklearn.neighbors import KernelDensity

    return KernelDensity(bandwidth=sigma, **settings).fit(train).score_samples(data)


@pytest.mark.data
def test_matches_sklearn_in_its_exact_setting(mnist):
    x_train, x_val, _ = mnist
    train, data = x_train[:1500], x_val[:60]
    for sigma in (0.1, 0.2, 0.5, 1.0):
        exact_setting = _sklearn_rows(train, data, sigma, leaf_size=len(train))
        got = image.log_likelihood(train, data, sigma, per_sample=True)
        assert_rel(got, exact_setting, 1e-10)


@pytest.mark.data
@pytest.mark.slow
def test_sklearn_default_tree_fails_on_mnist_but_one_leaf_is_exact(mnist):
    r"""scikit-learn's ``KernelDensity`` with its default tree is wrong on MNIST; one leaf is exact.

    ``KernelDensity(bandwidth=sigma)`` is the same estimator as ``log_likelihood``. With its
    default tree settings, at sigma = 0.2 on the first 200 validation rows it returns a mean of
    376.6 where the exact value is 230.4, with 104 of the 200 rows wrong by up to 626 nats
    (``rtol=1e-8`` changes nothing; depth-first search: 184 rows wrong; ball tree: 14).

    Why. The tree keeps, per query, a running lower bound and a running bound spread of
    ``sum_i K(x, a_i)`` in log space; refining a node subtracts its contribution
    ``N_node K(d_max)`` / ``N_node K(d_min)`` with ``logsubexp`` and adds its children's or its
    exact terms with ``logaddexp`` (``sklearn/neighbors/_binary_tree.pxi.tp``:
    ``_kde_single_breadthfirst``). In 784 dimensions a node's distance lower bound ``d_min`` is
    near zero, so its upper bound is near ``N_node`` while the true terms are near ``e^-300``:
    adding and subtracting bounds of order 1e4 cannot return to zero, and leaves a rounding
    residue of order ``eps * N``, about 1e-11, in the spread. With ``atol = rtol = 0`` every
    leaf is visited and the lower bound ends exact, but the returned value is the midpoint
    ``logaddexp(lower, spread - log 2)``, which the residue dominates by a factor near
    ``e^280``. In the other rows the spread happens to end at exactly ``-inf``
    (``logsubexp(x1, x2)`` returns ``-inf`` whenever rounding leaves ``x1 <= x2``) and the
    answer is right: hence "about half" of the rows.

    With ``leaf_size >= len(train)`` the tree is one leaf: its bound is subtracted from itself
    (exactly ``-inf``) before any term is added, and the result is the brute-force log-sum-exp,
    exact to about 1e-14. That setting is the scikit-learn reference of these tests (to 1e-10
    per row). The book's image-KDE chapter explains the same finding.
    """
    x_train, x_val, _ = mnist
    data = x_val[:200]
    got = image.log_likelihood(x_train, data, 0.2, per_sample=True)
    assert_rel(got, _sklearn_rows(x_train, data, 0.2, leaf_size=len(x_train)), 1e-10)
    default = _sklearn_rows(x_train, data, 0.2)
    wrong = np.abs(default - got) > 1e-10 * np.abs(got)
    assert wrong.sum() >= 40, "sklearn's default tree now agrees: update the documentation"
    assert np.all(default[wrong] > got[wrong] - 10)  # the rounding residue inflates the value
    assert np.mean(default) > np.mean(got) + 50


@pytest.mark.data
def test_scipy_gaussian_kde_on_single_pixels(mnist):
    """1-D slices: scipy's factor is sigma / std(ddof=1), so its kernel sd equals sigma."""
    from scipy.stats import gaussian_kde

    x_train, x_val, _ = mnist
    train, data = x_train[:800].astype(np.float64), x_val[:50].astype(np.float64)
    for pixel, sigma in ((406, 0.1), (350, 0.3), (489, 1.0)):
        column = train[:, pixel]
        kde = gaussian_kde(column, bw_method=sigma / column.std(ddof=1))
        got = image.log_likelihood(train[:, [pixel]], data[:, [pixel]], sigma, per_sample=True)
        assert_rel(got, kde.logpdf(data[:, pixel]), 1e-10)


def _whitened_pca(train, data, n_components):
    """Project on the leading principal axes of ``train`` and whiten: cov(train) = I."""
    mean = train.mean(axis=0)
    _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
    z_train, z_data = (train - mean) @ vt[:n_components].T, (data - mean) @ vt[:n_components].T
    evals, evecs = np.linalg.eigh(np.cov(z_train, rowvar=False))
    w = evecs / np.sqrt(evals)
    return z_train @ w, z_data @ w


@pytest.mark.data
def test_scipy_gaussian_kde_on_whitened_pca(mnist):
    """With an identity sample covariance scipy's bw_method is exactly sigma."""
    from scipy.stats import gaussian_kde

    x_train, x_val, _ = mnist
    z_train, z_data = _whitened_pca(x_train[:1000].astype(np.float64),
                                    x_val[:50].astype(np.float64), 5)
    np.testing.assert_allclose(np.cov(z_train, rowvar=False), np.eye(5), atol=1e-12)
    for sigma in (0.3, 0.7):
        kde = gaussian_kde(z_train.T, bw_method=sigma)
        got = image.log_likelihood(z_train, z_data, sigma, per_sample=True)
        assert_rel(got, kde.logpdf(z_data.T), 1e-9)


@pytest.mark.data
@pytest.mark.filterwarnings("ignore::FutureWarning")  # statsmodels' own pandas deprecation
def test_statsmodels_kdemultivariate_on_pca(mnist):
    """statsmodels' product kernel with bw = sigma in every dimension is the same KDE."""
    from statsmodels.nonparametric.kernel_density import KDEMultivariate

    x_train, x_val, _ = mnist
    z_train, z_data = _whitened_pca(x_train[:400].astype(np.float64),
                                    x_val[:30].astype(np.float64), 3)
    for sigma in (0.2, 0.6):
        kde = KDEMultivariate(z_train, var_type="ccc", bw=[sigma] * 3)
        got = image.log_likelihood(z_train, z_data, sigma, per_sample=True)
        assert_rel(got, np.log(kde.pdf(z_data)), 1e-10)


@pytest.mark.data
def test_reference_libraries_fail_on_raw_mnist(mnist):
    """Why kdelib is needed: scipy's covariance is singular, statsmodels underflows to NaN."""
    from scipy.stats import gaussian_kde
    from statsmodels.nonparametric.kernel_density import KDEMultivariate

    x_train, x_val, _ = mnist
    train = x_train[:1000].astype(np.float64)
    assert np.count_nonzero(train.max(axis=0) == 0) > 50  # pixels dark in every image
    with pytest.raises(np.linalg.LinAlgError):
        gaussian_kde(train.T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kde = KDEMultivariate(train, var_type="c" * 784, bw=[0.2] * 784)
        assert np.all(np.isnan(kde.pdf(x_val[:2].astype(np.float64))))
    assert np.all(np.isfinite(image.log_likelihood(train, x_val[:2], 0.2, per_sample=True)))


@pytest.mark.data
@pytest.mark.slow
def test_full_training_set_matches_plain_float64(mnist):
    x_train, x_val, _ = mnist
    data = x_val[:1000]
    got = image.log_likelihood(x_train, data, SIGMAS, per_sample=True)
    assert_rel(got, image.reference_log_likelihood(x_train, data, SIGMAS), 1e-12)
    assert image.distance_plan(x_train, data).float32_rows == len(data)
