"""Seeds derived from other seeds, so every round, fold and task of a run draws its own reproducible stream."""
from __future__ import annotations

import numpy as np


def derive_seed(*keys: int) -> int:
    """A 31-bit seed derived from integers (a run's seed, a round number, ...), stable across runs."""
    return int(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(1)[0] >> 1)
