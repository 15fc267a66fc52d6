"""Relabeling: Stephens' KL algorithm, the ordering constraint, the random permutation sampler.

The draw sets are built by hand (true globals of well-separated simulated clusters plus small
noise), their labels scrambled by known permutations, and relabeling must undo the scrambling
exactly, up to one permutation shared by every draw. Stephens' result is checked against a
brute-force search of every draw's permutations (local optimality of the KL objective).
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest
from scipy import stats
from scipy.optimize import linear_sum_assignment

import bayesmix as bm
from bayesmix.relabel import (
    _best_permutations,
    draw_log_responsibilities,
    order_permutations,
    permute,
    random_permutation,
    relabel,
    stephens,
)
from bayesmix.result import posterior_diagnostics
from bayesmix.simulate import sample_data

TRUE = bm.Params(
    weights=np.array([0.5, 0.3, 0.2]),
    locs=np.array([[0.0, 0.0], [6.0, 6.0], [6.0, -6.0]]),  # locs 1 and 2 share coordinate 0
    scale=np.array([1.0, 0.7, 1.2]),
)
MODEL = bm.Mixture(3, "spherical")


def _draws(chains: int, draws: int, seed: int) -> bm.Params:
    """Globals near TRUE, leading axes (chains, draws): what a sampler in one mode returns."""
    rng = np.random.default_rng(seed)
    shape = (chains, draws)
    w = rng.dirichlet(200 * TRUE.weights, size=shape)
    locs = TRUE.locs + 0.1 * rng.standard_normal(shape + TRUE.locs.shape)
    scale = TRUE.scale * np.exp(0.05 * rng.standard_normal(shape + (3,)))
    return bm.Params(w, locs, scale)


def _scramble(params: bm.Params, seed: int) -> tuple[bm.Params, np.ndarray]:
    shape = params.locs.shape[:2] + (3,)
    perms = np.argsort(np.random.default_rng(seed).random(shape), axis=-1)
    return permute(params, perms, MODEL), perms


@pytest.fixture(scope="module")
def data():
    x, _ = sample_data(jax.random.key(0), jax.tree.map(np.asarray, TRUE), 150)
    return np.asarray(x)


def _posterior(params: bm.Params) -> bm.Posterior:
    return bm.Posterior(MODEL, params, sampler={})


def test_stephens_recovers_scrambled_labels_exactly(data):
    clean = _draws(4, 100, seed=1)
    scrambled, _ = _scramble(clean, seed=2)
    assert np.mean(np.any(scrambled.locs != clean.locs, axis=(-1, -2))) > 0.7
    out = relabel(_posterior(scrambled), data)
    # One permutation sigma, shared by every draw, maps the clean labels to the recovered ones.
    sigma = np.argmin(np.abs(out.params.locs[0, 0, :, None, :] - TRUE.locs).sum(-1), axis=1)
    expected = permute(clean, np.broadcast_to(sigma, (4, 100, 3)), MODEL)
    for field in ("weights", "locs", "scale"):
        np.testing.assert_array_equal(getattr(out.params, field), getattr(expected, field))
    record = out.diagnostics["relabeling"]
    assert record["method"] == "stephens" and record["converged"]
    # The relabeled draws are consistent: the chains agree and nothing is flagged.
    assert all(row["r_hat"] < 1.05 for row in out.diagnostics["summary"].values())


def test_ordering_fails_where_the_coordinate_is_shared_but_stephens_does_not(data):
    clean = _draws(2, 200, seed=3)
    clean = clean._replace(locs=clean.locs.copy())
    clean.locs[..., 1:, 0] = 6.0 + 0.1 * np.random.default_rng(4).standard_normal((2, 200, 2))
    scrambled, _ = _scramble(clean, seed=5)
    by_order = relabel(_posterior(scrambled), method="order")
    # Components 1 and 2 (same first coordinate, second coordinates +-6) get mixed up ...
    assert np.ptp(np.sign(by_order.params.locs[..., 2, 1])) == 2
    # ... while Stephens keeps every draw's component 1 at the same cluster.
    by_kl = relabel(_posterior(scrambled), data)
    assert np.ptp(np.sign(by_kl.params.locs[..., 1, 1])) == 0
    assert np.ptp(np.sign(by_kl.params.locs[..., 2, 1])) == 0


def test_stephens_is_a_local_optimum_of_the_kl_objective(data):
    scrambled, _ = _scramble(_draws(1, 12, seed=6), seed=7)
    flat = jax.tree.map(lambda v: v[0], scrambled)
    # Perturb the clean draws heavily so that the optimum is not trivial.
    rng = np.random.default_rng(8)
    flat = flat._replace(locs=flat.locs + 3.0 * rng.standard_normal(flat.locs.shape))
    logp = draw_log_responsibilities(flat, data[:40])
    perms, _, converged = stephens(logp)
    assert converged
    p = np.exp(logp)

    def objective(perms):
        permuted = np.take_along_axis(p, perms[:, None, :], axis=-1)
        q = permuted.mean(0)
        return np.sum(q * (np.log(q) - np.take_along_axis(logp, perms[:, None, :], -1)))

    best = objective(perms)
    for s in range(len(perms)):  # changing any single draw's permutation cannot do better
        for nu in itertools.permutations(range(3)):
            trial = perms.copy()
            trial[s] = nu
            assert objective(trial) >= best - 1e-9


@pytest.mark.parametrize("k", [3, 4, 6])
def test_assignment_solutions_match_scipy(k):
    gain = np.random.default_rng(k).standard_normal((50, k, k))
    got = _best_permutations(gain)
    want = np.stack([linear_sum_assignment(-g)[1] for g in gain])
    score = np.take_along_axis(gain, got[:, :, None], -1).sum((1, 2))
    best = np.take_along_axis(gain, want[:, :, None], -1).sum((1, 2))
    np.testing.assert_allclose(score, best, rtol=0, atol=1e-12)


def test_permute_moves_every_component_field_together():
    rng = np.random.default_rng(9)
    model = bm.Mixture(3, "full")
    chol = np.linalg.cholesky(
        np.eye(2) + 0.5 * np.eye(2)[::-1] * rng.uniform(-1, 1, (2, 5, 3, 1, 1))
    )
    params = bm.Params(
        rng.dirichlet(np.ones(3), (2, 5)),
        rng.normal(size=(2, 5, 3, 2)),
        rng.uniform(1, 2, (2, 5, 3, 2)),
        chol,
    )
    perms = np.argsort(rng.random((2, 5, 3)), -1)
    out = permute(params, perms, model)
    for c, s in itertools.product(range(2), range(5)):
        for j in range(3):
            src = perms[c, s, j]
            assert out.weights[c, s, j] == params.weights[c, s, src]
            np.testing.assert_array_equal(out.locs[c, s, j], params.locs[c, s, src])
            np.testing.assert_array_equal(out.scale[c, s, j], params.scale[c, s, src])
            np.testing.assert_array_equal(out.corr_chol[c, s, j], params.corr_chol[c, s, src])


def test_ordering_sorts_by_the_chosen_coordinate():
    clean = _draws(2, 30, seed=10)
    scrambled, _ = _scramble(clean, seed=11)
    out = relabel(_posterior(scrambled), method="order", coordinate=1)
    assert np.all(np.diff(out.params.locs[..., 1], axis=-1) >= 0)
    np.testing.assert_array_equal(
        order_permutations(out.params.locs, 1), np.tile([0, 1, 2], (2, 30, 1))
    )


def test_random_permutation_visits_every_labelling_uniformly():
    clean = _draws(2, 3000, seed=12)
    out = random_permutation(_posterior(clean), seed=0)
    # Which true component sits at label 0, per draw: uniform over the 3 (chi-square test).
    first = np.argmin(np.abs(out.params.locs[..., 0, None, :] - TRUE.locs).sum(-1), axis=-1)
    counts = np.bincount(first.ravel(), minlength=3)
    assert stats.chisquare(counts).pvalue > 0.001
    np.testing.assert_allclose(np.sort(out.params.weights, -1), np.sort(clean.weights, -1))


def test_bad_requests_name_the_fix(data):
    post = _posterior(_draws(1, 4, seed=13))
    with pytest.raises(bm.SpecError, match="needs the data"):
        relabel(post)
    with pytest.raises(bm.SpecError, match="unknown relabeling method"):
        relabel(post, data, method="pivot")
    with pytest.raises(bm.SpecError, match="coordinate 2 does not exist"):
        relabel(post, method="order", coordinate=2)
    with pytest.raises(bm.DataError, match="columns"):
        relabel(post, data[:, :1])
    empty = _posterior(jax.tree.map(lambda v: v[:, :0], _draws(1, 4, seed=14)))
    with pytest.raises(bm.SpecError, match="no draws"):
        relabel(empty, data)
    with pytest.raises(bm.SpecError, match="no draws"):
        posterior_diagnostics(empty)
    with pytest.raises(bm.SpecError, match="expected a Posterior"):
        relabel(bm.fit_map(data, 3, n_init=2, steps=5), data)
    with pytest.raises(
        bm.SpecError, match="seed must be a whole number from 0 to 2..32 - 1, got -1"
    ):
        bm.random_permutation(post, seed=-1)
