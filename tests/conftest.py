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


@pytest.fixture(scope="session")
def emptied_fit():
    """(x (600, 1), an EM fit of 4 components to its 2 clusters): the two started in the far
    tails get expected counts below 1 - a and weights of exactly 0 (the sparse Dirichlet step)."""
    import bayesmix as bm

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-5, 1, (300, 1)), rng.normal(5, 1, (300, 1))])
    locs = np.array([[-4.0], [4.0], [-30.0], [30.0]])
    start = bm.Params(np.array([0.45, 0.45, 0.05, 0.05]), locs, np.ones(4))
    fit = bm.fit_em(x, 4, covariance="spherical", init_params=start)
    assert np.all(fit.params.weights[2:] == 0)
    return x, fit


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
