"""Example counts for the hypothesis properties: small by default, thorough under ``make stress``.

``make test`` runs each property at the count its test names (25-60 examples). ``make stress``
sets ``KDELIB_HYPOTHESIS=stress``, and every property then runs at :data:`STRESS_EXAMPLES`.
"""

import os

STRESS_EXAMPLES = 10_000
PROFILE = os.environ.get("KDELIB_HYPOTHESIS", "default")
if PROFILE not in ("default", "stress"):
    raise ValueError(f"KDELIB_HYPOTHESIS must be 'default' or 'stress'; got {PROFILE!r}.")


def examples(n):
    """Return ``n``, or :data:`STRESS_EXAMPLES` under the stress profile."""
    return STRESS_EXAMPLES if PROFILE == "stress" else n
