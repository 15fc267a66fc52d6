"""The local variational posterior (guide-side enumeration) against exact responsibilities."""

from __future__ import annotations

import numpy as np
import pytest

import bayesmix as bm


def test_local_probabilities_are_normalised_and_match_responsibilities(seed_fit, pyro_ref):
    local = bm.fit_local(seed_fit, bm.SEED_DATA)
    assert local.probs.shape == (5, 2)
    np.testing.assert_allclose(local.probs.sum(1), 1.0, rtol=1e-12)
    exact = bm.predict_proba(seed_fit, bm.SEED_DATA)
    # 200 steps of Adam at lr 0.2 move the logits by ~ 200 * 0.2: q reaches 1 - 5e-4.
    np.testing.assert_allclose(local.probs, exact, atol=1e-3)
    # Pyro's unit_interval "probabilities" are not normalised: each row sums to ~0.95.
    assert np.all(np.abs(np.sum(pyro_ref["assignment_probs"], 1) - 1) > 0.04)
    assert local.losses.shape == (200,) and local.grad_norms["logits"].shape == (200,)
    # The loss starts at the same value as Pyro's guide (uniform q) up to its normalisation.
    assert local.losses[-1] < local.losses[0]


def test_converges_to_soft_responsibilities():
    # Points near the boundary have responsibilities far from 0 and 1.
    x = np.array([0.0, 1.0, 5.2, 5.75, 6.3, 10.0, 11.0, 12.0])
    fit = bm.fit_map(x, 2, steps=1000)
    local = bm.fit_local(fit, x, steps=3000, learning_rate=0.1, final_learning_rate=1e-4)
    exact = bm.predict_proba(fit, x)
    assert 0.05 < exact[3, 0] < 0.95
    np.testing.assert_allclose(local.probs, exact, atol=1e-4)
    # At the optimum the ELBO equals the log joint: -ELBO = -log p(globals, x).
    assert local.losses[-1] == pytest.approx(fit.neg_log_joint, abs=1e-4)


def test_local_fit_on_new_data_of_any_size(seed_fit):
    local = bm.fit_local(seed_fit, [5.75], steps=50)
    assert local.probs.shape == (1, 2)
    with pytest.raises(bm.SpecError, match="steps"):
        bm.fit_local(seed_fit, bm.SEED_DATA, steps=0)


def test_row_counts_of_one_bucket_share_the_program_and_padding_changes_nothing(monkeypatch):
    """Small data is padded to a bucket of rows (`pad_rows`): 301 rows run the local guide's
    program of 300, with the q and the loss trace of the unpadded rows."""
    from bayesmix.infer import estep, vi

    rng = np.random.default_rng(5)
    x = rng.normal(size=(301, 1)) + 4 * (rng.random((301, 1)) < 0.5)
    fit = bm.fit_em(x, 2)
    bm.fit_local(fit, x[:300])
    programs = len(vi._local_program._loaded)
    padded = bm.fit_local(fit, x)
    assert len(vi._local_program._loaded) == programs
    monkeypatch.setattr(estep, "PAD_VALUES", 0)
    plain = bm.fit_local(fit, x)
    assert padded.probs.shape == (301, 2)
    np.testing.assert_allclose(padded.probs, plain.probs, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(padded.losses, plain.losses, rtol=1e-12)


def test_the_steps_closed_form_gradient_is_the_losss_gradient():
    import jax

    from bayesmix.infer import vi
    from bayesmix.infer.estep import row_mask

    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 2)) * 3
    fit = bm.fit_em(x, 3, priors="auto")
    logits = rng.normal(size=(12, 3))
    lw = bm.enumerate.log_weighted(fit.params, x)
    for n_valid in (None, 9):  # the padding rows (beyond n_valid) have no gradient
        auto = jax.grad(vi.local_elbo_loss)(logits, fit.params, x, fit.priors, n_valid)
        alive = np.ones(3, bool)
        _, closed = vi._elbo(logits, lw, alive, row_mask(x, n_valid))
        np.testing.assert_allclose(-closed, auto, rtol=1e-12, atol=1e-15)


def test_components_emptied_by_em_get_no_probability(emptied_fit):
    # EM's sparse Dirichlet step leaves weights of exactly 0: log 0 made the ELBO NaN and
    # fit_local said "diverged; try a smaller learning_rate" (so did `bayesmix fit`).
    x, fit = emptied_fit
    local = bm.fit_local(fit, x)
    exact = bm.predict_proba(fit, x)
    assert np.all(local.probs[:, 2:] == 0)
    np.testing.assert_allclose(local.probs, exact, atol=1e-3)
    # At the exact responsibilities -ELBO is the EM objective (its prior of the alive
    # components); the fit's q approach them from above (the loss is -log joint + KL, ~0.02
    # per row after 200 steps, whose logits are still far from the confident rows' optima).
    from bayesmix.infer import vi

    at_exact = vi.local_elbo_loss(np.log(np.maximum(exact, 1e-300)), fit.params, x, fit.priors)
    assert at_exact == pytest.approx(fit.neg_log_joint, rel=1e-12)
    assert 0 < local.losses[-1] - fit.neg_log_joint < 0.03 * len(x)
