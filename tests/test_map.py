"""MAP fit on the seed data against Pyro's numbers and exact computations."""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

import bayesmix as bm
from bayesmix.enumerate import log_joint
from bayesmix.model import Params, Priors


def _sorted(fit):
    order = np.argsort(fit.params.locs[:, 0])
    return fit.params.weights[order], fit.params.locs[order, 0], float(fit.params.scale)


def test_map_equals_pyro(seed_fit, pyro_ref):
    w, locs, scale = _sorted(seed_fit)
    ref = pyro_ref["map"]
    order = np.argsort(ref["locs"])
    np.testing.assert_allclose(w, np.asarray(ref["weights"])[order], atol=1e-3)
    np.testing.assert_allclose(locs, np.asarray(ref["locs"])[order], atol=1e-3)
    assert scale == pytest.approx(ref["scale"], abs=1e-3)
    assert seed_fit.neg_log_joint == pytest.approx(17.4433, abs=1e-3)
    assert seed_fit.converged


def test_map_is_a_stationary_point_of_the_exact_objective(seed_fit):
    # Closed form for the weights: (n_k + alpha - 1) / (N + K alpha - K) with counts (2, 3).
    w, _, _ = _sorted(seed_fit)
    np.testing.assert_allclose(w, [1.5 / 4, 2.5 / 4], atol=1e-4)
    assert seed_fit.final_grad_norm < 1e-3


def test_best_initial_loss_is_best_over_all_pairs(seed_fit, pyro_ref):
    x = bm.SEED_DATA
    scale = np.sqrt(np.var(x[:, 0], ddof=1) / 2)
    losses = [
        -float(
            log_joint(
                Params(jnp.asarray([0.5, 0.5]), jnp.asarray(x[[i, j]]), jnp.asarray(scale)),
                jnp.asarray(x),
                Priors(),
            )
        )
        for i, j in itertools.combinations(range(5), 2)
    ]
    assert min(losses) == pytest.approx(25.6656, abs=1e-4)
    assert seed_fit.initial_loss == pytest.approx(min(losses), rel=1e-10)
    assert seed_fit.initial_loss == pytest.approx(pyro_ref["initial_loss"], abs=1e-4)
    # Every scored initialization is one of the 10 pairs' losses (the scheme is the seed's).
    assert np.all(np.min(np.abs(seed_fit.init_losses[:, None] - np.array(losses)), 1) < 1e-9)
    assert seed_fit.init_losses.shape == (100,)


def test_traces_have_one_entry_per_step(seed_fit, pyro_ref):
    assert seed_fit.losses.shape == (200,)
    assert set(seed_fit.grad_norms) == {"weights", "locs", "scale"}
    assert all(v.shape == (200,) and np.all(v >= 0) for v in seed_fit.grad_norms.values())
    # The first loss is the chosen initialization's, as in Pyro (svi.step returns it).
    assert seed_fit.losses[0] == pytest.approx(pyro_ref["map_losses"][0], abs=1e-4)
    assert seed_fit.losses[-1] == pytest.approx(pyro_ref["map_losses"][-1], abs=1e-3)


def test_kmeanspp_init_reaches_the_same_map(seed_fit):
    fit = bm.fit_map(bm.SEED_DATA, 2, init="kmeans++", n_init=10, steps=400, seed=1)
    assert fit.neg_log_joint == pytest.approx(seed_fit.neg_log_joint, abs=1e-4)


def test_multivariate_map_recovers_separated_clusters():
    rng = np.random.default_rng(0)
    truth = np.array([[-4.0, 0.0, 2.0], [4.0, 1.0, -2.0], [0.0, 6.0, 0.0]])
    x = np.concatenate([rng.normal(m, 0.5, (60, 3)) for m in truth])
    fit = bm.fit_map(x, 3, n_init=20, steps=500, seed=0)
    order = np.argsort(fit.params.locs[:, 0])
    np.testing.assert_allclose(fit.params.locs[order], truth[np.argsort(truth[:, 0])], atol=0.25)
    assert float(fit.params.scale) == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "at least 1"),
        ({"k": 6}, "K <= 5"),
        ({"k": 2.5}, "whole number"),
        ({"k": 2, "n_init": 0}, "n_init"),
        ({"k": 2, "init": "random"}, "unknown init"),
        ({"k": 2, "priors": Priors(locs_scale=-1.0)}, "locs_scale must be > 0"),
    ],
)
def test_bad_options_are_refused_clearly(kwargs, message):
    with pytest.raises(bm.SpecError, match=message):
        bm.fit_map(bm.SEED_DATA, **kwargs)


def test_adam_steps_that_do_not_suit_the_data_are_warned_of():
    """Adam moves ~learning_rate per step in the data's units: at data sd 1e-6 it missed the
    MAP by 6e4 sds, at 1e6 by half an sd; the tutorial's settings on its data: no warning."""
    rng = np.random.default_rng(0)
    base = np.concatenate([rng.normal(-3, 1, 60), rng.normal(3, 1, 40)])
    for unit in (1e-6, 1e6):
        x = unit * base
        with pytest.warns(bm.FitWarning, match="column 0 has sd .*Use bm.fit_em") as w:
            bm.fit_map(x, 2, priors=bm.Priors.from_data(x), steps=2, n_init=1)
        assert w[0].filename == __file__  # the user's call, not bayesmix's line
    bm.fit_map(bm.SEED_DATA, 2, steps=2, n_init=1)  # warnings are errors in the tests
    bm.fit_map(1e-6 * base, 2, priors=bm.Priors.from_data(1e-6 * base), steps=2, n_init=1,
               optimizer="lbfgs")  # fmt: skip


def test_lbfgs_does_not_depend_on_the_data_units():
    """L-BFGS moves in data-free units (the locs in column sds): in float32 (a user's default)
    data in units 1e4 times larger or smaller reach the same MAP, scaled (in the data's units
    its one Hessian scale, shared by locs and log scales, stopped 0.3 sd short at 1e4)."""
    import jax

    rng = np.random.default_rng(0)
    base = np.concatenate([rng.normal(0, 1, (150, 2)), rng.normal(5, 1, (150, 2))])
    with jax.enable_x64(False):
        fits = {
            s: bm.fit_map(s * base, 2, priors="auto", optimizer="lbfgs") for s in (1, 1e-4, 1e4)
        }
    em = bm.fit_em(base, 2, priors="auto")
    for s, fit in fits.items():
        np.testing.assert_allclose(np.sort(fit.params.locs[:, 0]) / s,
                                   np.sort(em.params.locs[:, 0]), rtol=1e-4, atol=1e-4)  # fmt: skip


def test_row_counts_of_one_bucket_share_the_program_and_padding_changes_nothing(monkeypatch):
    """Small data is padded to a bucket of rows (`pad_rows`): 301 rows run the program of 300
    (each row count compiled its own, 0.6-2 s), with the result of the unpadded rows (the
    tutorial's "seed" starts draw the same rows either way)."""
    from bayesmix.infer import estep
    from bayesmix.infer import map as map_

    rng = np.random.default_rng(4)
    x = rng.normal(size=(301, 2)) + 6 * (rng.random((301, 1)) < 0.5)
    bm.fit_map(x[:300], 2, n_init=4, steps=50)
    programs = len(map_._map_program._loaded)
    padded = bm.fit_map(x, 2, n_init=4, steps=50)
    assert len(map_._map_program._loaded) == programs
    monkeypatch.setattr(estep, "PAD_VALUES", 0)
    plain = bm.fit_map(x, 2, n_init=4, steps=50)
    np.testing.assert_allclose(padded.losses, plain.losses, rtol=1e-10)
    np.testing.assert_allclose(padded.params.locs, plain.params.locs, rtol=1e-9)
    assert padded.log_likelihood == pytest.approx(plain.log_likelihood, rel=1e-12)
