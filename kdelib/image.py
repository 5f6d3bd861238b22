r"""Exact mean log-likelihood of an isotropic Gaussian kernel density estimate on images.

Shape contract: ``train`` (k, d) and ``data`` (n, d) hold one flattened image per row;
``sigmas`` is a scalar or a 1-D array of s bandwidths. :func:`log_likelihood` returns an
array of ``np.shape(sigmas)`` (means over the rows of ``data``), or of
``np.shape(sigmas) + (n,)`` with ``per_sample=True``.
"""

import math
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ._validation import as_2d_float, as_positive_1d, check_positive_int

__all__ = ["DistancePlan", "distance_plan", "log_likelihood", "reference_log_likelihood"]

#: Terms dropped by the sparse path add less than 2**-NEGLIGIBLE_LOG2 to the row's sum,
#: relative to the sum itself.
NEGLIGIBLE_LOG2 = 60

#: Largest integer code accepted for the exact lattice path (8-bit pixel intensities).
MAX_CODE = 255

#: Lattice scales tried, in this order: codes/256 (MNIST), codes/255 (CIFAR), raw codes.
LATTICE_SCALES = (256, 255, 1)

#: A sigma whose terms above the drop threshold fill at most this fraction of a block is
#: evaluated on the gathered near terms only (the sparse path).
SPARSE_FRACTION = 0.2

#: Pixels per float32 GEMM chunk for rows without a whole-row certificate:
#: 256 * 255**2 < 2**24, so every partial sum of a chunk is an exact float32 integer.
FLOAT32_COLUMNS = 256

_FLOAT32_EXACT = 1 << 24  # every integer of magnitude <= 2**24 is a float32
_EXP_UNDERFLOW = 746.0  # exp(-746) == 0.0 in float64
_TARGET_BLOCK_ELEMENTS = 1 << 21  # data rows x train rows per GEMM block
_TARGET_SUBBLOCK_ELEMENTS = 1 << 17  # elements per element-wise pass (stays in L2)
_MAX_TRAIN_CHUNK = 1 << 15  # train rows per GEMM; longer training sets are streamed


# ---------------------------------------------------------------------------------------------
# Validation


def _check_pair(train, data):
    if train.shape[1] != data.shape[1]:
        raise ValueError(
            f"train and data must have the same number of pixels per row; got "
            f"{train.shape[1]} and {data.shape[1]}."
        )


# ---------------------------------------------------------------------------------------------
# Distance plan: which exact arithmetic computes the squared distances


@dataclass(frozen=True)
class DistancePlan:
    """How :func:`log_likelihood` computes the squared distances for a pair of data sets.

    Attributes
    ----------
    method : {"lattice", "float64"}
        ``"lattice"``: every value is ``k / scale`` with an integer code ``0 <= k <= 255``, so
        squared distances are computed exactly in integer arithmetic and scaled once.
        ``"float64"``: the expansion ``|x|^2 + |a|^2 - 2 x.a`` in float64.
    scale : int or None
        The lattice scale (256, 255 or 1), or None for ``"float64"``.
    float32_rows : int
        Data rows whose cross products run as one float32 GEMM, certified exact by a bound
        on their partial sums (see Notes of :func:`log_likelihood`).
    chunked_rows : int
        Data rows whose cross products run as float32 GEMMs over chunks of at most
        ``FLOAT32_COLUMNS`` pixels (always exact for 8-bit codes), summed in float64.
        On the lattice every other row uses one float64 GEMM (exact too): that happens only
        if this BLAS fails the float32 exactness check.
    n_rows : int
        Number of data rows.
    gemm_columns : int
        Columns entering the GEMM: pixels that are zero in every training image are left out
        (their products are exactly zero).
    """

    method: str
    scale: object
    float32_rows: int
    chunked_rows: int
    n_rows: int
    gemm_columns: int

    def describe(self):
        """One line for logs and the command-line table."""
        if self.method == "lattice":
            other = self.n_rows - self.float32_rows - self.chunked_rows
            gemm = (f"float32 GEMM for {self.float32_rows} of {self.n_rows} rows, "
                    f"column-chunked float32 for {self.chunked_rows}, float64 for {other}")
            return (f"exact integer distances (values k/{self.scale}); {gemm}; "
                    f"{self.gemm_columns} GEMM columns")
        return f"float64 GEMM expansion, {self.gemm_columns} GEMM columns"


def _lattice_codes(x, rows_per_chunk=2048):
    """Return ``(scale, codes)`` if ``x == codes / scale`` exactly (codes in 0..255), else None.

    Checked chunk by chunk so that a failing scale is abandoned early and each chunk stays in
    cache.
    """
    for scale in LATTICE_SCALES:
        codes = np.empty(x.shape, dtype=np.uint8)
        power_of_two = scale & (scale - 1) == 0
        for start in range(0, x.shape[0], rows_per_chunk):
            part = x[start:start + rows_per_chunk]
            scaled = part * scale  # exact for a power of two: then k == scaled suffices
            k = np.rint(scaled)
            if k.min() < 0 or k.max() > MAX_CODE:
                break
            exact = np.array_equal(k, scaled) if power_of_two else np.array_equal(k / scale, part)
            if not exact:
                break
            codes[start:start + len(part)] = k
        else:
            return scale, codes
    return None


_float32_gemm_check = {}


def _float32_gemm_is_exact():
    """Check once that this BLAS computes float32 products of 8-bit codes exactly.

    The canary is a GEMM large enough for the BLAS's regular kernels, with dot products up
    to 258 * 255**2 = 16,776,450 <= 2**24 that need every bit of the float32 significand;
    a BLAS with reduced internal precision fails it (then float64 is used throughout).
    """
    if "ok" not in _float32_gemm_check:
        codes = np.random.default_rng(0).integers(0, MAX_CODE + 1, size=(160, 258))
        codes[0] = MAX_CODE
        exact = codes @ codes.T
        single = codes.astype(np.float32)
        _float32_gemm_check["ok"] = bool(np.array_equal(single @ single.T, exact))
    return _float32_gemm_check["ok"]


def _row_stats(codes, columns, rows_per_chunk=2048):
    """Exact per-row integer statistics of codes (0..255), chunk by chunk.

    Returns the sum and the maximum over ``columns`` and the sum of squares over all columns,
    as int64. All are exact: the sums of squares are integers below 2**53 when summed in
    float64 (at most 255**2 per pixel).
    """
    n = codes.shape[0]
    l1, top, l2sq = (np.zeros(n, dtype=np.int64) for _ in range(3))
    for start in range(0, n, rows_per_chunk):
        part = codes[start:start + rows_per_chunk]
        stop = start + len(part)
        wide = part.astype(np.float64)  # sums of squares < 2**53: exact in float64
        l2sq[start:stop] = np.einsum("ij,ij->i", wide, wide)
        if len(columns):
            gemm_part = part[:, columns]
            l1[start:stop] = gemm_part.sum(axis=1, dtype=np.int64)
            top[start:stop] = gemm_part.max(axis=1)
    return l1, top, l2sq


def _float32_safe_rows(x_stats, a_stats):
    """Rows of data whose products with every training row are exact in float32.

    With non-negative integer terms every partial sum of ``x . a`` lies between 0 and the
    full sum, in any summation order, so the float32 GEMM is exact if the full sum is at
    most 2**24 (doubled by the factor -2 folded into the training operand: the even
    integers up to 2**25 are floats too). Three bounds on ``x . a`` are used, each exact in
    int64: Hoelder (1, inf), Cauchy-Schwarz and Hoelder (inf, 1). The statistics come from
    :func:`_row_stats` (zero training columns add nothing to ``x . a``).
    """
    x_l1, x_top, x_l2sq = x_stats  # |x|^2 over all columns bounds that over the GEMM ones
    a_l1, a_top, a_l2sq = (int(v.max()) for v in a_stats)
    return ((x_l1 * a_top <= _FLOAT32_EXACT)
            | (x_l2sq * a_l2sq <= _FLOAT32_EXACT**2)
            | (x_top * a_l1 <= _FLOAT32_EXACT))


def distance_plan(train, data):
    """Return the :class:`DistancePlan` that :func:`log_likelihood` uses for these arrays.

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib.image import distance_plan
    >>> x = np.arange(12).reshape(3, 4) / 256
    >>> distance_plan(x, x).method
    'lattice'
    """
    train = as_2d_float(train, "train")
    data = as_2d_float(data, "data")
    _check_pair(train, data)
    return _prepare(train, data).plan


# ---------------------------------------------------------------------------------------------
# The operands shared by every block


@dataclass
class _Operands:
    plan: DistancePlan
    columns: np.ndarray  # GEMM columns (pixels not zero in every training image)
    data_source: np.ndarray  # codes (uint8) or float64 values, all columns
    data_sqnorm: np.ndarray  # |x|^2 in distance units, all columns
    train_sqnorm: np.ndarray  # |a|^2 in distance units
    train_f32: object  # -2 a (float32), lattice only
    train_f64: object  # -2 a (float64)
    gemm_mode: np.ndarray  # per data row: "float32", "chunked" or "float64"
    delta_dtype: type  # dtype of the distance blocks: exact integers on the lattice
    units: float  # distance units per squared pixel unit (scale**2, or 1)
    n_features: int


def _on_both(function, first, second, *args):
    """``(function(first, *args), function(second, *args))``, in two threads when large."""
    if first.size + second.size < 1 << 20:
        return function(first, *args), function(second, *args)
    with ThreadPoolExecutor(max_workers=2) as pool:  # NumPy releases the GIL in its loops
        later = pool.submit(function, second, *args)
        return function(first, *args), later.result()


def _prepare(train, data):
    """Build the GEMM operands and the distance plan (exact lattice if possible)."""
    lattice_train, lattice_data = _on_both(_lattice_codes, train, data)
    if lattice_train:
        columns = np.flatnonzero(lattice_train[1].max(axis=0))
    else:
        columns = np.flatnonzero(np.any(train != 0, axis=0))
    if lattice_train and lattice_data and lattice_train[0] == lattice_data[0]:
        scale, a_codes = lattice_train
        x_codes = lattice_data[1]
        a_stats, x_stats = _on_both(_row_stats, a_codes, x_codes, columns)
        if _float32_gemm_is_exact():
            mode = np.where(_float32_safe_rows(x_stats, a_stats), "float32", "chunked")
        else:
            mode = np.full(len(x_codes), "float64")
        plan = DistancePlan("lattice", scale, int(np.sum(mode == "float32")),
                            int(np.sum(mode == "chunked")), len(x_codes), len(columns))
        # |a|^2 - 2 x.a lies in [-2 d 255^2, d 255^2]; int32 holds it up to d = 11,010.
        delta_dtype = np.int32 if 3 * train.shape[1] * MAX_CODE**2 < 2**31 else np.int64
        a_gemm = a_codes[:, columns]
        float64 = bool(np.any(mode == "float64"))
        train_op = -2 * a_gemm.astype(np.float64 if float64 else np.float32)
        return _Operands(
            plan=plan,
            columns=columns,
            data_source=x_codes,
            data_sqnorm=x_stats[2].astype(np.float64),
            train_sqnorm=a_stats[2].astype(delta_dtype),
            train_f32=None if float64 else np.ascontiguousarray(train_op),
            train_f64=np.ascontiguousarray(train_op) if float64 else None,
            gemm_mode=mode,
            delta_dtype=delta_dtype,
            units=float(scale) ** 2,
            n_features=train.shape[1],
        )
    plan = DistancePlan("float64", None, 0, 0, len(data), len(columns))
    return _Operands(
        plan=plan,
        columns=columns,
        data_source=data,
        data_sqnorm=np.einsum("ij,ij->i", data, data),
        train_sqnorm=np.einsum("ij,ij->i", train, train),
        train_f32=None,
        train_f64=np.ascontiguousarray(-2 * train[:, columns]),
        gemm_mode=np.full(len(data), "float64"),
        delta_dtype=np.float64,
        units=1.0,
        n_features=train.shape[1],
    )


# ---------------------------------------------------------------------------------------------
# Per-sigma constants: scales, drop thresholds, exponential tables


@dataclass
class _Kernel:
    coef: np.ndarray  # 1 / (2 sigma^2) in distance units, shape (s,)
    drop: np.ndarray  # a term with delta > drop[s] is negligible for sigma s
    tables: object  # (shift, [(hi, lo) per sigma]) on the lattice, else None


def _kernel(sigmas, operands, n_train):
    coef = 1.0 / (2.0 * sigmas**2 * operands.units)
    # Each dropped term is below exp(-T) times the row's largest term, and there are fewer
    # than n_train of them: the sum loses less than n_train * exp(-T) = 2**-NEGLIGIBLE_LOG2
    # of itself.
    threshold = math.log(n_train) + NEGLIGIBLE_LOG2 * math.log(2.0)
    drop = threshold / coef
    tables = None
    if operands.plan.method == "lattice":
        max_delta = operands.n_features * MAX_CODE**2
        tables = _exp_tables(coef, max_delta)
    return _Kernel(coef=coef, drop=drop, tables=tables)


def _exp_tables(coef, max_delta):
    """Split tables with ``exp(-delta c) = hi[delta >> shift] * lo[delta & (2**shift - 1)]``.

    Valid for every integer ``0 <= delta <= max_delta``. A ``hi`` table is cut where its
    entries underflow to zero; indices past its end are clipped onto that zero, which is the
    correctly rounded value of those terms.
    """
    shift = max(8, (int(max_delta).bit_length() + 1) // 2)
    n_hi_full = (int(max_delta) >> shift) + 1
    lo_steps = np.arange(1 << shift, dtype=np.float64)
    tables = []
    for c in coef:
        n_hi = min(n_hi_full, int(_EXP_UNDERFLOW / (c * 2.0**shift)) + 2)
        hi_steps = np.arange(n_hi, dtype=np.float64) * 2.0**shift
        tables.append((np.exp(-hi_steps * c), np.exp(-lo_steps * c)))
    return shift, tables


# ---------------------------------------------------------------------------------------------
# The streaming log-sum-exp over one block of data rows


class _Workspace:
    """Scratch arrays for one worker's sub-blocks, allocated once per block and reused."""

    def __init__(self, rows, cols, delta_dtype, n_terms, on_lattice):
        self.shape = (rows, cols)
        self.delta = np.empty(self.shape, dtype=delta_dtype)
        self.terms = [np.empty(self.shape) for _ in range(max(n_terms, 1))]
        self.part = np.empty(self.shape) if on_lattice else None
        self.high = np.empty(self.shape, dtype=np.intp) if on_lattice else None
        self.low = np.empty(self.shape, dtype=np.intp) if on_lattice else None

    def cut(self, name, rows):
        """The first ``rows`` rows of a scratch array (a contiguous view)."""
        array = getattr(self, name)
        return None if array is None else array[:rows]


@dataclass
class _Schedule:
    """How one chunk's sigmas are evaluated: gathered near terms, or every term."""

    sparse: list  # sigma indices, largest drop distance first
    dense: list  # steps ("table", s) or ("square", s, base_position, times)


def _schedule(delta, kernel):
    """Split the sigmas into sparse and dense ones from a column sample of ``delta``.

    A dense sigma whose ``1 / (2 sigma^2)`` is ``2**j`` times that of an earlier dense one
    (``j <= 4``) reuses its terms by ``j`` squarings: ``exp(-2x) = exp(-x)**2``, which keeps
    the relative error within about ``2**j`` units in the last place.
    """
    sample = np.sort(delta[:, ::17], axis=None)
    fractions = np.searchsorted(sample, kernel.drop, side="right") / max(sample.size, 1)
    dense_mask = fractions > SPARSE_FRACTION
    sparse = sorted(np.flatnonzero(~dense_mask), key=lambda s: -kernel.drop[s])
    steps = []
    done = []  # (coef, position in the dense list)
    for s in sorted(np.flatnonzero(dense_mask), key=lambda s: kernel.coef[s]):
        step = ("table", s)
        if kernel.tables is not None:
            for coef, position in done:
                ratio = kernel.coef[s] / coef
                times = round(math.log2(ratio)) if ratio > 1.5 else 0
                if 1 <= times <= 4 and abs(ratio - 2.0**times) <= 1e-12 * ratio:
                    step = ("square", s, position, times)
                    break
        done.append((kernel.coef[s], len(steps)))
        steps.append(step)
    return _Schedule(sparse=sparse, dense=steps)


def _accumulate(ws, rows, row_min, sums, kernel, schedule, near):
    """Fold one sub-block into the running per-row minimum and sums.

    ``ws.delta[:rows]`` holds, for the data rows and a chunk of training rows, the squared
    distances up to a per-row constant (integers on the lattice, else float64); it is
    overwritten. ``row_min`` (r,) is the running minimum and ``sums`` (s, r) the running sums
    of ``exp(-(D - row_min) c)``; both are updated in place (the dense sigmas' sums here, the
    sparse ones' at the end of the chunk). The near terms of the sparse sigmas are appended to
    ``near`` as ``(delta, row, chunk minimum)``.
    """
    delta = ws.cut("delta", rows)
    chunk_min = delta.min(axis=1)
    new_min = np.minimum(row_min, chunk_min)
    moved = np.isfinite(row_min) & (new_min < row_min)
    if moved.any():  # a later chunk holds a closer training image: rescale the old sums
        sums[:, moved] *= np.exp(-np.outer(kernel.coef, row_min[moved] - new_min[moved]))
    row_min[:] = new_min
    np.subtract(delta, chunk_min[:, None], out=delta)
    if schedule.sparse:
        near.append(_near_terms(delta, chunk_min, kernel.drop[schedule.sparse[0]]))
    if schedule.dense:
        own = np.zeros_like(sums)  # this chunk's sums, relative to its own minimum
        if kernel.tables is not None:
            _add_dense_tables(ws, rows, own, kernel, schedule.dense)
        else:
            _add_dense_exp(ws, rows, own, kernel, schedule.dense)
        shift = chunk_min - new_min
        if shift.any():
            own *= np.exp(-np.outer(kernel.coef, shift))
        sums += own


def _near_terms(delta, chunk_min, limit):
    """The terms with ``delta <= limit``: values, rows and the rows' chunk minimum."""
    flat = delta.reshape(-1)
    index = np.flatnonzero(flat <= limit)
    rows = index // delta.shape[1]
    return flat[index].astype(np.float64), rows, chunk_min[rows].astype(np.float64)


def _add_sparse(near, row_min, sums, kernel, which):
    """Add a chunk's gathered near terms for the sparse sigmas, relative to ``row_min``.

    ``row_min`` is the running minimum after the chunk; later moves of the minimum rescale
    these sums like all others. A term left out has ``delta > drop[s]`` relative to its
    chunk's minimum, hence relative to any smaller minimum too: it is negligible for sigma s.
    """
    values = np.concatenate([part[0] for part in near])
    rows = np.concatenate([part[1] for part in near])
    offset = np.concatenate([part[2] for part in near]) - row_min[rows]
    if offset.any():  # only when the minimum moved in a later chunk
        values = values + offset
    for s in which:  # largest drop first: each sigma keeps a subset of the previous set
        keep = values <= kernel.drop[s]
        if not keep.all():
            values, rows = values[keep], rows[keep]
        terms = np.exp(values * -kernel.coef[s])
        sums[s] += np.bincount(rows, weights=terms, minlength=sums.shape[1])


def _add_dense_tables(ws, rows, sums, kernel, steps):
    """Add every term: ``exp(-delta c) = hi[delta >> shift] * lo[delta & mask]``."""
    shift, per_sigma = kernel.tables
    delta, high, low, part = (ws.cut(name, rows) for name in ("delta", "high", "low", "part"))
    np.right_shift(delta, shift, out=high, casting="unsafe")
    np.bitwise_and(delta, (1 << shift) - 1, out=low, casting="unsafe")
    for position, step in enumerate(steps):
        term = ws.terms[position][:rows]
        if step[0] == "table":
            hi_table, lo_table = per_sigma[step[1]]
            np.take(hi_table, high, out=term, mode="clip")
            np.take(lo_table, low, out=part, mode="clip")
            np.multiply(term, part, out=term)
        else:
            _, _, base, times = step
            np.multiply(ws.terms[base][:rows], ws.terms[base][:rows], out=term)
            for _ in range(times - 1):
                np.multiply(term, term, out=term)
        sums[step[1]] += term.sum(axis=1)


def _add_dense_exp(ws, rows, sums, kernel, steps):
    delta = ws.cut("delta", rows)
    term = ws.terms[0][:rows]
    for step in steps:
        s = step[1]
        np.multiply(delta, -kernel.coef[s], out=term)
        np.exp(term, out=term)
        sums[s] += term.sum(axis=1)


def _cross_products(x_op, train_op, mode):
    """``x_op @ train_op.T``; for ``"chunked"``, float32 GEMMs over column chunks, in float64.

    Each chunk has at most FLOAT32_COLUMNS pixels, so its partial sums are integers of
    magnitude below 2 * 256 * 255**2 < 2**25 (even): exact in float32. The chunk results are
    added in float64, exact below 2**53.
    """
    if mode != "chunked" or x_op.shape[1] <= FLOAT32_COLUMNS:
        return x_op @ train_op.T
    total = np.zeros((x_op.shape[0], train_op.shape[0]))
    for j in range(0, x_op.shape[1], FLOAT32_COLUMNS):
        part = x_op[:, j:j + FLOAT32_COLUMNS] @ train_op[:, j:j + FLOAT32_COLUMNS].T
        np.add(total, part, out=total)
    return total


def _score_block(rows, operands, kernel, mode, chunk, subblock):
    """Running minimum (r,) and sums (s, r) for the data rows ``rows``."""
    on_lattice = operands.plan.method == "lattice"
    source = operands.data_source[rows][:, operands.columns]
    if mode == "float64":
        x_op, train_op = source.astype(np.float64), operands.train_f64
    else:
        x_op, train_op = source.astype(np.float32), operands.train_f32
    x_sqnorm = operands.data_sqnorm[rows]
    n_train = train_op.shape[0]
    row_min = np.full(len(rows), np.inf)
    sums = np.zeros((len(kernel.coef), len(rows)))
    near = []
    schedule = None
    workspace = None
    for start in range(0, n_train, chunk):
        stop = min(start + chunk, n_train)
        cross = _cross_products(x_op, train_op[start:stop], mode)  # -2 x.a, exact on the lattice
        train_sqnorm = operands.train_sqnorm[start:stop]
        if workspace is None or workspace.shape[1] != stop - start:
            workspace = _Workspace(min(subblock, len(rows)), stop - start,
                                   operands.delta_dtype, len(kernel.coef), on_lattice)
        for r0 in range(0, len(rows), subblock):
            r1 = min(r0 + subblock, len(rows))
            delta = workspace.cut("delta", r1 - r0)
            # On the lattice |a|^2 - 2 x.a in exact integers; |x|^2 is added to the minimum.
            np.copyto(delta, cross[r0:r1], casting="unsafe")
            np.add(delta, train_sqnorm, out=delta)
            if not on_lattice:
                delta += x_sqnorm[r0:r1, None]
                np.maximum(delta, 0.0, out=delta)  # rounding can make |x - a|^2 < 0
            if schedule is None:
                schedule = _schedule(delta - delta.min(axis=1)[:, None], kernel)
            part = []
            _accumulate(workspace, r1 - r0, row_min[r0:r1], sums[:, r0:r1], kernel,
                        schedule, part)
            near += [(values, local + r0, base) for values, local, base in part]
        if schedule.sparse:  # once per chunk: few calls, and memory bounded by the chunk
            _add_sparse(near, row_min, sums, kernel, schedule.sparse)
            near = []
    if on_lattice:
        row_min += x_sqnorm
    return row_min, sums


# ---------------------------------------------------------------------------------------------
# Scheduling


def _blas_threads():
    from threadpoolctl import threadpool_info

    counts = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    return max(counts) if counts else (os.cpu_count() or 1)


def _blocks(operands, block_rows):
    """(rows, GEMM mode) pairs covering every data row once."""
    out = []
    for mode in ("float32", "chunked", "float64"):
        rows = np.flatnonzero(operands.gemm_mode == mode)
        out += [(rows[i:i + block_rows], mode) for i in range(0, len(rows), block_rows)]
    return out


def _want_progress(progress, work):
    if progress is None:
        return work > 2e11 and sys.stderr.isatty()
    return bool(progress)


def _run_blocks(blocks, score, n_threads, show_progress):
    from threadpoolctl import threadpool_limits

    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(blocks), desc="image KDE", unit="block")
    lock = threading.Lock()

    def task(block):
        result = score(*block)
        if bar is not None:
            with lock:
                bar.update()
        return result

    try:
        # One BLAS thread per worker: the workers already fill the cores, and idle BLAS
        # threads spinning after each GEMM would steal time from the element-wise passes.
        with threadpool_limits(limits=1, user_api="blas"):
            if n_threads == 1:
                return [task(block) for block in blocks]
            with ThreadPoolExecutor(max_workers=n_threads) as pool:
                return list(pool.map(task, blocks))
    finally:
        if bar is not None:
            bar.close()


# ---------------------------------------------------------------------------------------------
# Public entry points


def log_likelihood(train, data, sigmas, per_sample=False, *, block_size=None, n_threads=None,
                   progress=None, device=None):
    r"""Exact log-likelihood of ``data`` under the Gaussian KDE of ``train``, for many sigmas.

    Parameters
    ----------
    train : array-like, shape (k, d)
        Kernel centres, one flattened image per row.
    data : array-like, shape (n, d)
        Evaluation points.
    sigmas : float or array-like of shape (s,)
        Kernel standard deviations, in pixel units; all are evaluated from one pass over the
        distances.
    per_sample : bool, default=False
        Return the value of every row of ``data`` instead of the mean.
    block_size : int, optional
        Rows of ``data`` per GEMM block. The default keeps a block near 2 million distances
        (8-16 MiB of cross products); peak memory is about ``n_threads`` blocks plus the
        inputs and their integer codes.
    n_threads : int, optional
        Worker threads over row blocks; default the BLAS thread count. While they run, the
        BLAS is limited to one thread per worker (process-wide).
    progress : bool, optional
        Show a tqdm progress bar; default only for long runs on a terminal.
    device : {None, "cpu", "cuda", "cuda:N"}, optional
        ``"cuda"`` runs a plain float64 computation on the GPU with PyTorch or CuPy, if one of
        them is installed; nothing GPU-related is imported otherwise.

    Returns
    -------
    ndarray of float64
        Shape ``np.shape(sigmas)``, or ``np.shape(sigmas) + (n,)`` with ``per_sample=True``.

    Raises
    ------
    ValueError
        Non-2-D or empty arrays, different numbers of pixels, NaN or infinite values,
        non-positive sigmas, a non-positive ``block_size`` or ``n_threads``, an unknown
        device.
    ImportError
        ``device="cuda"`` without PyTorch or CuPy.
    RuntimeError
        ``device="cuda"`` with PyTorch installed but no CUDA device visible.

    See Also
    --------
    reference_log_likelihood : the plain float64 computation, for checks.
    distance_plan : which exact arithmetic is used for a pair of arrays.

    Notes
    -----
    For each row :math:`x` of ``data`` and each :math:`\sigma`,

    .. math::

        \log \hat p(x) = \log \frac{1}{k} \sum_{i=1}^{k}
            \mathcal{N}(x; a_i, \sigma^2 I_d)
        = \operatorname{logsumexp}_i\Bigl(-\frac{\lVert x - a_i \rVert^2}{2\sigma^2}\Bigr)
          - \log k - \frac{d}{2}\log(2\pi\sigma^2).

    *Distances.* :math:`\lVert x - a\rVert^2 = \lVert x\rVert^2 + \lVert a\rVert^2
    - 2\,x\cdot a`, the cross products by blocked GEMM, each block reused for every sigma.
    When every value is :math:`k/q` with integer :math:`0 \le k \le 255` (MNIST:
    :math:`q = 256`, CIFAR: :math:`q = 255`), the arithmetic runs on the integer codes and is
    exact: products are at most :math:`255^2`, and a row's cross products run as one float32
    GEMM if a Hoelder or Cauchy-Schwarz bound certifies that every partial sum stays an
    integer below :math:`2^{24}` (in any summation order); other rows (all of CIFAR) run as
    float32 GEMMs over chunks of 256 pixels (:math:`256 \cdot 255^2 < 2^{24}`) added in
    float64, exact below :math:`2^{53}`. A BLAS that fails a float32 exactness check at the
    first call gets float64 GEMMs instead (also exact on the lattice). Pixels that are zero in every training image are left out of the GEMM
    (their products are exactly zero) but kept in :math:`\lVert x\rVert^2`. Otherwise the
    expansion runs in float64 and each distance carries an absolute rounding error near
    :math:`\epsilon(\lVert x\rVert^2 + \lVert a\rVert^2)`, clamped at zero.
    :func:`distance_plan` reports the choice.

    *Log-sum-exp.* Each row is streamed over training chunks with a running minimum
    :math:`m` of the distances; terms :math:`e^{-(D_i - m)/(2\sigma^2)} \le 1` are summed
    and rescaled when the minimum moves. A term with :math:`(D_i - m)/(2\sigma^2) > T`,
    :math:`T = \log k + 60 \log 2`, is dropped only when few terms are that close (small
    sigma): all dropped terms together are below :math:`k e^{-T} = 2^{-60}` of the sum,
    which holds the term :math:`1`. On the lattice the remaining exponentials come from two
    tables, :math:`e^{-\delta c} = H[\delta \gg b]\, L[\delta \mathbin{\&} (2^b - 1)]` for the
    exact integer :math:`\delta = D_i - m` (a relative error of a few units in the last
    place); otherwise from ``np.exp``. A sigma whose :math:`c = 1/(2\sigma^2)` is
    :math:`2^j` times that of another (:math:`j \le 4`, e.g. 1 and 2) reuses its terms by
    :math:`j` squarings, :math:`e^{-2x} = (e^{-x})^2`, which keeps the relative error within
    :math:`2^j` times that of the base term.

    *Work and memory.* Rows of ``data`` are split into blocks run by ``n_threads`` workers,
    each with a single-threaded BLAS (no idle BLAS threads compete with the element-wise
    passes); a block's GEMM output is consumed in sub-blocks of about :math:`2^{17}` values
    that stay in cache. Memory per worker: the block's cross products, the scratch arrays of
    one sub-block, and the gathered near terms of the small sigmas (at most a fraction of the
    block). The GPU path ignores ``n_threads`` and ``progress``.

    *Checking against scikit-learn.* ``KernelDensity(bandwidth=sigma)`` is the same estimator,
    but with its default tree settings it is wrong on MNIST: at :math:`\sigma = 0.2` it
    returns a mean of 376.6 over the first 200 validation rows where the exact value is
    230.4, with 104 of the 200 rows wrong by up to 626 nats (``rtol=1e-8`` changes nothing;
    depth-first search: 184 rows wrong; ball tree: 14). The tree keeps, per query, a running
    lower bound and a running bound spread of :math:`\sum_i K(x, a_i)` in log space; refining
    a node subtracts its contribution ``N_node K(d_max)`` / ``N_node K(d_min)`` with
    ``logsubexp`` and adds its children's or its exact terms with ``logaddexp``. In 784
    dimensions a node's distance lower bound :math:`d_{min}` is near zero, so its upper bound
    is near ``N_node`` while the true terms are near :math:`e^{-300}`: adding and subtracting
    bounds of order :math:`10^4` cannot return to zero, and leaves a rounding residue of order
    :math:`\epsilon N \approx 10^{-11}` in the spread. With ``atol = rtol = 0`` every leaf
    is visited and the lower bound ends exact, but the returned value is the midpoint
    ``logaddexp(lower, spread - log 2)``, which the residue dominates by a factor near
    :math:`e^{280}`. In the other rows the spread happens to end at exactly ``-inf``
    (``logsubexp(x1, x2)`` returns ``-inf`` whenever rounding leaves ``x1 <= x2``) and the
    answer is right: hence "about half".
    With ``leaf_size >= len(train)`` the tree is one leaf: its bound is subtracted from
    itself (exactly ``-inf``) before any term is added, and the result is the brute-force
    log-sum-exp, exact to about :math:`10^{-14}`. That setting is the reference in the
    tests (to :math:`10^{-10}` per row).

    References
    ----------
    .. [1] E. Parzen, "On estimation of a probability density function and mode", Annals of
       Mathematical Statistics 33(3), 1962.
    .. [2] scikit-learn, ``sklearn/neighbors/_binary_tree.pxi.tp``: ``kernel_density``,
       ``_kde_single_breadthfirst``, ``logaddexp``, ``logsubexp``.

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib.image import log_likelihood
    >>> rng = np.random.default_rng(0)
    >>> train, data = rng.random((50, 4)), rng.random((20, 4))
    >>> log_likelihood(train, data, [0.1, 0.5]).shape
    (2,)
    """
    train = as_2d_float(train, "train")
    data = as_2d_float(data, "data")
    _check_pair(train, data)
    sig, sig_shape = as_positive_1d(sigmas, "sigmas")
    block_size = check_positive_int(block_size, "block_size", allow_none=True)
    n_threads = check_positive_int(n_threads, "n_threads", allow_none=True)
    backend = _gpu_backend(device)
    if backend is not None:
        rows = _backend_log_likelihood(backend, train, data, sig, block_size)
    else:
        rows = _cpu_log_likelihood(train, data, sig, block_size, n_threads, progress)
    if per_sample:
        return rows.reshape(sig_shape + (data.shape[0],))
    means = np.array([math.fsum(r) / r.size for r in rows])
    return means.reshape(sig_shape)


def _cpu_log_likelihood(train, data, sig, block_size, n_threads, progress):
    operands = _prepare(train, data)
    del train, data  # the operands hold what is needed
    n_train = operands.train_sqnorm.shape[0]
    n_rows = operands.data_source.shape[0]
    kernel = _kernel(sig, operands, n_train)
    chunk = min(n_train, _MAX_TRAIN_CHUNK)
    block_rows = block_size or max(8, _TARGET_BLOCK_ELEMENTS // chunk)
    subblock = max(1, min(block_rows, _TARGET_SUBBLOCK_ELEMENTS // chunk))
    threads = n_threads or _blas_threads()
    blocks = _blocks(operands, block_rows)

    def score(rows, mode):
        return rows, _score_block(rows, operands, kernel, mode, chunk, subblock)

    work = float(n_rows) * n_train * operands.plan.gemm_columns
    row_min = np.empty(n_rows)
    sums = np.empty((len(sig), n_rows))
    for rows, (block_min, block_sums) in _run_blocks(
        blocks, score, min(threads, len(blocks)), _want_progress(progress, work)
    ):
        row_min[rows] = block_min
        sums[:, rows] = block_sums
    return _finish(row_min, sums, kernel.coef, sig, n_train, operands.n_features)


def _finish(row_min, sums, coef, sig, n_train, n_features):
    """Per-row log-likelihoods (s, n) from the minima and the sums of relative terms."""
    log_norm = math.log(n_train) + 0.5 * n_features * np.log(2.0 * np.pi * sig**2)
    return -np.outer(coef, row_min) + np.log(sums) - log_norm[:, None]


def reference_log_likelihood(train, data, sigmas):
    r"""Plain float64 per-row log-likelihoods, shape (s, n): one GEMM and one logsumexp each.

    The straightforward computation that :func:`log_likelihood` must reproduce: the full
    distance matrix (float64 GEMM, clamped at zero) and ``scipy.special.logsumexp`` per sigma.
    Memory grows as ``n * k``; meant for checks and benchmarks.

    Notes
    -----
    .. math::

        \log \hat p(x) = \operatorname{logsumexp}_i\Bigl(-\frac{\lVert x - a_i\rVert^2}
        {2\sigma^2}\Bigr) - \log k - \frac{d}{2}\log(2\pi\sigma^2)

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib.image import reference_log_likelihood
    >>> reference_log_likelihood(np.zeros((1, 2)), np.zeros((1, 2)), [1.0]).round(6)
    array([[-1.837877]])
    """
    from scipy.special import logsumexp

    train = as_2d_float(train, "train")
    data = as_2d_float(data, "data")
    _check_pair(train, data)
    sig, _ = as_positive_1d(sigmas, "sigmas")
    sq = (np.einsum("ij,ij->i", data, data)[:, None] + np.einsum("ij,ij->i", train, train)
          - 2.0 * (data @ train.T))
    np.maximum(sq, 0.0, out=sq)
    k, d = train.shape
    return np.array([
        logsumexp(sq / (-2.0 * s * s), axis=1) - math.log(k)
        - 0.5 * d * math.log(2 * math.pi * s * s)
        for s in sig
    ])


# ---------------------------------------------------------------------------------------------
# Optional GPU path (PyTorch or CuPy), plain float64


class _NumpyBackend:
    """Array operations used by the device path; this one runs on the CPU with NumPy."""

    name = "numpy"

    def asarray(self, x):
        return np.asarray(x, dtype=np.float64)

    def to_numpy(self, x):
        return np.asarray(x)

    def row_min(self, x):
        return x.min(axis=1)

    def row_sum(self, x):
        return x.sum(axis=1)

    def exp(self, x):
        return np.exp(x)

    def log(self, x):
        return np.log(x)

    def clamp_zero(self, x):
        return np.maximum(x, 0.0)


class _TorchBackend(_NumpyBackend):
    name = "torch"

    def __init__(self, torch, device):
        self.torch = torch
        self.device = torch.device(device)

    def asarray(self, x):
        return self.torch.as_tensor(np.asarray(x, dtype=np.float64), device=self.device)

    def to_numpy(self, x):
        return x.cpu().numpy()

    def row_min(self, x):
        return x.amin(dim=1)

    def row_sum(self, x):
        return x.sum(dim=1)

    def exp(self, x):
        return self.torch.exp(x)

    def log(self, x):
        return self.torch.log(x)

    def clamp_zero(self, x):
        return x.clamp(min=0.0)


class _CupyBackend(_NumpyBackend):
    name = "cupy"

    def __init__(self, cupy, device_id):
        self.cupy = cupy
        self.device_id = device_id

    def asarray(self, x):
        with self.cupy.cuda.Device(self.device_id):
            return self.cupy.asarray(np.asarray(x, dtype=np.float64))

    def to_numpy(self, x):
        return self.cupy.asnumpy(x)

    def exp(self, x):
        return self.cupy.exp(x)

    def log(self, x):
        return self.cupy.log(x)

    def clamp_zero(self, x):
        return self.cupy.maximum(x, 0.0)


def _gpu_backend(device):
    """None for the CPU path; otherwise a backend for ``"cuda"``/``"cuda:N"``."""
    if device is None:
        return None
    name = str(device).strip().lower()
    if name == "cpu":
        return None
    if name != "cuda" and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise ValueError(f"device must be None, 'cpu', 'cuda' or 'cuda:N'; got {device!r}.")
    index = int(name[5:]) if ":" in name else 0
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        if not torch.cuda.is_available():
            raise RuntimeError("device='cuda' was asked for, but PyTorch sees no CUDA device.")
        return _TorchBackend(torch, f"cuda:{index}")
    try:
        import cupy
    except ImportError:
        raise ImportError(
            "device='cuda' needs PyTorch or CuPy with CUDA support, and neither is installed. "
            "Install one of them, or leave device=None to use the exact CPU path."
        ) from None
    return _CupyBackend(cupy, index)


def _backend_log_likelihood(backend, train, data, sig, block_size):
    """Plain float64 per-row values on an array backend: GEMM, clamp, stable logsumexp."""
    k, d = train.shape
    a = backend.asarray(train)
    a_sqnorm = backend.row_sum(a * a)
    log_norm = math.log(k) + 0.5 * d * np.log(2.0 * np.pi * sig**2)
    rows = block_size or max(1, _TARGET_BLOCK_ELEMENTS // k)
    out = np.empty((len(sig), data.shape[0]))
    for start in range(0, data.shape[0], rows):
        x = backend.asarray(data[start:start + rows])
        cross = x @ a.T
        sq = backend.clamp_zero(backend.row_sum(x * x)[:, None] + a_sqnorm[None, :] - 2.0 * cross)
        low = backend.row_min(sq)
        excess = sq - low[:, None]
        for j, s in enumerate(sig):
            c = 1.0 / (2.0 * s * s)
            value = backend.log(backend.row_sum(backend.exp(excess * -c))) - low * c
            out[j, start:start + rows] = backend.to_numpy(value) - log_norm[j]
    return out
