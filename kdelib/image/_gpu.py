"""Optional GPU backends (PyTorch or CuPy): the plain float64 computation on a CUDA device.

Used only when ``device="cuda"`` is asked for; nothing GPU-related is imported otherwise. The
algorithm is written once against a small array interface; :class:`NumpyBackend` runs the same
code on the CPU, which is how it is tested without a GPU.
"""

import math

import numpy as np

from .._validation import check_device

#: Distances per block on the device (data rows x training rows).
_BLOCK_ELEMENTS = 1 << 21


class NumpyBackend:
    """Array operations used by the device path; this one runs on the CPU with NumPy."""

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


class TorchBackend(NumpyBackend):
    """PyTorch tensors on one CUDA device."""

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


class CupyBackend(NumpyBackend):
    """CuPy arrays on one CUDA device."""

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
    """Plain float64 per-row values on an array backend: GEMM, clamp, stable logsumexp."""
    k, d = train.shape
    a = backend.asarray(train)
    a_sqnorm = backend.row_sum(a * a)
    log_norm = math.log(k) + 0.5 * d * np.log(2.0 * np.pi * sig**2)
    rows = block_size or max(1, _BLOCK_ELEMENTS // k)
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
