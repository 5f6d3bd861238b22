"""kdelib: exact kernel density estimation, CDFs, mixtures and Gaussianizers.

Public names are imported lazily, so ``import kdelib`` stays cheap and a submodule is loaded only
when one of its names is first used.
"""

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "ECDF": "ecdf",
    "GaussianKDE": "kde",
    "GaussianMixtureCDF": "mixture",
    "select_n_components": "mixture",
    "KDEGaussianizer": "gaussianize",
    "MixtureGaussianizer": "gaussianize",
    "RBIG": "rbig",
    "PiecewiseGaussianizer": "rbig",
    "RationalQuadraticSpline": "spline",
    "SplineDensity": "spline",
    "PchipDensity": "spline",
    "SplineGaussianizer": "gaussianize",
}
_SUBMODULES = (
    "base",
    "bandwidth",
    "bounded",
    "datasets",
    "ecdf",
    "gaussianize",
    "image",
    "kde",
    "mixture",
    "normal_mixture",
    "rbig",
    "spline",
)

__all__ = sorted([*_PUBLIC, *_SUBMODULES])


def __getattr__(name):
    if name in _PUBLIC:
        module = importlib.import_module(f".{_PUBLIC[name]}", __name__)
        return getattr(module, name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'kdelib' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
