"""MAP-EM against the gradient MAP fitter, the exact log joint, and its own guarantees."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayesmix as bm
from bayesmix.enumerate import log_joint
from bayesmix.infer.em import FitInterrupted, fit_em
from bayesmix.infer.estep import Stats, estep, zero_stats
from bayesmix.infer.mstep import expected_log_joint, log_prior_alive, update
from bayesmix.model import Mixture, Params, Priors, log_prior


def _blobs(n=200, seed=0):
    rng = np.random.default_rng(seed)
    covs = [[[1, 0.8], [0.8, 1]], [[0.3, 0], [0, 2]], [[1, -0.5], [-0.5, 0.6]]]
    means = [[0, 0], [5, 5], [-4, 6]]
    return np.concatenate(
        [rng.multivariate_normal(m, c, n) for m, c in zip(means, covs, strict=True)]
    )


def _exact_neg_log_joint(fit, x):
    params = jax.tree.map(jnp.asarray, fit.params)
    return -float(log_joint(params, jnp.asarray(x), fit.priors))


def _assert_monotone(fit):
    steps = np.diff(fit.losses)
    assert np.all(steps <= 1e-9 * np.abs(fit.losses[1:])), steps.max()


def test_em_reaches_the_seed_map_of_the_gradient_fitter(seed_fit):
    fit = fit_em(bm.SEED_DATA, 2, n_init=100, init="seed", init_iters=0)  # fit_map's scoring
    assert fit.neg_log_joint == pytest.approx(seed_fit.neg_log_joint, rel=1e-6)
    assert fit.neg_log_joint == pytest.approx(17.4433, abs=1e-3)
    # Same start as fit_map (same scheme, restarts and seed), and the closed-form weights.
    assert fit.initial_loss == pytest.approx(seed_fit.initial_loss, rel=1e-10)
    np.testing.assert_allclose(np.sort(fit.params.weights), [1.5 / 4, 2.5 / 4], atol=1e-8)
    np.testing.assert_allclose(
        np.sort(fit.params.locs[:, 0]), np.sort(seed_fit.params.locs[:, 0]), atol=1e-4
    )
    assert fit.converged and fit.final_grad_norm < 1e-5
    _assert_monotone(fit)


@pytest.mark.parametrize(("covariance", "family"), [("diag", "normal"), ("diag", "student-t")])
def test_em_and_lbfgs_reach_the_same_optimum(covariance, family):
    x = _blobs(120)
    priors = Priors.from_data(x)
    kw = dict(covariance=covariance, family=family, priors=priors, n_init=3, seed=0)
    em = fit_em(x, 3, tol=1e-10, max_iter=3000, **kw)
    grad = bm.fit_map(x, 3, init="kmeans++", steps=400, optimizer="lbfgs", **kw)
    assert em.neg_log_joint == pytest.approx(grad.neg_log_joint, rel=1e-4)
    assert em.neg_log_joint == pytest.approx(_exact_neg_log_joint(em, x), rel=1e-10)
    assert em.converged and np.isfinite(em.final_grad_norm)
    _assert_monotone(em)
    if family == "student-t":
        assert float(em.params.df) == pytest.approx(float(grad.params.df), rel=1e-2)


def test_em_matches_adam_with_a_decaying_learning_rate():
    x = _blobs(80, seed=1)
    kw = dict(covariance="full", priors=Priors.from_data(x), n_init=3)
    em = fit_em(x, 3, tol=1e-10, max_iter=2000, **kw)
    adam = bm.fit_map(
        x, 3, init="kmeans++", steps=3000, learning_rate=0.05, final_learning_rate=1e-4, **kw
    )
    assert em.neg_log_joint == pytest.approx(adam.neg_log_joint, rel=1e-4)
    assert em.neg_log_joint <= adam.neg_log_joint + 1e-6
    assert em.neg_log_joint == pytest.approx(_exact_neg_log_joint(em, x), rel=1e-10)
    _assert_monotone(em)


def test_lbfgs_option_reaches_the_seed_map(seed_fit):
    fit = bm.fit_map(bm.SEED_DATA, 2, optimizer="lbfgs", steps=100)
    assert fit.neg_log_joint == pytest.approx(seed_fit.neg_log_joint, abs=1e-6)
    assert fit.final_grad_norm < 1e-5
    with pytest.raises(bm.SpecError, match="unknown optimizer"):
        bm.fit_map(bm.SEED_DATA, 2, optimizer="sgd")


def test_masked_log_prior_is_the_log_prior_when_every_component_is_alive():
    rng = np.random.default_rng(0)
    priors = Priors(scale_loc=np.array([0.1, -0.2]), locs_loc=np.array([1.0, 2.0]))
    for cov in ("shared", "spherical", "diag", "full", "tied"):
        model = Mixture(3, cov, "student-t")
        u = jax.tree.map(
            lambda v: jnp.asarray(rng.normal(size=np.shape(v))),
            model.to_unconstrained(model.params_from_init(_init(rng))),
        )
        p = model.from_unconstrained(u)
        both = jax.jit(
            lambda p: (log_prior_alive(p, priors, jnp.ones(3, bool)), log_prior(p, priors))
        )
        masked, plain = both(p)
        assert float(masked) == pytest.approx(float(plain), rel=1e-12)


def _init(rng):
    from bayesmix.model import Init

    return Init(jnp.full(3, 1 / 3), jnp.asarray(rng.normal(size=(3, 2))), jnp.ones(2))


@pytest.mark.parametrize(
    ("covariance", "family"), [("spherical", "student-t"), ("tied", "normal"), ("full", "normal")]
)
def test_m_step_increases_the_expected_log_joint_and_q_gradient_is_the_true_gradient(
    covariance, family
):
    x = jnp.asarray(_blobs(40, seed=2))
    model = Mixture(3, covariance, family)
    priors = Priors.from_data(np.asarray(x))  # the same pytree as the other tests: no recompiles
    fit = fit_em(np.asarray(x), 3, covariance=covariance, family=family, priors=priors, max_iter=2,
                 init_iters=0)  # fmt: skip
    p, priors = jax.tree.map(jnp.asarray, fit.params), fit.priors
    c = jnp.asarray(np.asarray(p.weights) @ np.asarray(p.locs))
    moment = {"full": "full", "tied": "tied"}.get(covariance, "diag")
    st = estep(p, x, x.shape[0], c, moment=moment, block=64, work=1)
    q = jax.jit(lambda p: expected_log_joint(model, p, st, c, priors))
    _, new, _ = update(model, p, st, c, priors)  # the program fit_em compiled
    assert float(q(new)) > float(q(p))
    # Fisher's identity: grad Q(. | p) at p = grad log joint at p (unconstrained space).
    u = model.to_unconstrained(p)
    g_q = jax.jit(jax.grad(lambda v: q(model.from_unconstrained(v))))(u)
    g_lj = jax.jit(jax.grad(lambda v: log_joint(model.from_unconstrained(v), x, priors)))(u)
    for a, b in zip(jax.tree.leaves(g_q), jax.tree.leaves(g_lj), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-7)


def test_full_covariance_m_step_at_ten_dimensions_and_eight_components_finishes():
    # Vmapped over the components, this M-step hung XLA's CPU runtime (D = 10, K = 8).
    d, k = 10, 8
    rng = np.random.default_rng(0)
    a = rng.normal(size=(k, d, d))
    model = Mixture(k, "full")
    p = model.params_from_init(
        bm.model.Init(jnp.ones(k) / k, jnp.asarray(rng.normal(size=(k, d))), jnp.ones(d))
    )
    st = Stats(
        *map(jnp.asarray, (1000.0, 0.0, np.full(k, 125.0), np.full(k, 125.0))),
        jnp.asarray(rng.normal(size=(k, d))),
        jnp.asarray(a @ np.swapaxes(a, 1, 2) * 10 + 100 * np.eye(d)),
        jnp.zeros(()),
    )
    _, new, _ = update(model, p, st, jnp.zeros(d), Priors())
    assert np.all(np.isfinite(np.asarray(new.scale)))


def test_sparse_dirichlet_empties_unneeded_components(emptied_fit):
    # Two clusters, four components: the two started in the far tails get expected counts
    # below 1 - alpha and are emptied (weight exactly 0) by the Dirichlet MAP step.
    x, fit = emptied_fit
    np.testing.assert_array_equal(fit.params.weights[2:], 0.0)
    np.testing.assert_allclose(fit.params.locs[:2, 0], [-5, 5], atol=0.2)
    assert np.isfinite(fit.neg_log_joint) and np.isnan(fit.final_grad_norm)
    # Once emptied, the fit is the two-component model's MAP.
    two = fit_em(x, 2, covariance="spherical", init_params=Params(
        np.array([0.5, 0.5]), np.array([[-4.0], [4.0]]), np.ones(2)))  # fmt: skip
    np.testing.assert_allclose(fit.params.locs[:2], two.params.locs, atol=1e-5)
    assert fit.neg_log_joint == pytest.approx(two.neg_log_joint, rel=1e-6)
    assert set(np.unique(bm.predict(fit, x))) == {0, 1}


def test_float32_fit_agrees_with_float64():
    x = _blobs(300, seed=3)
    priors = Priors.from_data(x)
    f64 = fit_em(x, 3, covariance="diag", priors=priors, n_init=3, dtype="float64")
    f32 = fit_em(x, 3, covariance="diag", priors=priors, n_init=3, dtype="float32")
    assert f32.neg_log_joint == pytest.approx(f64.neg_log_joint, rel=1e-5)
    order = lambda f: np.argsort(f.params.locs[:, 0])  # noqa: E731
    np.testing.assert_allclose(
        f32.params.locs[order(f32)], f64.params.locs[order(f64)], rtol=1e-4, atol=1e-4
    )


def test_float32_fit_far_from_zero_agrees_with_float64():
    """Data near 1e6 in float32 (spacing 0.0625): the locs within the data's rounding of the
    float64 fit (5e-4 here); the centre's own rounding once shifted them by 5e-3."""
    rng = np.random.default_rng(1)
    x = (np.where(rng.random(20_000) < 0.3, 1e6 + 6.0, 1e6) + rng.normal(size=20_000))[:, None]
    f32 = fit_em(x, 2, priors="auto", dtype="float32", seed=0)
    f64 = fit_em(x, 2, priors="auto", dtype="float64", seed=0)
    locs = [np.sort(f.params.locs[:, 0]) for f in (f32, f64)]
    np.testing.assert_allclose(*locs, rtol=0, atol=1.5e-3)


def test_auto_priors_use_the_from_data_rule():
    x = _blobs(50)
    p = bm.Priors.from_moments(x.mean(0), x.std(0))
    q = Priors.from_data(x)
    for a, b in zip(p, q, strict=True):
        np.testing.assert_allclose(a, b)


def test_ctrl_c_returns_the_best_parameters_so_far():
    x = _blobs(100)
    seen = []

    def stop(iteration, objective, params):
        seen.append(objective)
        if iteration == 3:
            raise KeyboardInterrupt

    with pytest.warns(FitInterrupted, match="after 4 iterations"):
        fit = fit_em(x, 3, covariance="diag", n_init=2, init_iters=0, callback=stop)
    assert len(fit.losses) == 4 and not fit.converged
    assert fit.neg_log_joint == pytest.approx(-max(seen))
    assert all(len(v) == 4 for v in fit.grad_norms.values())


def test_iterations_in_one_program_are_the_iterations_one_by_one(monkeypatch):
    """An in-memory fit runs many iterations per compiled call (segments of 1, 2, 4, ...);
    with a callback every call runs one. Same objectives, changes and result, and a segment
    that ends at max_iter or convergence ends the fit there."""
    from bayesmix.infer import em

    x = _blobs(150, seed=4)
    kw = dict(covariance="diag", n_init=2, init_iters=0, progress=False)  # (EM's many steps)
    monkeypatch.setattr(em, "SEGMENT_S", 1e9)  # always grow the segments
    for max_iter in (6, 500):
        seen = []
        whole = fit_em(x, 3, max_iter=max_iter, **kw)
        one = fit_em(x, 3, max_iter=max_iter, callback=lambda *a, s=seen: s.append(a[0]), **kw)
        assert seen == list(range(len(one.losses)))
        assert len(whole.losses) == len(one.losses) == (6 if max_iter == 6 else len(seen))
        assert whole.converged == one.converged == (max_iter == 500)
        np.testing.assert_allclose(whole.losses, one.losses, rtol=1e-13)
        for f in whole.grad_norms:
            np.testing.assert_allclose(whole.grad_norms[f], one.grad_norms[f], rtol=1e-10)
        jax.tree.map(np.testing.assert_array_equal, whole.params, one.params)


def test_non_finite_objective_is_reported_with_its_iteration():
    x = np.random.default_rng(0).normal(size=(200, 1)) * 1e19  # squares overflow float32
    with (
        pytest.warns(bm.PriorWarning, match="sd 9.61e"),  # far beyond Normal(0, 10) locs
        pytest.raises(bm.FitError, match="non-finite at iteration 2; rescale the data"),
    ):
        fit_em(x, 2, dtype="float32", init_iters=0, progress=False)


def test_data_far_outside_the_priors_are_warned_of():
    """The tutorial's priors on data near 1e6 (locs ~ Normal(0, 10) pins them near 0) or with
    a spread of 1e-5 (scale ~ LogNormal(0, 2) keeps it above ~3e-4): a PriorWarning; the
    seed data and priors from the data: none."""
    rng = np.random.default_rng(0)
    for x in (1e6 + rng.normal(size=(50, 1)), 1e-5 * rng.normal(size=(50, 1))):
        with pytest.warns(bm.PriorWarning, match="column 0 of the data") as w:
            fit_em(x, 2, max_iter=2)
        assert w[0].filename == __file__  # the user's call, not bayesmix's line
        with pytest.warns(bm.PriorWarning, match="Priors.from_data"), warnings.catch_warnings():
            warnings.simplefilter("ignore", bm.FitWarning)  # tested in test_map
            bm.fit_map(x, 2, steps=2, n_init=1)
        fit_em(x, 2, max_iter=2, priors="auto")  # no warning (they are errors in the tests)
    fit_em(bm.SEED_DATA, 2, max_iter=2)


def test_start_from_given_parameters():
    x = _blobs(60)
    first = fit_em(x, 3, covariance="diag", max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = fit_em(x, 3, covariance="diag", init_params=first, max_iter=1)
    assert again.neg_log_joint == pytest.approx(first.neg_log_joint, rel=1e-12)
    assert again.initial_loss == pytest.approx(first.neg_log_joint, rel=1e-12)
    bad = Params(first.params.weights, first.params.locs[:2], first.params.scale)
    with pytest.raises(bm.SpecError, match=r"init_params.weights has shape \(3,\).*needs \(2,\)"):
        fit_em(x[:, :1], 2, covariance="diag", init_params=bad)
    with pytest.raises(bm.SpecError, match=r"init_params.corr_chol has shape None; a full"):
        fit_em(x, 3, covariance="full", init_params=first)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 6}, "K <= 5"),
        ({"k": 2, "max_iter": 0}, "max_iter"),
        ({"k": 2, "tol": -1.0}, "tol"),
        ({"k": 2, "init": "random"}, "unknown init"),
        ({"k": 2, "dtype": "float16"}, "dtype"),
        ({"k": 2, "priors": "flat"}, "priors"),
        ({"k": 2, "init_iters": "many"}, "init_iters must be 'auto' or a whole number"),
        ({"k": 2, "init_iters": -1}, "init_iters must be a whole number >= 0"),
    ],
)
def test_bad_options_are_refused_clearly(kwargs, message):
    with pytest.raises(bm.SpecError, match=message):
        fit_em(bm.SEED_DATA, **kwargs)


def test_init_sample_is_uniform_and_takes_memory_of_its_own_size_only():
    import tracemalloc

    from scipy import stats

    from bayesmix.infer.em import sample_indices

    # Uniform: every row is drawn with probability size / n (both branches: n >> size and
    # n close to size). Chi-square over the inclusion counts of 400 draws, p > 0.001.
    for n, size in ((1000, 100), (120, 100)):
        counts = np.zeros(n)
        for seed in range(400):
            idx = sample_indices(n, size, seed)
            assert len(np.unique(idx)) == size and np.all(np.diff(idx) > 0)
            counts[idx] += 1
        expected = 400 * size / n
        chi2 = np.sum((counts - expected) ** 2 / (expected * (1 - size / n)))
        assert stats.chi2.sf(chi2, n - 1) > 0.001, (n, size, chi2)
    # Memory: O(size), not O(n) (NumPy's choice permuted all 1e6 rows: 9.8 MiB peak).
    tracemalloc.start()
    sample_indices(1_000_000, 100_000, 0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 4 * 2**20


@pytest.mark.parametrize("cores", [1, 3])
def test_fit_reads_rows_in_place_and_is_the_same_at_every_address(monkeypatch, cores):
    """NumPy's large arrays start 16 bytes past a 64-byte boundary, where JAX copies: the fit
    reads the rows past the first `HEAD_ROWS` in place, from the first aligned one. The rows
    fall in the same blocks and ranges at any address, so float32 data (summed in float32
    within a block) fits bit for bit the same at 0-48 bytes from a boundary, on one core and
    split between three (it did not: the copied head's length moved the blocks)."""
    from bayesmix.infer import em, estep

    monkeypatch.setattr(estep, "PARALLEL_WORK", 1 << 15)
    monkeypatch.setattr(estep, "cores", lambda: cores)
    monkeypatch.setattr(em, "cores", lambda: cores)
    rng = np.random.default_rng(3)
    block = estep.block_rows(2)
    n, d = em.HEAD_ROWS + block + 999, 3
    base = (rng.normal(size=(n, d)) + 4 * (rng.random((n, 1)) < 0.4)).astype(np.float32)
    fits = []
    for offset in (0, 8, 16, 32, 48):
        raw = np.zeros(base.nbytes + 128, np.uint8)
        at = -raw.ctypes.data % 64 + offset
        x = raw[at : at + base.nbytes].view(np.float32).reshape(n, d)
        x[:] = base
        ranges = em.device_ranges(x, 2, block)
        assert len(ranges) == 1 + cores
        rest = ranges[-1][0]
        assert 0 <= rest.unsafe_buffer_pointer() - x.ctypes.data < em.HEAD_ROWS * x.strides[0]
        rows = np.concatenate([np.asarray(xd)[lo:hi] for xd, lo, hi in ranges])
        np.testing.assert_array_equal(rows, x)
        fits.append(fit_em(x, 2, covariance="diag", dtype="float32", progress=False))
    for fit in fits[1:]:
        np.testing.assert_array_equal(fit.losses, fits[0].losses)
        jax.tree.map(np.testing.assert_array_equal, fit.params, fits[0].params)


def test_rows_split_between_cores_fit_as_one_range(monkeypatch):
    """Each core sums the statistics of its own range of rows in every E-step: with the rows
    split three ways (uneven lengths, one compiled program) the fit is the one-range fit."""
    from bayesmix.infer import em, estep

    rng = np.random.default_rng(5)
    x = rng.normal(size=(1001, 2)) + 5 * (rng.random((1001, 1)) < 0.3)
    # (The starts as they are: a short EM on split rows rounds differently, and the fit from
    # where it got to may converge an iteration sooner or later.)
    options = dict(covariance="diag", init_iters=0, progress=False)
    one = fit_em(x, 2, **options)
    monkeypatch.setattr(estep, "PARALLEL_WORK", 600)
    monkeypatch.setattr(estep, "cores", lambda: 3)
    monkeypatch.setattr(em, "cores", lambda: 3)
    assert estep.row_ranges(1001, 2) == [(0, 333), (333, 667), (667, 1001)]
    split = fit_em(x, 2, **options)
    assert len(split.losses) == len(one.losses)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12),
        split.params,
        one.params,
    )


@pytest.mark.parametrize(
    ("ss", "count"),
    [(ss, n) for ss in (0.0, 1e-12, 1e-3, 1.0, 1e6) for n in (0.0, 50.0, 1e6) if ss or n < 1e6],
)  # S = 0 with n = 1e6: the maximizer, e^{-2e6}, is 0 in float64
def test_diag_scale_step_is_the_exact_conditional_maximizer(ss, count):
    """The scale's M-step maximizes f(t) = -(n + 1) t - S e^{-2t} / 2 - (t - a)^2 / (2 b^2)
    (t = log scale) from any start, also for a component on repeated rows (S ~ 0, whose
    maximizer is near a - b^2 (n + 1), t ~ -100): f'(t) = 0 there, checked in closed form,
    and f is at least its value on a fine grid around it."""
    from bayesmix.infer.mstep import _diag_scales

    params = Params(jnp.ones(1), jnp.zeros((1, 1)), jnp.full((1,), 0.7))
    st = zero_stats(1, 1, "diag")._replace(n=jnp.array([count]))
    priors = Priors(scale_loc=0.2, scale_scale=1.5)
    t = float(jnp.log(_diag_scales(params, jnp.array([[ss]]), st, priors)[0]))
    a, b2 = 0.2, 1.5**2

    def f(t):
        return -(count + 1) * t - 0.5 * ss * np.exp(-2 * t) - (t - a) ** 2 / (2 * b2)

    grad = -(count + 1) + ss * np.exp(-2 * t) - (t - a) / b2
    assert abs(grad) <= 1e-9 * (count + 1 + ss * np.exp(-2 * t) + abs(t) / b2)
    grid = t + np.linspace(-1, 1, 2001)
    assert f(t) >= np.max(f(grid)) - 1e-12 * abs(f(t))


@pytest.mark.parametrize("covariance", ["spherical", "diag", "full"])
def test_a_component_on_repeated_rows_stops_em_before_its_scale_underflows(covariance):
    """Half the rows at exactly (0, 0): the MAP of a component there has scale ~e^{-200}, which
    float64 cannot place (the locs' rounding is larger). EM stalled, "converged", at the
    starting scale (spherical), or went on after the objective fell and emptied a component
    (weights [0, 1], both locs between the clusters). Now it stops before the fall with the
    best parameters so far and a FitWarning that says why and what to do."""
    rng = np.random.default_rng(0)
    x = np.concatenate([np.zeros((50, 2)), rng.normal(5, 1, (50, 2))])
    with pytest.warns(bm.FitWarning, match="collapsing onto repeated"):
        fit = fit_em(x, 2, covariance=covariance, priors="auto")
    assert not fit.converged
    assert np.all(np.diff(fit.losses) <= 0)  # the log joint never fell
    spike = int(np.argmin(np.abs(fit.params.locs).sum(1)))
    np.testing.assert_allclose(fit.params.weights, [0.5, 0.5], atol=1e-3)
    assert np.max(np.abs(fit.params.locs[spike])) < 1e-3
    assert np.max(fit.params.scale[spike]) < 1e-3  # the spike, resolved as far as it can be
    assert np.abs(fit.params.locs[1 - spike] - 5).max() < 0.3
    assert fit.neg_log_joint < 0  # before: 274.7 and 276.8 (stalled), 376.6 (emptied)


def test_a_fall_is_told_from_the_rounding_of_the_objective():
    """300,000 rows summed in float32 (64-bit JAX off) moved the objective by +-1 at 4.7e6
    between converged iterations; a rise of ~4 stopped EM with a false warning. The fall
    allowance: 1e-5 per row plus 1e-9 of the objective, or 256 ulps of a float32 one."""
    from bayesmix.infer.em import falls

    prev = -4.7e6
    assert not falls(jnp.float32(prev - 4.0), jnp.float32(prev), 300_000)
    assert not falls(jnp.float32(prev - 100.0), jnp.float32(prev), 300_000)
    assert falls(jnp.float32(prev - 1000.0), jnp.float32(prev), 300_000)
    assert not falls(jnp.float64(prev - 3.0), jnp.float64(prev), 300_000)
    assert falls(jnp.float64(prev - 10.0), jnp.float64(prev), 300_000)
    assert falls(jnp.float64(-689.0 - 8000.0), jnp.float64(-689.0), 100)  # the spike's fall


def test_a_float32_objective_converges_at_its_resolution():
    """tol per row is below what float32 sums resolve (300,000 rows at 4.7e6: an ulp is 0.5,
    tol x N = 0.03): a float32 fit alternated by 2 ulps for all 500 iterations, and so did
    float32 data summed in float64. Where the data or the sums are float32, a change within
    4 float32 eps of the objective has converged; with float64 data and sums it has not."""
    import jax

    from bayesmix.infer.em import convergence, settled

    a, b = jnp.float64(4672174.5), jnp.float64(4672173.5)
    f32 = convergence(1e-7, 300_000, np.float32)
    assert settled(a, b, f32) and not settled(a + 2.0, b, f32)  # 4 eps x 4.7e6 = 2.2
    f64 = convergence(1e-7, 300_000, np.float64)
    assert not settled(a, b, f64) and settled(b + 0.02, b, f64)
    with jax.enable_x64(False):  # float32 sums, whatever the data
        assert convergence(1e-7, 300_000, np.float64) == f32


def test_full_covariance_m_step_by_lbfgs_reaches_newtons_maximum(monkeypatch):
    """Above NEWTON_MAX_P parameters a full covariance's M-step takes L-BFGS steps (gradients
    only: Newton's Hessian and its eigendecomposition took ~26 s per EM iteration at D = 50,
    and D = 100 did not finish): from the same statistics both reach the same conditional
    maximum (here at D = 4, K = 2, with the threshold lowered)."""
    from bayesmix.infer import mstep
    from bayesmix.infer.estep import stats

    rng = np.random.default_rng(2)
    d, k = 4, 2
    mix = rng.normal(size=(d, d)) / 2 + np.eye(d)
    x = jnp.asarray(rng.normal(size=(600, d)) @ mix + 4 * (rng.random((600, 1)) < 0.5))
    model = Mixture(k, "full")
    p = model.params_from_init(bm.model.Init(jnp.ones(k) / k, x[:k], jnp.ones(d)))
    c = jnp.mean(x, axis=0)
    st = stats(p, x, x.shape[0], c, moment="full", block=256)
    priors = Priors.from_data(np.asarray(x))

    def m_step():  # traced afresh: the threshold is read while tracing
        return jax.jit(lambda: update(model, p, st, c, priors)[1])()

    newton = m_step()
    monkeypatch.setattr(mstep, "NEWTON_MAX_P", 0)
    lbfgs = m_step()
    q = [jax.jit(expected_log_joint, static_argnums=0)(model, new, st, c, priors)
         for new in (newton, lbfgs)]  # fmt: skip
    assert q[1] >= q[0] - 1e-9 * abs(q[0])
    for a, b in ((newton.scale, lbfgs.scale), (newton.corr_chol, lbfgs.corr_chol)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


def test_row_counts_of_one_bucket_share_programs_and_padding_changes_nothing(monkeypatch):
    """Small data is fitted from a copy padded to a power of two rows: a fit of 301 rows runs
    the programs compiled for 300 (each row count compiled its own, 0.6-1 s), and the padded
    fit is the unpadded one (from the same start; the padding rows are never read)."""
    from bayesmix.infer import em, estep

    rng = np.random.default_rng(3)
    x = rng.normal(size=(301, 2)) + 6 * (rng.random((301, 1)) < 0.4)
    fit_em(x[:300], 2, covariance="diag", seed=1)
    programs = [len(p._loaded) for p in (em._init_program, em._device_segment)]
    fit_em(x, 2, covariance="diag", seed=1)
    assert [len(p._loaded) for p in (em._init_program, em._device_segment)] == programs
    start = Params(np.array([0.5, 0.5]), np.array([[0.0, 0.0], [5.0, 5.0]]), np.ones((2, 2)))
    padded = fit_em(x, 2, covariance="diag", init_params=start)
    monkeypatch.setattr(estep, "PAD_VALUES", 0)
    plain = fit_em(x, 2, covariance="diag", init_params=start)
    assert len(padded.losses) == len(plain.losses) > 3
    np.testing.assert_allclose(padded.losses, plain.losses, rtol=1e-12)
    for a, b in zip(padded.params[:3], plain.params[:3], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10)


def test_starts_are_scored_after_a_short_em_and_em_goes_on_from_the_best():
    """init_losses[i] is start i's loss after init_iters EM iterations (an EM fit from that
    start says the same), and the fit goes on from where the best start got to."""
    from bayesmix.infer.estep import pad_rows
    from bayesmix.infer.init import INITS

    x, iters = _blobs(40), 4
    fit = fit_em(x, 3, covariance="diag", init="seed", n_init=5, init_iters=iters, seed=1)
    padded, n_valid = pad_rows(x)
    starts = jax.vmap(INITS["seed"], in_axes=(0, None, None, None))(
        jax.random.split(jax.random.key(1), 5), jnp.asarray(padded), 3, n_valid
    )
    start = [
        fit.model.params_from_init(jax.tree.map(lambda v, i=i: v[i], starts)) for i in range(5)
    ]
    shorts = [
        fit_em(x, 3, covariance="diag", max_iter=iters + 1, tol=0, init_params=p) for p in start
    ]
    # The score is of the parameters before the short EM's last M-step.
    np.testing.assert_allclose(fit.init_losses, [s.losses[iters - 1] for s in shorts], rtol=1e-9)
    assert len(set(np.round(fit.init_losses, 3))) > 1  # the starts differ
    assert fit.best_init == np.argmin(fit.init_losses)
    assert fit.losses[0] == pytest.approx(shorts[fit.best_init].losses[iters], rel=1e-9)


def test_robust_fit_from_k_means_starts_finds_the_clusters_among_gross_outliers():
    """Lloyd's means chase gross outliers: every k-means start puts a component on them, and
    scored as they are, the start chosen led a Student-t fit to one broad component over two
    clusters in 3 of these 4 seeds. Scored after the short EM, all 4 fits find the 4 clusters
    (the same optimum, 1e-3 per row; it is 0.6 per row better than the broad one)."""
    rng = np.random.default_rng(5)
    centres = rng.normal(0, 3, (4, 3))
    x = centres[rng.integers(0, 4, 2000)] + rng.normal(0, 1, (2000, 3))
    x[:100] = rng.uniform(-30, 30, (100, 3))  # 5% gross outliers
    options = dict(covariance="diag", family="student-t", priors="auto")
    per_row = [fit_em(x, 4, seed=s, **options).neg_log_joint / 2000 for s in range(4)]
    np.testing.assert_allclose(per_row, min(per_row), atol=1e-3)
    scored_as_they_are = [
        fit_em(x, 4, seed=s, init_iters=0, **options).neg_log_joint / 2000 for s in range(4)
    ]
    assert sum(v > min(per_row) + 0.3 for v in scored_as_they_are) >= 3


def test_normal_starts_are_compared_after_a_short_em_by_default():
    """The wine data (178 x 13, diagonal covariances, K = 6): scored as they are, the k-means
    start of best log joint led EM to a mode 0.26 per row worse than the one a short EM from
    each start finds (4 of 4 seeds); Normal models with closed-form M-steps now run it."""
    from sklearn.datasets import load_wine

    x = load_wine().data
    options = dict(covariance="diag", priors="auto")
    per_row = [fit_em(x, 6, seed=s, **options).neg_log_joint / len(x) for s in range(2)]
    as_they_are = [
        fit_em(x, 6, seed=s, init_iters=0, **options).neg_log_joint / len(x) for s in range(2)
    ]
    np.testing.assert_allclose(per_row, 18.7600, atol=1e-4)
    assert min(as_they_are) > max(per_row) + 0.2
