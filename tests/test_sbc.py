"""Simulation-based calibration (Talts et al. 2018) of collapsed NUTS and tempered SMC.

For r = 1..R: draw globals from the prior, data from the globals, run the sampler, keep L
(nearly) independent posterior draws and record the rank of the true value of each functional
among them. If the sampler draws from the exact posterior, every rank is uniform on 0..L.
Functionals: the scale, the smaller and the larger loc and the lower component's weight (sorted
by loc, so that the labels do not matter: a rank statistic may use any function of the globals).

Settings: K = 2, D = 1, N = 12, priors weights ~ Dirichlet(2), locs ~ Normal(0, 3), scale ~
LogNormal(0, 0.3); R = 100 replications; L = 9 draws (NUTS: one chain, 300 warm-up + 270 draws
thinned by 30; SMC: 9 of 400 particles chosen at random), so ranks take 10 values. Test:
chi-square on the 10 rank counts of each functional (expected 10 per bin), rejecting at
p < 0.001 (Bonferroni over the 8 tests, family-wise 0.8%).

Power of each functional's test (simulated for these R, L, bins and threshold, 2000
repetitions, a Gaussian posterior against a Gaussian sampler): posterior sd 50% too small is
caught with probability 0.97, 30% too small 0.20; 2x too wide 0.77, 1.5x 0.13; a shift of 0.75
posterior sd 0.98, 0.5 sd 0.52, 0.25 sd 0.03. Smaller errors pass. (Check: a sampler whose
scale prior is off by 0.2 on the log scale fails with p ~ 5e-7.)
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy import stats

import bayesmix as bm
from bayesmix.infer.smc import sample_smc
from bayesmix.simulate import sample_data, sample_prior

R, L, N = 100, 9, 12
PRIORS = bm.Priors(weights_concentration=2.0, locs_scale=3.0, scale_scale=0.3)
MODEL = bm.Mixture(2)


def _functionals(p: bm.Params) -> np.ndarray:
    """(..., 4): scale, min loc, max loc, weight of the lower component."""
    locs = np.asarray(p.locs)[..., 0]
    lower = np.argmin(locs, axis=-1)
    w_low = np.take_along_axis(np.asarray(p.weights), lower[..., None], -1)[..., 0]
    return np.stack([np.asarray(p.scale), locs.min(-1), locs.max(-1), w_low], axis=-1)


def _datasets():
    key = jax.random.key(2024)
    for r in range(R):
        k_prior, k_data = jax.random.split(jax.random.fold_in(key, r))
        truth = jax.tree.map(np.asarray, sample_prior(k_prior, MODEL, PRIORS, 1))
        x, _ = sample_data(k_data, truth, N)
        yield truth, np.asarray(x)


def _check_uniform(ranks: np.ndarray) -> None:
    """ranks: (R, 4) in 0..L."""
    for j, name in enumerate(["scale", "min loc", "max loc", "lower weight"]):
        counts = np.bincount(ranks[:, j], minlength=L + 1)
        p = stats.chisquare(counts).pvalue
        assert p > 0.001, (name, counts, p)


@pytest.mark.slow
def test_nuts_is_calibrated():
    ranks = []
    for r, (truth, x) in enumerate(_datasets()):
        post = bm.sample_nuts(x, 2, priors=PRIORS, chains=1, warmup=300, draws=270, seed=r)
        draws = _functionals(post.params)[0, 29::30]  # (L, 4), thinned
        ranks.append(np.sum(draws < _functionals(truth), axis=0))
    _check_uniform(np.array(ranks))


@pytest.mark.slow
def test_smc_is_calibrated():
    ranks = []
    rng = np.random.default_rng(0)
    for r, (truth, x) in enumerate(_datasets()):
        post = sample_smc(x, 2, priors=PRIORS, particles=400, runs=1, mcmc_steps=5, seed=r)
        pick = rng.choice(400, L, replace=False)
        draws = _functionals(post.params)[0, pick]
        ranks.append(np.sum(draws < _functionals(truth), axis=0))
    _check_uniform(np.array(ranks))
