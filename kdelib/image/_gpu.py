"""Optional GPU backends (PyTorch or CuPy): the plain float64 computation on a CUDA device.

Used only when ``device="cuda"`` is asked for; nothing GPU-related is imported otherwise. The
algorithm is written once against a small array interface; :class:`NumpyBackend` runs the same
code on the CPU, which is how it is tested without a GPU.
"""

import contextlib
import math

import numpy as np

from .._validation import check_device

#: Distances per block on the device (data rows x training rows): 2^27, so a block's two
#: float64 arrays (distances, and the exponentials of one sigma) take 2 GiB, and all of MNIST's
#: 10,000 x 10,000 distances fit in one block.
_BLOCK_ELEMENTS = 1 << 27


class NumpyBackend:
    """The array operations of the device path, on the CPU with NumPy (``xp``: the module).

    Every pass over a block works in place, so a block costs two float64 arrays of its
    distances and each pass reads and writes device memory once.
    """

    def __init__(self, xp=np):
        self.xp = xp

    def context(self):
        """Where the arrays live while the computation runs (nothing to select here)."""
        return contextlib.nullcontext()

    def to_device(self, x):
        """``x`` as float64 on the device; float32 travels as float32 (half the bytes, exact)."""
        return self.xp.asarray(x).astype(self.xp.float64, copy=False)

    def to_numpy(self, x):
        return np.asarray(x)

    def empty(self, shape):
        return self.xp.empty(shape, dtype=self.xp.float64)

    def row_min(self, x):
        return x.min(axis=1)

    def row_sum(self, x):
        return x.sum(axis=1)

    def log(self, x):
        return self.xp.log(x)

    def squared_distances(self, x, a, a_sqnorm):
        """max(|x|^2 + |a|^2 - 2 x.a, 0), in place on the GEMM's output."""
        sq = x @ a.T
        sq *= -2.0
        sq += self.row_sum(x * x)[:, None]
        sq += a_sqnorm[None, :]
        return self.xp.maximum(sq, 0.0, out=sq)

    def subtract_row_values(self, sq, values):
        sq -= values[:, None]

    def sum_exp_rows(self, excess, factor, scratch):
        """Row sums of exp(factor * excess), through ``scratch`` (same shape)."""
        self.xp.multiply(excess, factor, out=scratch)
        return self.row_sum(self.xp.exp(scratch, out=scratch))


class TorchBackend(NumpyBackend):
    """PyTorch tensors on one CUDA device."""

    def __init__(self, torch, device):
        self.torch = torch
        self.device = torch.device(device)

    def to_device(self, x):
        return self.torch.as_tensor(x, device=self.device).double()

    def to_numpy(self, x):
        return x.cpu().numpy()

    def empty(self, shape):
        return self.torch.empty(shape, dtype=self.torch.float64, device=self.device)

    def row_min(self, x):
        return x.amin(dim=1)

    def row_sum(self, x):
        return x.sum(dim=1)

    def log(self, x):
        return self.torch.log(x)

    def squared_distances(self, x, a, a_sqnorm):
        sq = x @ a.T
        sq.mul_(-2.0).add_(self.row_sum(x * x)[:, None]).add_(a_sqnorm[None, :])
        return sq.clamp_(min=0.0)

    def sum_exp_rows(self, excess, factor, scratch):
        self.torch.mul(excess, factor, out=scratch)
        return self.row_sum(scratch.exp_())


class CupyBackend(NumpyBackend):
    """CuPy arrays on one CUDA device (the NumPy code, with ``cupy`` as ``xp``)."""

    def __init__(self, cupy, device_id):
        super().__init__(cupy)
        self.cupy = cupy
        self.device_id = device_id

    def context(self):
        return self.cupy.cuda.Device(self.device_id)

    def to_numpy(self, x):
        return self.cupy.asnumpy(x)


def gpu_backend(device):
    """None for the CPU path; otherwise a backend for ``"cuda"``/``"cuda:N"`` (torch, then cupy)."""
    index = check_device(device)
    if index is None:
        return None
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        if not torch.cuda.is_available():
            raise RuntimeError("device='cuda' was asked for, but PyTorch sees no CUDA device.")
        return TorchBackend(torch, f"cuda:{index}")
    try:
        import cupy
    except ImportError:
        raise ImportError(
            "device='cuda' needs PyTorch or CuPy with CUDA support, and neither is installed. "
            "Install one of them, or leave device=None to use the exact CPU path."
        ) from None
    return CupyBackend(cupy, index)


def backend_log_likelihood(backend, train, data, sig, block_size):
    """Plain float64 per-row values on an array backend: GEMM, clamp, stable logsumexp.

    The results stay on the device until the end (one copy back); on lattice data such as
    MNIST (values k/256) every float64 distance is exact, whatever the GEMM's summation order.
    """
    k, d = train.shape
    n = data.shape[0]
    factors = -1.0 / (2.0 * sig * sig)
    log_norm = math.log(k) + 0.5 * d * np.log(2.0 * np.pi * sig**2)
    rows = block_size or max(1, _BLOCK_ELEMENTS // k)
    with backend.context():
        a = backend.to_device(train)
        a_sqnorm = backend.row_sum(a * a)
        out = backend.empty((len(sig), n))
        for start in range(0, n, rows):
            stop = min(start + rows, n)
            sq = backend.squared_distances(backend.to_device(data[start:stop]), a, a_sqnorm)
            low = backend.row_min(sq)
            backend.subtract_row_values(sq, low)
            scratch = backend.empty(sq.shape)
            for j, factor in enumerate(factors):
                out[j, start:stop] = (backend.log(backend.sum_exp_rows(sq, factor, scratch))
                                      + low * factor)
            del sq, scratch  # before the next block's arrays are made
        return backend.to_numpy(out) - log_norm[:, None]
