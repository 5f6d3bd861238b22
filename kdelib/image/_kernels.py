"""Blocked log-sum-exp kernels: the CPU evaluation of the image KDE from the planned operands.

Rows of data are split into blocks run by worker threads (see :mod:`kdelib._parallel`); each
block's cross products are consumed in cache-sized sub-blocks, with a running per-row minimum of
the distances, so every term ``exp(-(D - min) / (2 sigma^2))`` is at most 1.
"""

import math
import sys
from dataclasses import dataclass

import numpy as np

from .._parallel import n_workers, run_tasks
from . import _plan
from ._plan import MAX_CODE, prepare

#: Terms dropped by the sparse path add less than 2**-NEGLIGIBLE_LOG2 to the row's sum,
#: relative to the sum itself.
NEGLIGIBLE_LOG2 = 60

#: A sigma whose terms above the drop threshold fill at most this fraction of a block is
#: evaluated on the gathered near terms only (the sparse path).
SPARSE_FRACTION = 0.2

_EXP_UNDERFLOW = 746.0  # exp(-746) == 0.0 in float64
_TARGET_BLOCK_ELEMENTS = 1 << 21  # data rows x train rows per GEMM block
_TARGET_SUBBLOCK_ELEMENTS = 1 << 17  # elements per element-wise pass (stays in L2)
_MAX_TRAIN_CHUNK = 1 << 15  # train rows per GEMM; longer training sets are streamed

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
    columns = _plan.FLOAT32_COLUMNS
    if mode != "chunked" or x_op.shape[1] <= columns:
        return x_op @ train_op.T
    total = np.zeros((x_op.shape[0], train_op.shape[0]))
    for j in range(0, x_op.shape[1], columns):
        part = x_op[:, j:j + columns] @ train_op[:, j:j + columns].T
        np.add(total, part, out=total)
    return total


def _score_block(rows, operands, kernel, mode, chunk, subblock):
    """Running minimum (r,) and sums (s, r) for the data rows ``rows``."""
    on_lattice = operands.plan.method == "lattice"
    source = operands.data_source[rows][:, operands.columns]
    train_op = operands.train_gemm
    x_op = source.astype(train_op.dtype)
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
# Scheduling and the CPU driver


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


def cpu_log_likelihood(train, data, sig, block_size, n_threads, progress):
    """Per-row log-likelihoods (s, n) on the CPU: planned operands, blocks on worker threads."""
    operands = prepare(train, data)
    del train, data  # the operands hold what is needed
    n_train = operands.train_sqnorm.shape[0]
    n_rows = operands.data_source.shape[0]
    kernel = _kernel(sig, operands, n_train)
    chunk = min(n_train, _MAX_TRAIN_CHUNK)
    block_rows = block_size or max(8, _TARGET_BLOCK_ELEMENTS // chunk)
    subblock = max(1, min(block_rows, _TARGET_SUBBLOCK_ELEMENTS // chunk))
    blocks = _blocks(operands, block_rows)

    def score(block):
        rows, mode = block
        return rows, _score_block(rows, operands, kernel, mode, chunk, subblock)

    work = float(n_rows) * n_train * operands.plan.gemm_columns
    bar = None
    if _want_progress(progress, work):
        from tqdm.auto import tqdm

        bar = tqdm(total=len(blocks), desc="image KDE", unit="block")
    try:
        results = run_tasks(score, blocks, n_workers(n_threads),
                            progress=None if bar is None else bar.update)
    finally:
        if bar is not None:
            bar.close()
    row_min = np.empty(n_rows)
    sums = np.empty((len(sig), n_rows))
    for rows, (block_min, block_sums) in results:
        row_min[rows] = block_min
        sums[:, rows] = block_sums
    return _finish(row_min, sums, kernel.coef, sig, n_train, operands.n_features)


def _finish(row_min, sums, coef, sig, n_train, n_features):
    """Per-row log-likelihoods (s, n) from the minima and the sums of relative terms."""
    log_norm = math.log(n_train) + 0.5 * n_features * np.log(2.0 * np.pi * sig**2)
    return -np.outer(coef, row_min) + np.log(sums) - log_norm[:, None]
