"""The compiled row kernel of the image KDE: one pass over each data row's cross products.

For a block of data rows and a chunk of training images, :func:`fold_lattice` (exact integer
distances) and :func:`fold_float64` (the float64 expansion) return, per row, the smallest squared
distance ``m`` and, per sigma, the sum of the relative terms

.. math:: \\sum_j \\exp\\bigl(-(D_j - m)\\, c_s\\bigr), \\qquad c_s = \\frac{1}{2 \\sigma_s^2},

evaluated as the schedule says (see :mod:`kdelib.image._kernels`): every term for a *dense*
sigma, by :func:`exp_nonpositive` or by squarings of another sigma's terms, and only the terms
within the sigma's drop distance for a *near* sigma. The row's distances are formed once, in a
buffer the size of the training chunk, and every sum reads them from cache: no full-size
intermediate array is written. The functions are compiled by Numba on first use (cached on
disk) and release the GIL, so the worker threads of :mod:`kdelib._parallel` run them in parallel.

Sums are accumulated in several lanes at once (the compiler may reassociate them, so the last
bits depend on the CPU's vector width). Each lane adds positive terms, so a row's sum over a chunk
of ``m`` training images has relative error at most about ``m / L`` units in the last place
(``L >= 2`` lanes): below 1e-12 for the ``m = 10,000`` of MNIST on any x86-64 CPU; the sweep
agrees with the plain float64 reference to 3e-15 per row.
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["exp_nonpositive", "fold_lattice", "fold_float64", "relative_distances"]

# Cody-Waite split of ln 2: LN2_HI has 11 trailing zero bits, so k * LN2_HI is exact for
# |k| < 2**11 and x - k * LN2_HI is exact (Sterbenz).
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e+00
# Adding 1.5 * 2**52 rounds a float of magnitude below 2**51 to an integer, which then sits in
# the low bits of the sum's representation.
_ROUNDER = 6755399441055744.0
_ROUNDER_BITS = int(np.float64(_ROUNDER).view(np.int64))
#: Below this argument the exponential is returned as 0 (exp(-708) = 3.3e-308, the normal range
#: ends at 2.2e-308): a term that small is negligible next to the row's largest term, exp(0) = 1.
EXP_FLOOR = -708.0
# 1/k! for k = 13, 12, ..., 0: the Taylor polynomial of exp, highest degree first (Horner)
_TAYLOR_TOP = 1.0 / math.factorial(13)
_TAYLOR_REST = tuple(1.0 / math.factorial(k) for k in range(12, -1, -1))

# Floating-point contraction (fused multiply-add) only: no reassociation, which would undo the
# rounding trick and the Cody-Waite split, or change how a float64 distance is rounded.
_EXACT_FLAGS = {"contract"}
# Loops that sum positive terms may be reassociated into several lanes (vectorised).
_SUM_FLAGS = {"reassoc", "contract", "nsz"}


@intrinsic
def _bits_as_float(typingctx, bits):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return types.float64(types.int64), codegen


@intrinsic
def _float_as_bits(typingctx, value):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return types.int64(types.float64), codegen


@njit(fastmath=_EXACT_FLAGS, nogil=True, cache=True)
def exp_nonpositive(x):
    """``exp(x)`` for ``x <= 0``, branch-free so that loops over it are vectorised.

    .. math:: e^x = 2^k e^r, \\quad k = \\operatorname{round}(x / \\ln 2),\\quad
              r = x - k \\ln 2 \\in [-\\tfrac{\\ln 2}{2}, \\tfrac{\\ln 2}{2}],

    with ``r`` by the Cody-Waite split of ``ln 2``, ``e^r`` by its Taylor polynomial of degree
    13 (truncation below ``0.347**14 / 14! = 4.3e-18`` relative) in Horner form, and ``2^k``
    built from its bits. Within about one unit in the last place of ``exp(x)`` (the tests
    compare with mpmath). Arguments below ``EXP_FLOOR`` give 0.

    Examples
    --------
    >>> import math
    >>> from kdelib.image._fold import exp_nonpositive
    >>> abs(exp_nonpositive(-1.0) / math.exp(-1.0) - 1) < 4e-16
    True
    >>> exp_nonpositive(-750.0)
    0.0
    """
    xc = x if x > EXP_FLOOR else EXP_FLOOR
    shifted = xc * _INV_LN2 + _ROUNDER
    k = shifted - _ROUNDER
    r = (xc - k * _LN2_HI) - k * _LN2_LO
    p = _TAYLOR_TOP
    for coefficient in _TAYLOR_REST:  # unrolled by the compiler
        p = p * r + coefficient
    two_k = _bits_as_float((_float_as_bits(shifted) - _ROUNDER_BITS + 1023) << 52)
    value = p * two_k
    return value if x > EXP_FLOOR else 0.0


@njit(fastmath=_EXACT_FLAGS, nogil=True, cache=True)
def _lattice_row(cross_row, train_sqnorm, buf):
    """``buf[j] = |a_j|^2 - 2 x.a_j`` (exact integers) and its minimum."""
    # the float sum is an exact integer, stored exactly in the integer buffer
    buf[0] = cross_row[0] + train_sqnorm[0]
    lo = buf[0]
    for j in range(cross_row.shape[0]):
        buf[j] = cross_row[j] + train_sqnorm[j]
        lo = min(lo, buf[j])
    return lo


@njit(fastmath=_EXACT_FLAGS, nogil=True, cache=True)
def _float64_row(cross_row, train_sqnorm, x_sqnorm, buf):
    """``buf[j] = max(|x|^2 + |a_j|^2 - 2 x.a_j, 0)`` in float64 (rounding can go below 0).

    The minimum is taken over the bit patterns: for non-negative doubles they order as int64
    like the values (-0.0, the one negative pattern, equals 0), and an integer minimum is
    vectorised where a float one is not.
    """
    lowest = _float_as_bits(np.inf)
    for j in range(cross_row.shape[0]):
        d = max(x_sqnorm + train_sqnorm[j] + cross_row[j], 0.0)
        buf[j] = d
        lowest = min(lowest, _float_as_bits(d))
    return _bits_as_float(lowest)


@njit(fastmath=_SUM_FLAGS, nogil=True, cache=True)
def _sum_exp(buf, lo, neg_coef, terms):
    """``terms[j] = exp((buf[j] - lo) * neg_coef)``; returns their sum."""
    total = 0.0
    for j in range(buf.shape[0]):
        t = exp_nonpositive(np.float64(buf[j] - lo) * neg_coef)
        terms[j] = t
        total += t
    return total


@njit(fastmath=_SUM_FLAGS, nogil=True, cache=True)
def _sum_squared(terms, times):
    """Square ``terms`` in place ``times`` times (``times >= 1``); returns the new sum."""
    for _ in range(times - 1):
        for j in range(terms.shape[0]):
            terms[j] = terms[j] * terms[j]
    total = 0.0
    for j in range(terms.shape[0]):
        t = terms[j] * terms[j]
        terms[j] = t
        total += t
    return total


@njit(nogil=True, cache=True)
def _near_candidates(buf, lo, limit, index):
    """Indices ``j`` with ``buf[j] - lo <= limit`` into ``index``; returns their count.

    Branch-free (every index is written, the count advances only on a hit): near terms are
    rare, and a branch per distance would cost more than the terms themselves.
    """
    count = 0
    for j in range(buf.shape[0]):
        index[count] = j
        count += buf[j] - lo <= limit
    return count


@njit(nogil=True, cache=True)
def _add_near(buf, lo, near_sigma, near_coef, near_drop, sums, row, index):
    """Add, for each near sigma, the terms with ``buf[j] - lo <= drop`` (largest drop first)."""
    for q in range(_near_candidates(buf, lo, near_drop[0], index)):
        y = np.float64(buf[index[q]] - lo)
        for s in range(near_sigma.shape[0]):
            if y > near_drop[s]:
                break
            sums[near_sigma[s], row] += exp_nonpositive(-y * near_coef[s])


@njit(nogil=True, cache=True)
def _fold_row(buf, lo, row, dense_sigma, dense_coef, chain_sigma, chain_times, chain_start,
              near_sigma, near_coef, near_drop, sums, terms, index):
    for g in range(dense_sigma.shape[0]):
        sums[dense_sigma[g], row] = _sum_exp(buf, lo, -dense_coef[g], terms)
        for q in range(chain_start[g], chain_start[g + 1]):
            sums[chain_sigma[q], row] = _sum_squared(terms, chain_times[q])
    if near_sigma.shape[0]:
        _add_near(buf, lo, near_sigma, near_coef, near_drop, sums, row, index)


@njit(nogil=True, cache=True)
def fold_lattice(cross, train_sqnorm, dense_sigma, dense_coef, chain_sigma, chain_times,
                 chain_start, near_sigma, near_coef, near_drop, mins, sums):
    """Per-row minima and relative sums on the lattice.

    ``cross`` (r, m) holds ``-2 x.a`` as exact integers (float32 or float64), ``train_sqnorm``
    (m,) ``|a|^2`` as int32 or int64 (the distances' integer type). ``mins`` (r,) receives
    ``min_j(|a_j|^2 - 2 x.a_j)`` and ``sums`` (s, r), zeroed by the caller, the relative sums.
    Dense sigmas ``dense_sigma[g]`` (with ``1 / (2 sigma^2)`` ``dense_coef[g]``) take every term
    by an exponential, followed by the sigmas ``chain_sigma[chain_start[g]:chain_start[g+1]]``,
    each from the previous one's terms by ``chain_times`` squarings; the near sigmas, ordered
    by decreasing ``near_drop``, take the terms within their drop distance.
    """
    n_rows, m = cross.shape
    buf = np.empty(m, dtype=train_sqnorm.dtype)
    terms = np.empty(m)
    index = np.empty(m, dtype=np.int64)
    for row in range(n_rows):
        lo = _lattice_row(cross[row], train_sqnorm, buf)
        mins[row] = lo
        _fold_row(buf, lo, row, dense_sigma, dense_coef, chain_sigma, chain_times, chain_start,
                  near_sigma, near_coef, near_drop, sums, terms, index)


@njit(nogil=True, cache=True)
def fold_float64(cross, train_sqnorm, x_sqnorm, dense_sigma, dense_coef, chain_sigma,
                 chain_times, chain_start, near_sigma, near_coef, near_drop, mins, sums):
    """As :func:`fold_lattice` for the float64 expansion: ``x_sqnorm`` (r,) is ``|x|^2``."""
    n_rows, m = cross.shape
    buf = np.empty(m)
    terms = np.empty(m)
    index = np.empty(m, dtype=np.int64)
    for row in range(n_rows):
        lo = _float64_row(cross[row], train_sqnorm, x_sqnorm[row], buf)
        mins[row] = lo
        _fold_row(buf, lo, row, dense_sigma, dense_coef, chain_sigma, chain_times, chain_start,
                  near_sigma, near_coef, near_drop, sums, terms, index)


@njit(nogil=True, cache=True)
def relative_distances(cross, train_sqnorm, x_sqnorm, on_lattice, out):
    """Each row's distances minus the row's minimum, formed as the fold functions form them.

    ``out`` (r, m) has the distances' type: an integer type on the lattice (``x_sqnorm`` is
    then ignored), float64 for the expansion. Used to choose the schedule from a sample.
    """
    for row in range(cross.shape[0]):
        if on_lattice:
            lo = _lattice_row(cross[row], train_sqnorm, out[row])
        else:
            lo = _float64_row(cross[row], train_sqnorm, x_sqnorm[row], out[row])
        for j in range(out.shape[1]):
            out[row, j] -= lo
