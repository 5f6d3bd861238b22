"""Example counts for the hypothesis properties: small by default, thorough under ``make stress``.

``make test`` runs each property at the count its test names (25-60 examples), with the same
examples on every run. ``make stress`` sets ``KDELIB_HYPOTHESIS=stress``, and every property then
runs at :data:`STRESS_EXAMPLES` freshly drawn examples.
"""

import os

from hypothesis import settings

STRESS_EXAMPLES = 10_000
PROFILE = os.environ.get("KDELIB_HYPOTHESIS", "default")
if PROFILE not in ("default", "stress"):
    raise ValueError(f"KDELIB_HYPOTHESIS must be 'default' or 'stress'; got {PROFILE!r}.")

# `make test` draws the same examples on every run (derandomized), so a red run is reproducible
# and a change is judged on the same cases; `make stress` draws fresh random ones, many more.
settings.register_profile("kdelib-default", derandomize=True)
settings.register_profile("kdelib-stress", derandomize=False)
settings.load_profile(f"kdelib-{PROFILE}")


def examples(n):
    """Return ``n``, or :data:`STRESS_EXAMPLES` under the stress profile."""
    return STRESS_EXAMPLES if PROFILE == "stress" else n
