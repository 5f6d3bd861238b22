"""The book's corrected claims, recomputed independently of the chapters that state them.

Each test carries one statement of the text that a number can check: it is recomputed here with
scipy, numpy or kdelib, not read from the notebooks, so an edit that brings a wrong statement back
(or a library change that makes one wrong) fails here. A few tests check the notebooks' text and
structure where the claim is about how a number is reported.
"""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss
from scipy import integrate, optimize, special, stats

from kdelib import ECDF, GaussianKDE, GaussianMixtureCDF
from kdelib.bandwidth import scott_bandwidth, silverman_bandwidth
from kdelib.image import log_likelihood

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _cells(path, kind=None):
    cells = json.loads(path.read_text())["cells"]
    return [c for c in cells if kind is None or c["cell_type"] == kind]


def _markdown(name):
    return "\n".join("".join(c["source"]) for c in _cells(ROOT / "notebooks" / name, "markdown"))


# --- the empirical CDF -----------------------------------------------------------------------


def test_dkw_exceedance_at_n_500_is_just_below_the_bound():
    """P(D_500 > eps) with 2 exp(-2 n eps^2) = 0.05 is about 0.048: the bound is nearly tight."""
    n = 500
    eps = math.sqrt(math.log(2 / 0.05) / (2 * n))
    exact = stats.kstwo.sf(eps, n)
    assert 0.045 < exact < 0.05
    # The limit law (Kolmogorov's distribution) gives 0.05 to six digits: the bound is tight.
    assert stats.kstwobign.sf(eps * math.sqrt(n)) == pytest.approx(0.05, abs=1e-6)


def test_dkw_exceedance_by_simulation_with_kdelib_ecdf():
    """A simulation with kdelib's ECDF agrees with the exact probability within 4 standard errors."""
    n, reps = 500, 1500
    eps = math.sqrt(math.log(2 / 0.05) / (2 * n))
    rng = np.random.default_rng(20261129)
    exceed = 0
    for _ in range(reps):
        x = np.sort(rng.standard_normal(n))
        ecdf, f = ECDF(x), stats.norm.cdf(x)
        d = max(np.max(np.abs(ecdf.cdf(x) - f)),
                np.max(np.abs(ecdf.cdf(np.nextafter(x, -np.inf)) - f)))
        exceed += d > eps
    exact = stats.kstwo.sf(eps, n)
    se = math.sqrt(exact * (1 - exact) / reps)
    assert abs(exceed / reps - exact) < 4 * se


def test_two_hundred_repetitions_cannot_judge_the_bound():
    """The standard error of a share near 0.048 from 200 repetitions is about 0.015 (> |0.05 - 0.048|)."""
    exact = stats.kstwo.sf(math.sqrt(math.log(40) / 1000), 500)
    se_200 = math.sqrt(exact * (1 - exact) / 200)
    assert se_200 > 5 * abs(0.05 - exact)


def test_separating_the_exceedance_from_005_takes_tens_of_thousands_of_repetitions():
    """4000 repetitions leave 0.05 inside a 95 % interval; about 4e4 are needed, and the limit
    as n grows is 0.05 - 2 * 40**-4 + ... (Kolmogorov's series, summed here by hand)."""
    exact = stats.kstwo.sf(math.sqrt(math.log(40) / 1000), 500)
    gap = 0.05 - exact
    assert 1.96 * math.sqrt(exact * (1 - exact) / 4000) > gap
    needed = (1.96 / gap) ** 2 * exact * (1 - exact)
    assert 3e4 < needed < 6e4
    t2 = math.log(40) / 2
    series = 2 * sum((-1) ** (k - 1) * math.exp(-2 * k * k * t2) for k in range(1, 20))
    assert series == pytest.approx(0.05 - 2 * 40.0**-4, rel=1e-9)
    assert stats.kstwobign.sf(math.sqrt(t2)) == pytest.approx(series, rel=1e-9)


def test_quantile_function_maps_every_level_inside_a_tie_to_the_tied_value():
    x = np.array([-1.0, 0.25, 0.25, 0.25, 2.0])
    ecdf = ECDF(x)
    lo, hi = ecdf.cdf(np.nextafter(0.25, -np.inf)), ecdf.cdf(0.25)
    assert hi - lo == pytest.approx(3 / 5)
    inside = np.linspace(lo, hi, 9)[1:]
    assert np.all(ecdf.ppf(inside) == 0.25)
    assert ecdf.ppf(lo) == -1.0


def test_rank_scores_give_every_point_beyond_the_maximum_the_same_score():
    """Phi^-1((i - 1/2)/n) is finite, but a new point above the maximum gets the maximum's score."""
    x = np.random.default_rng(3).standard_normal(1000)
    top = stats.norm.ppf((np.searchsorted(np.sort(x), [x.max(), x.max() + 0.5, x.max() + 5],
                                          side="right") - 0.5) / x.size)
    assert np.all(top == stats.norm.ppf(1 - 0.5 / x.size))
    assert np.isfinite(top).all()


def test_kde_tail_beyond_the_data_is_set_by_the_kernel_not_the_truth():
    """Five units beyond the maximum a Gaussian KDE's tail is many orders below the true tail."""
    x = np.random.default_rng(7).standard_normal(1000)
    kde = GaussianKDE(bandwidth="scott").fit(x)
    far = x.max() + 5.0
    assert 0 < kde.sf(far) < 1e-30 * stats.norm.sf(far)


# --- smooth CDFs and mixtures ----------------------------------------------------------------


def test_kde_cdf_tends_to_the_middle_of_the_jump_at_a_data_point():
    """F_h -> F_n holds away from the data only; at x_i it tends to F_n(x_i) - 1/(2n)."""
    x = np.array([-1.0, 0.0, 0.3, 2.0, 2.5])
    tiny = GaussianKDE(bandwidth=1e-6).fit(x)
    np.testing.assert_allclose(tiny.cdf(x), ECDF(x).cdf(x) - 1 / (2 * x.size), atol=1e-12)
    between = (x[:-1] + x[1:]) / 2
    np.testing.assert_allclose(tiny.cdf(between), ECDF(x).cdf(between), atol=1e-12)


def test_running_sum_is_first_order_and_trapezoid_is_far_better():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-2.0, 0.5, 500), rng.normal(1.5, 0.8, 500)])
    kde = GaussianKDE(bandwidth=0.2).fit(x)
    errors = []
    for points in (601, 1201):
        grid = np.linspace(-6.0, 6.0, points)
        exact, f = kde.cdf(grid), kde.pdf(grid)
        riemann = np.cumsum(f) * (grid[1] - grid[0])
        trap = exact[0] + integrate.cumulative_trapezoid(f, grid, initial=0)
        errors.append((np.max(np.abs(riemann - exact)), np.max(np.abs(trap - exact))))
    (r1, t1), (r2, t2) = errors
    assert 1.7 < r1 / r2 < 2.3          # halving the spacing halves the running-sum error
    assert 3.4 < t1 / t2 < 4.6          # and quarters the trapezoid error
    assert t1 < r1 / 50


def test_mixture_likelihood_is_unbounded_for_two_components():
    """A component on one data point with a shrinking scale beats EM's fit without limit."""
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(-2.0, 0.5, 300), rng.normal(1.5, 0.8, 300)])
    em = GaussianMixtureCDF(n_components=2, random_state=0).fit(x)
    em_total = x.size * em.score(x)
    mu, sd = x.mean(), x.std()

    def total(scale):
        parts = np.stack([np.log(1 - 1 / x.size) + stats.norm.logpdf(x, mu, sd),
                          np.log(1 / x.size) + stats.norm.logpdf(x, x[0], scale)])
        return special.logsumexp(parts, axis=0).sum()

    with np.errstate(over="ignore"):
        values = [total(s) for s in (1e-10, 1e-100, 1e-300)]
    assert values[0] < values[1] < values[2]
    assert values[2] > em_total
    assert em.reg_covar == 1e-6     # the variance floor that keeps EM away from these spikes


def test_kde_cdf_error_is_of_the_order_of_the_ecdf_error():
    """Smoothing lowers a CDF's error only at second order: the KDE's is more than half the ECDF's."""
    rng = np.random.default_rng(3)
    grid = np.linspace(-6.0, 6.0, 801)
    ratios = []
    for _ in range(6):
        x = np.concatenate([rng.normal(-2.0, 0.5, 3000), rng.normal(1.5, 0.8, 3000)])
        s = np.sort(x)
        truth = 0.5 * (stats.norm.cdf(s, -2.0, 0.5) + stats.norm.cdf(s, 1.5, 0.8))
        k = np.arange(1, s.size + 1) / s.size
        ecdf_err = max(np.max(k - truth), np.max(truth - k + 1 / s.size))
        t = 0.5 * (stats.norm.cdf(grid, -2.0, 0.5) + stats.norm.cdf(grid, 1.5, 0.8))
        kde_err = np.max(np.abs(GaussianKDE(bandwidth="isj").fit(x).cdf(grid) - t))
        ratios.append(kde_err / ecdf_err)
    assert 0.5 < np.mean(ratios) < 1.0


# --- bandwidth ---------------------------------------------------------------------------------


def test_scott_is_the_normal_reference_formula_and_silverman_is_not():
    r_normal = integrate.quad(lambda t: (stats.norm.pdf(t) * (t**2 - 1)) ** 2, -np.inf, np.inf)[0]
    x = np.random.default_rng(4).standard_normal(2000)
    n, sd = x.size, x.std(ddof=1)
    amise = (1 / (2 * math.sqrt(math.pi) * r_normal * n)) ** 0.2 * sd
    assert scott_bandwidth(x) == pytest.approx(amise, rel=1e-10)
    iqr = np.subtract(*np.percentile(x, [75, 25]))
    assert silverman_bandwidth(x) == pytest.approx(0.9 * min(sd, iqr / 1.34) * n**-0.2, rel=1e-10)
    assert silverman_bandwidth(x) < 0.9 * amise   # a different, smaller rule, not the formula


def test_trapezoid_rule_for_the_squared_kde_at_the_smallest_bandwidth():
    """The integral of the squared KDE at h = 0.06 on the chapter's grid is exact to 1e-12."""
    rng = np.random.default_rng(5)
    c = rng.choice(2, size=200)
    x = rng.normal(np.array([-2.0, 1.5])[c], np.array([0.5, 0.8])[c])
    h = 0.06
    exact = stats.norm.pdf(x[:, None] - x[None, :], scale=math.sqrt(2) * h).mean()
    grid = np.linspace(-7.0, 7.5, 601)
    numeric = integrate.trapezoid(GaussianKDE(bandwidth=h).fit(x).pdf(grid) ** 2, grid)
    assert abs(numeric / exact - 1) < 1e-12


# --- Jacobians ---------------------------------------------------------------------------------


def test_ks_null_fluctuation_exceeds_the_cdf_error_at_m_6000():
    """The chapter's KDE map on its own data: CDF error below the KS statistic's null median."""
    rng = np.random.default_rng(20240612)
    x = np.concatenate([rng.normal(-2.0, 0.5, 3000), rng.normal(1.5, 0.8, 3000)])
    grid = np.linspace(-7.0, 8.0, 3001)
    truth = 0.5 * (stats.norm.cdf(grid, -2.0, 0.5) + stats.norm.cdf(grid, 1.5, 0.8))
    err = np.max(np.abs(GaussianKDE(bandwidth="isj").fit(x).cdf(grid) - truth))
    assert 0 < err < stats.kstwo.ppf(0.5, 6000) < stats.kstwo.ppf(0.95, 6000)


def test_ridge_ceiling_is_minus_the_entropy():
    ceiling = -math.log(2 * math.pi * math.e) - math.log(0.4)
    rng = np.random.default_rng(6)
    x1, eta = rng.standard_normal((2, 400_000))
    logp = stats.norm.logpdf(x1) + stats.norm.logpdf(0.4 * eta, scale=0.4)
    assert abs(logp.mean() - ceiling) < 4 * logp.std() / math.sqrt(logp.size)


# --- image KDE ---------------------------------------------------------------------------------


@pytest.mark.parametrize("c", [2.0, 256 / 255, 0.5])
def test_units_c_times_larger_shift_log_density_by_plus_d_log_c(c):
    """Values divided by c (units c times larger), sigma too: every log-density moves by +d log c."""
    rng = np.random.default_rng(8)
    train, data = rng.random((40, 6)), rng.random((15, 6))
    before = log_likelihood(train, data, 0.3, per_sample=True, progress=False)
    after = log_likelihood(train / c, data / c, 0.3 / c, per_sample=True, progress=False)
    np.testing.assert_allclose(after - before, 6 * math.log(c), rtol=1e-10)


def test_bits_per_dimension_floor_of_a_kde_of_width_sigma():
    """log q <= -(d/2) log(2 pi sigma^2), so bits/dim >= 8 + log2(sigma sqrt(2 pi)) (7.004 at 0.2)."""
    sigma, d = 0.2, 50
    rng = np.random.default_rng(9)
    train = rng.integers(0, 256, (30, d)) / 256
    own = log_likelihood(train, train, sigma, per_sample=True, progress=False)
    assert np.all(own <= -0.5 * d * math.log(2 * math.pi * sigma**2) + 1e-9)
    floor = 8 + math.log2(sigma * math.sqrt(2 * math.pi))
    assert floor == pytest.approx(7.004, abs=5e-4)
    assert np.all(8 - own / (d * math.log(2)) >= floor - 1e-12)


def test_image_chapter_reports_counts_not_rounded_shares():
    """199 of 200 prints as "100 %" at .0f: the chapter quotes the count."""
    assert f"{100 * 199 / 200:.0f}" == "100"
    text = _markdown("08_image_kde.ipynb")
    assert "{glue:text}`count_data`" in text
    assert "share_data:.0f" not in text and "share_centres:.0f" not in text


def test_image_chapter_states_the_plus_sign():
    text = _markdown("08_image_kde.ipynb")
    assert r"$+d \log c$" in text
    assert "shifts every log-density by $-d" not in text


# --- KL divergence -----------------------------------------------------------------------------


def _reverse_kl_symmetric(theta, nodes, weights):
    mu, log_s = theta
    z = mu + math.exp(log_s) * nodes
    logp = special.logsumexp(np.stack([stats.norm.logpdf(z, -2.0, 0.6),
                                       stats.norm.logpdf(z, 2.0, 0.6)]), axis=0) + math.log(0.5)
    return -(0.5 * math.log(2 * math.pi * math.e) + log_s) - float(weights @ logp)


def test_reverse_kl_starts_near_the_middle_go_to_the_modes_except_the_middle_itself():
    nodes, w = hermegauss(200)
    w = w / w.sum()
    ends = {}
    for mu0 in (-0.3, 0.0, 0.3):
        fit = optimize.minimize(_reverse_kl_symmetric, (mu0, 0.0), args=(nodes, w),
                                method="Nelder-Mead",
                                options=dict(xatol=1e-9, fatol=1e-12, maxiter=4000))
        ends[mu0] = fit
    assert ends[-0.3].x[0] < -1.5 and ends[0.3].x[0] > 1.5        # on the modes
    assert abs(ends[0.0].x[0]) < 1e-6                             # the broad solution
    assert ends[0.0].fun > ends[0.3].fun + 0.1


# --- structure: figures, solutions, references ---------------------------------------------------


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_glued_figure_has_alt_text(path):
    text = "\n".join("".join(c["source"]) for c in _cells(path, "markdown"))
    figures = re.findall(r"```\{glue:figure\}[^\n]*\n((?::[^\n]*\n)*)", text)
    assert figures, f"{path.name} has no glued figure"
    for options in figures:
        assert re.search(r"^:alt: \S.{40,}", options, re.M), f"{path.name}: {options!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_solutions_with_code_are_gated_and_executed(path):
    """No code hidden in a solution's text: code lives in cells between solution-start and -end.

    A solution in prose only may stay a plain ``{solution}`` directive.
    """
    cells = _cells(path)
    text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    for match in re.finditer(r"(`{3,})\{solution\} (.*?)\n\1(?:\n|$)", text, flags=re.S):
        assert "```" not in match.group(2), f"code inside a prose solution in {path.name}"
    inside, code_cells = False, 0
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            assert "```python" not in source
            last_start, last_end = source.rfind("{solution-start}"), source.rfind("{solution-end}")
            if max(last_start, last_end) >= 0:
                inside = last_start > last_end
        elif inside:
            code_cells += 1
    assert text.count("{solution-start}") == text.count("{solution-end}")
    assert code_cells >= text.count("{solution-start}")


def test_jacobian_chapter_points_to_the_sums_of_normal_cdfs():
    text = _markdown("06_jacobians.ipynb")
    paragraph = text[text.index("With `mpmath` at 50 significant digits"):][:400]
    assert "{eq}`kde-cdf`" in paragraph and "{eq}`mixture-cdf`" in paragraph
