"""R-hat and ESS without ArviZ: the same numbers as ArviZ's rank-normalized estimators."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import scipy.special

from bayesmix import convergence


def _draws(rng: np.random.Generator, chains: int, n: int) -> dict[str, np.ndarray]:
    walk = 0.1 * rng.normal(size=(chains, n)).cumsum(axis=1) + rng.normal(size=(chains, n))
    return {
        "autocorrelated": walk,
        "ties": np.round(walk, 1),
        "skewed": np.exp(walk),
        "disagreeing chains": rng.normal(size=(chains, n)) + np.arange(chains)[:, None],
        "heavy tails": rng.standard_t(1, size=(chains, n)),
        "three values": rng.integers(0, 3, size=(chains, n)).astype(float),
    }


@pytest.mark.parametrize("chains", [1, 2, 4])
@pytest.mark.parametrize("n", [4, 7, 250, 1001])
def test_agrees_with_arviz(chains, n):
    rng = np.random.default_rng(chains * 10_000 + n)
    # The tail ESS counts the draws at or below the 5% and 95% quantiles. ArviZ 0.x computes
    # them as scipy's mquantiles, as bayesmix does; ArviZ 1 by numpy.quantile, which rounds
    # differently where a quantile falls on a draw ((n - 1) p whole: 1001 draws of one chain),
    # and then counts that draw on the other side: up to ~2% apart there.
    tail_rtol = 1e-10 if int(az.__version__.split(".")[0]) < 1 else 0.02
    for name, v in _draws(rng, chains, n).items():
        pairs = [
            (convergence.ess_bulk(v), az.ess(v, method="bulk"), 1e-10),
            # (ArviZ 1 needs the tail's probabilities given; they are ArviZ 0.x's default)
            (convergence.ess_tail(v), az.ess(v, method="tail", prob=(0.05, 0.95)), tail_rtol),
        ]
        if chains > 1:
            pairs.append((convergence.rhat(v), az.rhat(v), 1e-10))
        for ours, theirs, rtol in pairs:
            np.testing.assert_allclose(ours, float(theirs), rtol=rtol, err_msg=name)


def test_too_few_draws_or_chains_give_nan():
    v = np.random.default_rng(0).normal(size=(2, 3))
    assert np.isnan(convergence.ess_bulk(v))
    assert np.isnan(convergence.ess_tail(v))
    assert np.isnan(convergence.rhat(v))
    assert np.isnan(convergence.rhat(np.random.default_rng(1).normal(size=(1, 100))))


def test_chains_stuck_at_their_own_values_have_infinite_rhat():
    """As ArviZ: no variance within the chains, some between them: R-hat inf (no warning)."""
    stuck = np.repeat(np.arange(4.0)[:, None], 20, axis=1)
    assert convergence.rhat(stuck) == np.inf
    assert convergence.ess_bulk(stuck) == pytest.approx(20 / 3)


def test_normal_quantiles_are_scipys():
    rng = np.random.default_rng(0)
    p = np.concatenate(
        [rng.uniform(size=100_000), np.logspace(-300, -1, 500), 1 - np.logspace(-16, -1, 500)]
    )
    np.testing.assert_allclose(convergence._norm_ppf(p), scipy.special.ndtri(p), rtol=1e-14)
