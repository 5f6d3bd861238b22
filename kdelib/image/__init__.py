r"""Exact mean log-likelihood of an isotropic Gaussian kernel density estimate on images.

Shape contract: ``train`` (k, d) and ``data`` (n, d) hold one flattened image per row;
``sigmas`` is a scalar or a 1-D array of s bandwidths. :func:`log_likelihood` returns an
array of ``np.shape(sigmas)`` (means over the rows of ``data``), or of
``np.shape(sigmas) + (n,)`` with ``per_sample=True``.

One idea per file: ``_plan`` (which exact arithmetic computes the squared distances),
``_kernels`` (the blocked log-sum-exp on the CPU), ``_gpu`` (the optional PyTorch/CuPy
backends); the thread pool is :mod:`kdelib._parallel`.
"""

import math

import numpy as np

from .._validation import (as_2d_float, as_2d_real, as_positive_1d, check_positive_int,
                           check_same_columns)
from ._gpu import backend_log_likelihood, gpu_backend
from ._kernels import cpu_log_likelihood
from ._plan import DistancePlan, distance_plan

__all__ = ["DistancePlan", "distance_plan", "log_likelihood", "reference_log_likelihood"]


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
        Rows of ``data`` per GEMM block. The default keeps a block near 8 million distances
        (32 MiB of float32 cross products), with at least two blocks per worker; peak memory
        is about ``n_threads`` blocks plus the inputs and their integer codes.
    n_threads : int, optional
        Worker threads over row blocks; default :func:`kdelib._parallel.n_workers` (the CPUs
        this process may use, at most the BLAS thread count). While they run, the BLAS is
        limited to one thread per worker (process-wide).
    progress : bool, optional
        Show a tqdm progress bar; default only for long runs on a terminal.
    device : {None, "cpu", "cuda", "cuda:N"}, optional
        ``"cuda"`` runs a plain float64 computation on the GPU with PyTorch (else CuPy), if one
        of them is installed; nothing GPU-related is imported otherwise. There the default
        block holds :math:`2^{27}` distances (all of MNIST's 10,000 x 10,000 in one block), and
        the device needs about two float64 arrays of a block (2 GiB) plus the inputs.

    Returns
    -------
    ndarray of float64
        Shape ``np.shape(sigmas)``, or ``np.shape(sigmas) + (n,)`` with ``per_sample=True``.

    Raises
    ------
    ValueError
        Non-2-D or empty arrays, different numbers of columns, NaN or infinite values,
        non-positive sigmas, a non-positive ``block_size`` or ``n_threads``, an unknown
        device.
    ImportError
        ``device="cuda"`` without PyTorch or CuPy.
    RuntimeError
        ``device="cuda"`` with PyTorch installed but no CUDA device visible.

    See Also
    --------
    reference_log_likelihood : the plain float64 computation, for checks.
    distance_plan : which exact arithmetic and which evaluation of each sigma are used.

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
    first call gets float64 GEMMs instead (also exact on the lattice). Pixels that are zero
    in every training image are left out of the GEMM (their products are exactly zero) but
    kept in :math:`\lVert x\rVert^2`. Otherwise the
    expansion runs in float64 and each distance carries an absolute rounding error near
    :math:`\epsilon(\lVert x\rVert^2 + \lVert a\rVert^2)`, clamped at zero.
    :func:`distance_plan` reports the choice.

    *Log-sum-exp.* Each row is streamed over training chunks with a running minimum
    :math:`m` of the distances; terms :math:`e^{-(D_i - m)/(2\sigma^2)} \le 1` are summed
    and rescaled when the minimum moves. A term with :math:`(D_i - m)/(2\sigma^2) > T`,
    :math:`T = \log k + 60 \log 2`, is dropped only when few terms are that close (small
    sigma, path ``"near"``: those terms are gathered once for all such sigmas): all dropped
    terms together are below :math:`k e^{-T} = 2^{-60}` of the sum, which holds the term
    :math:`1`. Every other sigma evaluates all terms (path ``"exp"``) as
    :math:`\exp(-\delta c)` with the exact integer :math:`\delta = D_i - m` on the lattice:
    the argument is one rounding from exact, and the exponential (Cody-Waite reduction and
    a degree-13 Taylor polynomial, compiled so that it vectorises) is within one unit in the
    last place; terms below :math:`e^{-708}` (relative to the row's largest, 1) count as 0.
    A sigma whose :math:`c = 1/(2\sigma^2)` is :math:`2^j` times that of another
    (:math:`j \le 4`, e.g. 1 and 2) takes that one's terms and squares them :math:`j` times
    in place (path ``("square", ...)``), :math:`e^{-2x} = (e^{-x})^2`, which keeps the
    relative error within :math:`2^j` times that of the base term. Row sums run in several
    vector lanes (their last bits depend on the CPU). The paths are chosen once per call from
    the distances of the first data rows; :func:`distance_plan` with ``sigmas`` reports them.

    *Work and memory.* Rows of ``data`` are split into blocks run by ``n_threads`` workers,
    each with a single-threaded BLAS (no idle BLAS threads compete with the other work).
    After a block's GEMM a compiled pass (Numba, GIL released) takes each data row once:
    its distances into a buffer the size of the training chunk, their minimum, then every
    sigma's sum from that buffer, so nothing of the block's size is written besides the GEMM
    output. Memory per worker: the block's cross products and four buffers of one training
    chunk. The first call in a fresh environment compiles the pass (a few seconds; cached on
    disk). float32 inputs are read as they are (no float64 copy). The GPU path ignores
    ``n_threads`` and ``progress``; it copies float32 inputs to the device as float32 (exact),
    works on each block in place (distances, then one exponential pass per sigma into one
    scratch array) and copies the results back once. On the k/256 lattice its float64
    distances are exact too (every partial sum is a multiple of :math:`2^{-16}` below
    :math:`2^{11}`, far inside float64's :math:`2^{53}` integers), so it agrees with the CPU
    path to the rounding of the exponentials.

    *Checking against scikit-learn.* ``KernelDensity(bandwidth=sigma)`` is the same estimator;
    with ``leaf_size >= len(train)`` it agrees to about :math:`10^{-14}`, with its default tree
    it is wrong on MNIST (why: ``tests/test_image.py``, the test of scikit-learn's default tree).

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
    >>> rows = log_likelihood(train, data, [0.1, 0.5], per_sample=True)
    >>> from kdelib.image import reference_log_likelihood
    >>> bool(np.allclose(rows, reference_log_likelihood(train, data, [0.1, 0.5]), rtol=1e-12))
    True
    """
    train = as_2d_real(train, "train")
    data = as_2d_real(data, "data")
    check_same_columns(train, data, "train", "data")
    sig, sig_shape = as_positive_1d(sigmas, "sigmas")
    block_size = check_positive_int(block_size, "block_size", allow_none=True)
    n_threads = check_positive_int(n_threads, "n_threads", allow_none=True)
    backend = gpu_backend(device)
    if backend is not None:
        rows = backend_log_likelihood(backend, train, data, sig, block_size)
    else:
        rows = cpu_log_likelihood(train, data, sig, block_size, n_threads, progress)
    if per_sample:
        return rows.reshape(sig_shape + (data.shape[0],))
    means = np.array([math.fsum(r) / r.size for r in rows])
    return means.reshape(sig_shape)


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
    check_same_columns(train, data, "train", "data")
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
