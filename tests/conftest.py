"""Shared fixtures. Tests run in float64 (as the CLI does) with fixed seeds."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def pyro_ref() -> dict:
    """What Pyro computes for every step of the seed tutorial (tests/data/pyro_seed.json)."""
    return json.loads((DATA / "pyro_seed.json").read_text())


@pytest.fixture(scope="session")
def seed_fit():
    import bayesmix as bm

    return bm.fit_map(bm.SEED_DATA, 2)


def three_blobs(seed: int) -> np.ndarray:
    """2,500 rows of three 2-D Gaussian clusters of unequal size and spread, shuffled: the data
    of the chunked, out-of-core and Dask fits."""
    rng = np.random.default_rng(seed)
    x = np.concatenate(
        [
            rng.normal([0, 0], 1, (1000, 2)),
            rng.normal([4, 1], 0.5, (800, 2)),
            rng.normal([-3, 5], 0.7, (700, 2)),
        ]
    )
    return x[rng.permutation(len(x))]
