"""Collapsed NUTS on the seed data against the exact posterior (tests/exact_posterior.py).

Tolerances come from the Monte Carlo error: for a functional f with posterior sd s (exact) and
effective sample size of its mean ESS (ArviZ's "mean" ESS on the draws of f, the one its MCSE
of the mean uses; the rank-normalized bulk ESS overstates it for the scale's heavy tail), the
estimate's standard error is s / sqrt(ESS); we allow 4 standard errors.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

import bayesmix as bm
from bayesmix.infer.units import unit_scales
from exact_posterior import exact_functionals

X = bm.SEED_DATA[:, 0]


@pytest.fixture(scope="module")
def exact():
    return exact_functionals(X)


@pytest.fixture(scope="module")
def post():
    return bm.sample_nuts(bm.SEED_DATA, 2, seed=0)


def _close(draws: np.ndarray, exact_mean: float, exact_sd: float) -> None:
    ess = float(az.ess(draws, method="mean"))
    se = exact_sd / np.sqrt(ess)
    assert abs(draws.mean() - exact_mean) < 4 * se, (draws.mean(), exact_mean, se, ess)


def test_posterior_is_far_from_the_map(exact, seed_fit):
    # The scale's heavy right tail: the posterior mean is almost 3x the MAP scale.
    assert exact["scale_mean"] > 2.5 * float(seed_fit.params.scale)


@pytest.mark.slow
def test_shapes_and_diagnostics(post):
    assert post.params.weights.shape == (4, 1000, 2)
    assert post.params.locs.shape == (4, 1000, 2, 1)
    assert post.params.scale.shape == (4, 1000)
    d = post.diagnostics
    assert d["chains"] == 4 and d["draws"] == 1000
    assert d["summary"]["scale"]["r_hat"] < 1.05
    assert d["divergences"] < 40


@pytest.mark.slow
def test_label_invariant_functionals_match_the_exact_posterior(post, exact):
    p = post.sorted_by_loc()
    w, locs, scale = p.weights, p.locs, p.scale
    _close(scale, exact["scale_mean"], exact["scale_sd"])
    _close(locs[..., 0, 0], exact["loc_min_mean"], exact["loc_min_sd"])
    _close(locs[..., 1, 0], exact["loc_max_mean"], exact["loc_max_sd"])
    _close(w[..., 1], exact["weight_upper_mean"], exact["weight_upper_sd"])
    # The median through P(scale < exact median) = 1/2.
    _close((scale < exact["scale_median"]).astype(float), 0.5, 0.5)


@pytest.mark.slow
def test_coclustering_matches_the_exact_posterior(post, exact):
    # Rao-Blackwellised: P(z_i = z_j | x) = E[sum_k r_ik r_jk] over the posterior draws.
    p = post.params
    w, locs, s = p.weights, p.locs[..., 0], p.scale[..., None, None]
    logr = np.log(w)[..., None, :] - 0.5 * ((X[:, None] - locs[..., None, :]) / s) ** 2
    r = np.exp(logr - logr.max(-1, keepdims=True))
    r /= r.sum(-1, keepdims=True)
    co = np.einsum("cdik,cdjk->cdij", r, r)
    for i, j in [(0, 1), (0, 4), (2, 3), (1, 2)]:
        p = exact["coclustering"][i, j]
        _close(co[..., i, j], p, np.sqrt(p * (1 - p)))


def test_chains_side_by_side_draw_what_they_draw_one_after_another(monkeypatch):
    """Chains run in threads, one per core: the draws are those of the same chains run one
    at a time (each chain's key and start are its own; nothing is shared between threads)."""
    from bayesmix.infer import nuts

    kw = dict(chains=3, warmup=30, draws=20, seed=4)
    together = bm.sample_nuts(bm.SEED_DATA, 2, **kw)
    monkeypatch.setattr(nuts, "cores", lambda: 1)
    alone = bm.sample_nuts(bm.SEED_DATA, 2, **kw)
    for a, b in zip(together.params, alone.params, strict=True):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(together.sampler["energy"], alone.sampler["energy"])


@pytest.mark.parametrize("dense_mass", [False, True])
def test_one_program_draws_what_blackjax_window_adaptation_then_nuts_draw(dense_mass):
    """Warm-up and draws share one NUTS kernel in one scan; the draws are those of BlackJAX's
    `window_adaptation` followed by `blackjax.nuts` with the tuned parameters and the same keys
    (with a diagonal or a dense mass matrix, whose momentum factor bayesmix computes where the
    matrix changes, BlackJAX at every step). A warm-up of 20 steps has every kind of window
    (fast, slow, final fast). The programs are compiled differently, and last-bit differences
    grow along the chain (1e-9 relative after 20 steps, 1e-6 after 25, in float64); a wrong
    step size or mass matrix changes the energies at once by far more than the 1e-5 allowed."""
    import blackjax
    import jax
    import jax.flatten_util
    import jax.numpy as jnp

    from bayesmix._jit import fast_compile
    from bayesmix.infer import nuts
    from bayesmix.infer.problem import problem

    x, model, priors, _ = problem(bm.SEED_DATA, 2, "shared", "normal", None, bm.Priors())
    chain = np.array([3, 1])  # seed 3, chain 1
    warmup, draws = 20, 4
    start = jax.jit(lambda x: nuts._start(x, priors, chain, None, model=model, init="seed"))(x)
    first = nuts._chain_start(x, priors, chain, None, model=model, init="seed", draws=draws,
                              dense_mass=dense_mass, work=0)  # fmt: skip
    settings = dict(
        model=model, warmup=warmup, draws=draws, target_accept=0.9, dense_mass=dense_mass
    )
    ours = nuts._nuts_chain(x, priors, chain, first, 0, warmup + draws, **settings, work=0).kept

    # The chain samples z = u / units (the locs in units of the data's sd).
    units = unit_scales(start[0], x)
    unravel = jax.flatten_util.ravel_pytree(start[0])[1]

    def logdensity(z):
        return nuts.log_density_u(unravel(z * units), model, x, priors)

    def reference(key):
        k_init, k_warm, k_draw = jax.random.split(key, 3)
        init = nuts.INITS["seed"](k_init, jnp.asarray(x), model.k)
        u0 = model.to_unconstrained(model.params_from_init(init))
        adapt = blackjax.window_adaptation(
            blackjax.nuts,
            logdensity,
            is_mass_matrix_diagonal=not dense_mass,
            # the start's curvature (below)
            initial_inverse_mass_matrix=(jnp.diag if dense_mass else jnp.asarray)(
                start[3] / units**2
            ),
            target_acceptance_rate=0.9,
        )
        z0 = jax.flatten_util.ravel_pytree(u0)[0] / units
        (state, tuned), _ = adapt.run(k_warm, z0, num_steps=warmup)
        step = blackjax.nuts(logdensity, **tuned).step

        def draw(state, key):
            state, info = step(key, state)
            locs = model.from_unconstrained(unravel(state.position * units)).locs
            return state, (info.energy, locs)

        return jax.lax.scan(draw, state, jax.random.split(k_draw, draws))[1]

    # Compiled as cheaply as ours (work=0): XLA's full build of it took most of the test.
    key = jax.random.fold_in(jax.random.key(3), 1)
    energy, locs = jax.jit(reference, compiler_options=fast_compile())(key)
    np.testing.assert_allclose(ours[2], energy, rtol=1e-5)
    np.testing.assert_allclose(ours[0].locs, locs, rtol=1e-5)


@pytest.mark.parametrize("covariance", ["shared", "diag"])
def test_initial_inverse_mass_is_the_inverse_curvature_at_the_start(covariance):
    """The chains' initial metric: 1 / |d^2 log p / du_i^2| at the start, from forward
    differences of the (Fisher) gradient; here against autodiff's Hessian of the log joint
    summed over assignments (`enumerate.log_joint`), to the differences' error (1e-3)."""
    import jax
    import jax.flatten_util

    from bayesmix.enumerate import log_joint
    from bayesmix.infer import nuts
    from bayesmix.infer.problem import problem

    data = np.random.default_rng(0).normal(size=(60, 2)) + np.repeat([[0, 0], [4, 1]], 30, 0)
    x, model, priors, _ = problem(data, 2, covariance, "normal", None, bm.Priors.from_data(data))
    u, value, _, inverse = jax.jit(
        lambda x: nuts._start(x, priors, np.array([0, 0]), None, model=model, init="seed")
    )(x)
    flat, unravel = jax.flatten_util.ravel_pytree(u)

    def exact(f):
        v = unravel(f)
        return log_joint(model.from_unconstrained(v), x, priors) + (model.log_abs_det_jacobian(v))

    np.testing.assert_allclose(value, exact(flat), rtol=1e-10)
    curvature = np.abs(np.diagonal(jax.jit(jax.hessian(exact))(flat)))
    np.testing.assert_allclose(1 / np.asarray(inverse), curvature, rtol=1e-3)


def test_many_parameters_start_from_the_unit_metric(monkeypatch):
    """Above CURVATURE_MAX_P parameters the P + 1 gradient passes are skipped: the unit
    metric in the chains' units (the locs' units squared in the unconstrained space), the same
    start, value and gradient (traced afresh: the cached program has the constant built in)."""
    import jax

    from bayesmix.infer import nuts, units
    from bayesmix.infer.problem import problem

    data = np.random.default_rng(1).normal(size=(40, 2)) + np.repeat([[0, 0], [4, 1]], 20, 0)
    x, model, priors, _ = problem(data, 2, "diag", "normal", None, bm.Priors.from_data(data))

    def start():  # a new function each time: traced afresh
        return jax.jit(lambda *a: nuts._start(*a, model=model, init="seed"))(
            x, priors, np.array([0, 0]), None
        )

    curved = start()
    monkeypatch.setattr(units, "CURVATURE_MAX_P", 5)  # this model has 1 + 4 + 4 = 9
    unit = start()
    np.testing.assert_array_equal(unit[3], units.unit_scales(unit[0], x) ** 2)
    assert not np.allclose(curved[3], 1)
    for a, b in zip(jax.tree.leaves(unit[:3]), jax.tree.leaves(curved[:3]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10)


@pytest.mark.parametrize("covariance", ["shared", "spherical", "diag", "full", "tied"])
@pytest.mark.parametrize("family", ["normal", "student-t"])
def test_chain_program_is_compiled_for_the_starts_it_gets(covariance, family):
    """The chains' program is compiled before the starts exist, for `_start_like`'s shapes and
    dtypes (made without NumPyro, which a warm run never imports): they must be `_start`'s,
    or each call would compile the program again."""
    import jax

    from bayesmix.infer import nuts
    from bayesmix.model import Mixture

    model, d = Mixture(3, covariance, family), 3
    x = np.random.default_rng(0).normal(size=(40, d))
    priors = bm.Priors.from_data(x)
    real = jax.eval_shape(
        lambda x: nuts._start(x, priors, np.array([0, 0]), None, model=model, init="seed"),
        x,
    )
    assert jax.tree.structure(nuts._start_like(None, model, d)) == jax.tree.structure(real)
    for a, b in zip(jax.tree.leaves(nuts._start_like(None, model, d)), jax.tree.leaves(real),
                    strict=True):  # fmt: skip
        assert (a.shape, a.dtype) == (b.shape, b.dtype)


def test_the_chains_do_not_depend_on_the_data_units():
    """The chains sample the locs in units of the data's sd: data of sd 1e-6 mix as data of sd
    1 do (before: Stan's warm-up pulled the locs' metric toward 1e-3 in the data's units,
    1e10 x their variance, and every draw ran to tree depth 10 without moving)."""
    rng = np.random.default_rng(0)
    base = np.concatenate([rng.normal(-3, 1, 60), rng.normal(3, 1, 40)])
    steps, spread = {}, {}
    for unit in (1e-6, 1.0):
        x = unit * base
        post = bm.sample_nuts(x, 2, priors=bm.Priors.from_data(x), chains=2, warmup=150,
                              draws=100, seed=1)  # fmt: skip
        steps[unit] = post.sampler["num_steps"].mean()
        spread[unit] = bm.relabel(post, x).params.weights[..., 0].std(axis=1).min()
    # The same chains up to rounding (the priors from the data scale with it): ~6.5 leapfrogs
    # per draw at both units (before: 700 at 1e-6; with warm-up bounds in the data's units, 12).
    assert steps[1e-6] == pytest.approx(steps[1.0], rel=0.05) and steps[1.0] < 20
    assert spread[1e-6] == pytest.approx(spread[1.0], rel=0.2) and spread[1.0] > 0.02


def test_row_counts_of_one_bucket_share_the_chains_program_and_padding_changes_nothing():
    """Small data is padded to a bucket of rows (`pad_rows`): 301 rows run the programs of 300
    (each row count compiled its own: 3.3 s at 1,000 rows), and on the padded array the log
    density, its gradient (Fisher's identity) and the chains' units are those of the rows."""
    import jax
    import jax.numpy as jnp

    from bayesmix.infer import nuts
    from bayesmix.infer.estep import pad_rows

    rng = np.random.default_rng(2)
    x = rng.normal(size=(301, 2)) + 5 * (rng.random((301, 1)) < 0.5)
    kw = dict(chains=2, warmup=20, draws=10, priors="auto")
    bm.sample_nuts(x[:300], 2, **kw)
    programs = [len(p._loaded) for p in (nuts._chain_start, nuts._nuts_chain)]
    bm.sample_nuts(x, 2, **kw)
    assert [len(p._loaded) for p in (nuts._chain_start, nuts._nuts_chain)] == programs

    padded, n_valid = pad_rows(x)
    assert len(padded) == 320 and n_valid == len(x)
    model, priors = bm.Mixture(2), bm.Priors.from_data(x)
    u = model.to_unconstrained(bm.fit_em(x, 2, n_init=2).params)
    u = jax.tree.map(jnp.asarray, u)

    def value_and_grad(data, n=None):
        return jax.value_and_grad(nuts.log_density_u)(u, model, data, priors, n)

    (v0, g0), (v1, g1) = value_and_grad(jnp.asarray(x)), value_and_grad(padded, len(x))
    np.testing.assert_allclose(v1, v0, rtol=1e-12)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(unit_scales(u, padded, len(x)), unit_scales(u, x), rtol=1e-12)


def test_ctrl_c_stops_the_chains_and_returns_the_draws_so_far(monkeypatch):
    """A chain runs in pieces; Ctrl-C (here raised in the main thread while the chains run)
    stops them after their current piece and returns the draws made so far, which are the
    first draws of the uninterrupted run (same keys, same steps), with a FitInterrupted
    warning. Ctrl-C during the warm-up, before any draw, is raised as it is."""
    import _thread
    import signal
    import time

    from bayesmix.infer import nuts

    kw = dict(chains=1, warmup=40, draws=60, seed=2)
    loaded = set(nuts._nuts_chain._loaded)
    whole = bm.sample_nuts(bm.SEED_DATA, 2, **kw)
    monkeypatch.setattr(nuts, "FIRST_STEPS", 10)
    monkeypatch.setattr(nuts, "SEGMENT_S", 0.0)  # then pieces of one step
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # (ignored in CI jobs)
    program = nuts._nuts_chain

    class interrupting:  # noqa: N801 (stands for the program)
        lower = program.lower

        def __init__(self, at):
            self.at = at

        def __call__(self, *args, **kwargs):
            if int(args[4]) == self.at:  # this piece's first step: a slow piece
                _thread.interrupt_main()
                time.sleep(0.5)
            return program(*args, **kwargs)

    try:
        monkeypatch.setattr(nuts, "_nuts_chain", interrupting(70))
        with pytest.warns(bm.FitInterrupted, match="first 31 draws of the 1 chain"):
            part = bm.sample_nuts(bm.SEED_DATA, 2, **kw)
        monkeypatch.setattr(nuts, "_nuts_chain", interrupting(20))
        with pytest.raises(KeyboardInterrupt):
            bm.sample_nuts(bm.SEED_DATA, 2, **kw)
    finally:
        signal.signal(signal.SIGINT, previous)
    # Every piece ran the program compiled for the chain (typed as the pieces' carries).
    assert len(set(program._loaded) - loaded) <= 1
    n = part.params.locs.shape[1]
    np.testing.assert_array_equal(part.params.locs, whole.params.locs[:, :n])
    np.testing.assert_array_equal(part.sampler["energy"], whole.sampler["energy"][:, :n])


def test_a_dense_chain_in_pieces_draws_what_it_draws_whole(monkeypatch):
    """The dense metric (inverse mass matrix and momentum factor, set at the slow windows' ends)
    crosses the pieces' boundaries in the chain's state: one-step pieces draw what one run
    draws."""
    from bayesmix.infer import nuts

    kw = dict(chains=1, warmup=40, draws=20, seed=2, dense_mass=True)
    whole = bm.sample_nuts(bm.SEED_DATA, 2, **kw)  # one piece (FIRST_STEPS >= 60)
    monkeypatch.setattr(nuts, "FIRST_STEPS", 1)
    monkeypatch.setattr(nuts, "SEGMENT_S", 0.0)
    pieces = bm.sample_nuts(bm.SEED_DATA, 2, **kw)
    np.testing.assert_array_equal(pieces.params.locs, whole.params.locs)
    np.testing.assert_array_equal(pieces.sampler["energy"], whole.sampler["energy"])


def test_progress_bar_counts_the_steps_of_every_chain(capsys):
    bm.sample_nuts(bm.SEED_DATA, 2, chains=2, warmup=20, draws=30, progress=True)
    err = capsys.readouterr().err
    assert "NUTS" in err and "/100 " in err


def test_off_a_terminal_progress_is_a_line_a_minute_not_a_bar(capsys, monkeypatch):
    # `bayesmix fit` on 200,000 rows ran NUTS for > 14 minutes with nothing in its log (the
    # bar is for terminals; progress=True wrote tqdm's carriage returns into files).
    from bayesmix import _threads

    def run(progress, work):
        bar = _threads.progress_bar(progress, work, total=8000, unit="step", desc="NUTS")
        bar.update(3200)
        bar.set_postfix(rows_per_s="2.1e+06")
        bar.close()
        err = capsys.readouterr().err
        assert "\r" not in err
        return err.splitlines()

    assert run(None, 10**8) == []  # under a minute: silent
    (line,) = run(True, 10)  # asked for: a last line even so
    assert line.startswith("NUTS: 3,200/8,000 steps (40%), ") and " left" in line
    assert line.endswith(", rows_per_s 2.1e+06")
    monkeypatch.setattr(_threads, "LOG_EVERY_S", 0.0)  # a line at every update
    during, end = run(None, 10**8)
    assert during.startswith("NUTS: 3,200/8,000 steps (40%), ") and " left" in during
    assert end.endswith(", rows_per_s 2.1e+06")
    assert run(False, 10**8) == [] and run(None, 10) == []
