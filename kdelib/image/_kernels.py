"""Blocked log-sum-exp: the CPU evaluation of the image KDE from the planned operands.

Rows of data are split into blocks run by worker threads (see :mod:`kdelib._parallel`); for each
block and chunk of training images one GEMM gives the cross products, and the compiled row kernel
of :mod:`kdelib.image._fold` turns each row into its minimum distance and the sums of the terms
``exp(-(D - min) / (2 sigma^2))`` (each at most 1) for every sigma. Chunks of a streamed training
set are merged here by a running per-row minimum.
"""

import math
import sys
from dataclasses import dataclass

import numpy as np

from .._parallel import n_workers, run_tasks
from . import _fold, _plan
from ._plan import prepare

#: Terms dropped by the sparse path add less than 2**-NEGLIGIBLE_LOG2 to the row's sum,
#: relative to the sum itself.
NEGLIGIBLE_LOG2 = 60

#: A sigma whose terms above the drop threshold fill at most this fraction of a block is
#: evaluated on the gathered near terms only (the sparse path).
SPARSE_FRACTION = 0.2

#: A dense sigma whose 1 / (2 sigma^2) is 2**j times that of another (j <= MAX_SQUARINGS)
#: takes its terms from the other's by j squarings instead of an exponential.
MAX_SQUARINGS = 4

_TARGET_BLOCK_ELEMENTS = 1 << 23  # data rows x train rows per GEMM block (32 MiB of float32)
_MAX_TRAIN_CHUNK = 1 << 15  # train rows per GEMM; longer training sets are streamed
_SAMPLE_ROWS = 64  # data rows whose distances choose the evaluation of each sigma

# ---------------------------------------------------------------------------------------------
# Per-sigma constants: scales and drop thresholds


@dataclass
class _Kernel:
    coef: np.ndarray  # 1 / (2 sigma^2) in distance units, shape (s,)
    drop: np.ndarray  # a term with delta > drop[s] is negligible for sigma s


def make_kernel(sigmas, operands):
    """Per-sigma ``1 / (2 sigma^2)`` in distance units and the distance beyond which terms drop."""
    n_train = operands.train_sqnorm.shape[0]
    coef = 1.0 / (2.0 * sigmas**2 * operands.units)
    # Each dropped term is below exp(-T) times the row's largest term, and there are fewer
    # than n_train of them: the sum loses less than n_train * exp(-T) = 2**-NEGLIGIBLE_LOG2
    # of itself.
    threshold = math.log(n_train) + NEGLIGIBLE_LOG2 * math.log(2.0)
    return _Kernel(coef=coef, drop=threshold / coef)


# ---------------------------------------------------------------------------------------------
# The streaming log-sum-exp over one block of data rows


@dataclass
class _Schedule:
    """How one chunk's sigmas are evaluated: gathered near terms, or every term."""

    sparse: list  # sigma indices, largest drop distance first
    dense: list  # groups (s, [(s2, j2), (s3, j3), ...]): exp for s, then j squarings each


def _schedule(delta, kernel):
    """Split the sigmas into sparse and dense ones from a column sample of ``delta``.

    A dense sigma whose ``1 / (2 sigma^2)`` is ``2**j`` times that of another dense one
    (``j <= MAX_SQUARINGS``) takes its terms from the other's by ``j`` squarings,
    ``exp(-2x) = exp(-x)**2``, instead of an exponential; the relative error stays within about
    ``2**j`` units in the last place. Each group is one exponential followed by squarings in
    place, in increasing order of ``1 / (2 sigma^2)``.
    """
    sample = np.sort(delta[:, ::17], axis=None)
    fractions = np.searchsorted(sample, kernel.drop, side="right") / max(sample.size, 1)
    dense_mask = fractions > SPARSE_FRACTION
    sparse = sorted(np.flatnonzero(~dense_mask), key=lambda s: -kernel.drop[s])
    groups = []  # [base sigma, [(sigma, squarings since the previous one)], total squarings]
    for s in sorted(np.flatnonzero(dense_mask), key=lambda s: kernel.coef[s]):
        for group in groups:
            ratio = kernel.coef[s] / kernel.coef[group[0]]
            times = round(math.log2(ratio)) if ratio > 1.5 else 0
            if (group[2] <= times <= MAX_SQUARINGS
                    and abs(ratio - 2.0**times) <= 1e-12 * ratio):
                group[1].append((s, times - group[2]))
                group[2] = times
                break
        else:
            groups.append([s, [], 0])
    return _Schedule(sparse=sparse, dense=[(base, chain) for base, chain, _ in groups])


@dataclass
class _Terms:
    """The schedule as the arrays that :func:`kdelib.image._fold.fold_lattice` takes."""

    dense_sigma: np.ndarray
    dense_coef: np.ndarray
    chain_sigma: np.ndarray
    chain_times: np.ndarray
    chain_start: np.ndarray
    near_sigma: np.ndarray
    near_coef: np.ndarray
    near_drop: np.ndarray

    @classmethod
    def from_schedule(cls, schedule, kernel):
        index = lambda values: np.array(values, dtype=np.int64)  # noqa: E731
        bases = [base for base, _ in schedule.dense]
        chains = [step for _, chain in schedule.dense for step in chain]
        starts = np.cumsum([0] + [len(chain) for _, chain in schedule.dense])
        near = index(schedule.sparse)
        return cls(dense_sigma=index(bases), dense_coef=kernel.coef[index(bases)],
                   chain_sigma=index([s for s, _ in chains]),
                   chain_times=index([t for _, t in chains]), chain_start=index(starts),
                   near_sigma=near, near_coef=kernel.coef[near], near_drop=kernel.drop[near])

    def arrays(self):
        return (self.dense_sigma, self.dense_coef, self.chain_sigma, self.chain_times,
                self.chain_start, self.near_sigma, self.near_coef, self.near_drop)


def _fold_chunk(cross, train_sqnorm, x_sqnorm, on_lattice, terms, n_sigmas):
    """Per-row minimum (r,) and sums (s, r) relative to it, for one chunk's cross products."""
    mins = np.empty(cross.shape[0])
    sums = np.zeros((n_sigmas, cross.shape[0]))
    if on_lattice:
        _fold.fold_lattice(cross, train_sqnorm, *terms.arrays(), mins, sums)
    else:
        _fold.fold_float64(cross, train_sqnorm, x_sqnorm, *terms.arrays(), mins, sums)
    return mins, sums


def _merge(row_min, sums, chunk_min, chunk_sums, coef):
    """Fold a later chunk's minima and relative sums into the running ones (in place).

    Every sum is rescaled to the smaller of the two minima: a term dropped from either side was
    negligible relative to its own minimum, hence to any smaller one too.
    """
    new_min = np.minimum(row_min, chunk_min)
    for part, own_min in ((sums, row_min), (chunk_sums, chunk_min)):
        moved = own_min > new_min
        if moved.any():
            part[:, moved] *= np.exp(-np.outer(coef, own_min[moved] - new_min[moved]))
    sums += chunk_sums
    row_min[:] = new_min


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


def _gemm_operand(operands, rows):
    """The data rows' GEMM operand: their codes (or values) over the GEMM columns, C-ordered."""
    source = np.take(operands.data_source[rows], operands.columns, axis=1)
    return source.astype(operands.train_gemm.dtype)


def _score_block(rows, operands, kernel, terms, mode, chunk):
    """Running minimum (r,) and sums (s, r) for the data rows ``rows``."""
    on_lattice = operands.plan.method == "lattice"
    train_op = operands.train_gemm
    x_op = _gemm_operand(operands, rows)
    x_sqnorm = operands.data_sqnorm[rows]
    row_min = sums = None
    for start in range(0, train_op.shape[0], chunk):
        stop = min(start + chunk, train_op.shape[0])
        cross = _cross_products(x_op, train_op[start:stop], mode)  # -2 x.a, exact on the lattice
        chunk_min, chunk_sums = _fold_chunk(cross, operands.train_sqnorm[start:stop], x_sqnorm,
                                            on_lattice, terms, len(kernel.coef))
        if row_min is None:
            row_min, sums = chunk_min, chunk_sums
        else:
            _merge(row_min, sums, chunk_min, chunk_sums, kernel.coef)
    if on_lattice:
        row_min += x_sqnorm
    return row_min, sums


def sample_schedule(operands, kernel, n_sample=_SAMPLE_ROWS):
    """The :class:`_Schedule` for all blocks, from the first ``n_sample`` data rows.

    Their distances to the first training chunk are computed with the arithmetic of their
    GEMM mode; the schedule only chooses between exact evaluations (which terms are gathered
    first), so a sample suffices.
    """
    mode = operands.gemm_mode[0]
    rows = np.arange(min(n_sample, len(operands.gemm_mode)))
    rows = rows[operands.gemm_mode[rows] == mode]
    train_op = operands.train_gemm[:_MAX_TRAIN_CHUNK]
    cross = _cross_products(_gemm_operand(operands, rows), train_op, mode)
    delta = np.empty(cross.shape, dtype=operands.delta_dtype)
    _fold.relative_distances(cross, operands.train_sqnorm[:len(train_op)],
                             operands.data_sqnorm[rows], operands.plan.method == "lattice", delta)
    return _schedule(delta, kernel)


def sigma_paths(schedule, n_sigmas):
    """Per sigma, how its terms are evaluated: ``"near"``, ``"exp"`` or ``("square", j, t)``.

    ``"near"``: only the gathered terms within the drop distance (small sigma); ``"exp"``:
    every term by an exponential; ``("square", j, t)``: every term by ``t`` squarings of the
    terms of sigma number ``j``.
    """
    paths = [None] * n_sigmas
    for s in schedule.sparse:
        paths[s] = "near"
    for base, chain in schedule.dense:
        paths[base] = "exp"
        total = 0
        for s, times in chain:
            total += times
            paths[s] = ("square", int(base), total)
    return tuple(paths)


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
    kernel = make_kernel(sig, operands)
    chunk = min(n_train, _MAX_TRAIN_CHUNK)
    workers = n_workers(n_threads)
    # Large blocks (each GEMM call packs the whole training operand once), but at least two
    # per worker so that the workers finish together.
    block_rows = block_size or max(8, min(_TARGET_BLOCK_ELEMENTS // chunk,
                                          -(-n_rows // (2 * workers))))
    blocks = _blocks(operands, block_rows)
    terms = _Terms.from_schedule(sample_schedule(operands, kernel), kernel)

    def score(block):
        rows, mode = block
        return rows, _score_block(rows, operands, kernel, terms, mode, chunk)

    work = float(n_rows) * n_train * operands.plan.gemm_columns
    bar = None
    if _want_progress(progress, work):
        from tqdm.auto import tqdm

        bar = tqdm(total=len(blocks), desc="image KDE", unit="block")
    try:
        results = run_tasks(score, blocks, workers,
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
