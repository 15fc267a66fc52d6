"""Shared fixtures. Tests run in float64 (as the CLI does) with fixed seeds."""

from __future__ import annotations

import json
from pathlib import Path

import jax
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
