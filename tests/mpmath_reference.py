"""Independent high-precision references (mpmath) for weighted 1-D Gaussian mixtures."""

import mpmath as mp
import numpy as np

MP_DPS = 60
FUNCS = ("pdf", "logpdf", "cdf", "sf", "logcdf", "logsf")


def mp_log_ndtr(z):
    """log Phi(z) in mpmath; an asymptotic series where mpmath's erfc cannot reach."""
    z = mp.mpf(z)
    if z < -1e4:
        z2 = z * z
        series = 1 - 1 / z2 + 3 / z2**2 - 15 / z2**3 + 105 / z2**4 - 945 / z2**5
        return -z2 / 2 - mp.log(-z) - mp.log(2 * mp.pi) / 2 + mp.log(series)
    if z > 1e4:
        return -mp.exp(mp_log_ndtr(-z))
    if z > 0:
        return mp.log1p(-mp.ncdf(-z))
    return mp.log(mp.ncdf(z))


def mp_logsumexp(values):
    values = [v for v in values if v != -mp.inf]
    if not values:
        return -mp.inf
    top = max(values)
    return top + mp.log(mp.fsum(mp.exp(v - top) for v in values))


def mp_mixture_logs(x, means, scales, weights):
    """(log F, log S, log f) of a mixture at the double ``x``, in mpmath at MP_DPS digits."""
    with mp.workdps(MP_DPS):
        w = [mp.mpf(float(v)) for v in weights]
        total = mp.fsum(w)
        log_w = [mp.log(v / total) if v > 0 else -mp.inf for v in w]
        x = mp.mpf(float(x))
        zs = [(x - mp.mpf(float(m))) / mp.mpf(float(s)) for m, s in zip(means, scales)]
        log_f = mp_logsumexp(
            [a - mp.log(mp.mpf(float(s))) - z * z / 2 - mp.log(2 * mp.pi) / 2 for a, z, s in zip(log_w, zs, scales)]
        )
        log_F = mp_logsumexp([a + mp_log_ndtr(z) for a, z in zip(log_w, zs)])
        log_S = mp_logsumexp([a + mp_log_ndtr(-z) for a, z in zip(log_w, zs)])
        # Near one, the complement keeps the digits: log F = log1p(-S).
        if log_F > -0.5:
            log_F = mp.log1p(-mp.exp(log_S))
        elif log_S > -0.5:
            log_S = mp.log1p(-mp.exp(log_F))
        return {"logcdf": log_F, "logsf": log_S, "logpdf": log_f}


def mp_reference(x, means, scales, weights):
    scales = np.broadcast_to(np.asarray(scales, dtype=float), np.shape(means))
    out = {k: np.empty(len(x)) for k in FUNCS}
    for i, xi in enumerate(x):
        logs = mp_mixture_logs(xi, means, scales, weights)
        for name in ("cdf", "sf", "pdf"):
            out["log" + name][i] = float(logs["log" + name])
            with mp.workdps(MP_DPS):
                out[name][i] = float(mp.exp(logs["log" + name]))
    return out


def assert_close_or_exact_limit(actual, expected, rtol, name):
    """Relative comparison where the reference is a normal double, exact equality elsewhere."""
    normal = np.isfinite(expected) & (np.abs(expected) > 1e-300)
    np.testing.assert_allclose(actual[normal], expected[normal], rtol=rtol, atol=0, err_msg=name)
    # Subnormal, zero or infinite references: the double answer must match to the last subnormal.
    np.testing.assert_allclose(actual[~normal], expected[~normal], rtol=1e-6, atol=1e-320, err_msg=name)
