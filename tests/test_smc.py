"""Tempered SMC on the seed data against the exact posterior (tests/exact_posterior.py).

SMC's draws are correlated through resampling, so the Monte Carlo error comes from independent
runs: with R runs, the standard error of the pooled estimate is sd(run means) / sqrt(R), and
we allow 4 of them. The functional E[locs[0]] is symmetric in the labels (exact value 5.52,
half-way between the clusters): the raw particles match it only if they visit both
labellings in the right proportion, which single NUTS chains do not.
"""

from __future__ import annotations

import numpy as np
import pytest

import bayesmix as bm
from bayesmix.infer.smc import sample_smc
from bayesmix.relabel import draw_log_responsibilities
from exact_posterior import exact_functionals

X = bm.SEED_DATA[:, 0]
RUNS = 8


@pytest.fixture(scope="module")
def exact():
    return exact_functionals(X)


@pytest.fixture(scope="module")
def post():
    return sample_smc(bm.SEED_DATA, 2, particles=1000, runs=RUNS, seed=0)


def _close(draws: np.ndarray, exact_mean: float) -> None:
    """draws: (runs, particles)."""
    run_means = draws.reshape(RUNS, -1).mean(axis=1)
    se = run_means.std(ddof=1) / np.sqrt(RUNS)
    assert abs(run_means.mean() - exact_mean) < 4 * se, (run_means, exact_mean, se)


@pytest.mark.slow
def test_shapes_and_sampler_record(post):
    assert post.params.locs.shape == (RUNS, 1000, 2, 1)
    assert post.params.scale.shape == (RUNS, 1000)
    s = post.sampler
    assert s["log_evidence"].shape == (RUNS,) and np.all(s["tempering_steps"] >= 2)
    steps = s["tempering_steps"][0]
    temps = s["temperatures"][0]
    assert np.all(np.diff(temps[:steps]) > 0) and temps[steps - 1] == 1.0
    assert np.all(np.isnan(temps[steps:]))
    d = post.diagnostics
    assert d["chains"] == RUNS and d["relabeling"]["method"] == "stephens"
    assert len(d["log_evidence"]) == RUNS


@pytest.mark.slow
def test_functionals_match_the_exact_posterior(post, exact):
    p = post.sorted_by_loc()
    _close(p.scale, exact["scale_mean"])
    _close(p.locs[..., 0, 0], exact["loc_min_mean"])
    _close(p.locs[..., 1, 0], exact["loc_max_mean"])
    _close(p.weights[..., 1], exact["weight_upper_mean"])
    _close((p.scale < exact["scale_median"]).astype(float), 0.5)


@pytest.mark.slow
def test_symmetric_functional_needs_both_modes(post, exact):
    # Raw labels, no relabeling or symmetrization: the particles hold both labellings.
    first = post.params.locs[..., 0, 0]
    assert 0.3 < np.mean(first < 5.75) < 0.7
    _close(first, exact["loc_mean_first"])


@pytest.mark.slow
def test_coclustering_matches_the_exact_posterior(post, exact):
    flat = bm.Params(*(None if v is None else v.reshape((-1,) + v.shape[2:]) for v in post.params))
    r = np.exp(draw_log_responsibilities(flat, bm.SEED_DATA))  # (draws, N, K)
    co = np.einsum("sik,sjk->sij", r, r).reshape(RUNS, -1, 5, 5)
    for i, j in [(0, 1), (0, 4), (2, 3), (1, 2)]:
        _close(co[..., i, j], exact["coclustering"][i, j])


@pytest.mark.slow
def test_evidence_matches_the_exact_marginal_likelihood(post, exact):
    # Z-hat is unbiased for p(x) (log Z-hat is not): compare Z-hat / p(x) with 1.
    ratio = np.exp(post.sampler["log_evidence"] - exact["log_marginal_likelihood"])
    se = ratio.std(ddof=1) / np.sqrt(RUNS)
    assert abs(ratio.mean() - 1.0) < 4 * se, (ratio, se)
    assert se < 0.1  # the check has power


def test_bad_settings_are_rejected():
    for kwargs, match in [
        ({"particles": 0}, "particles must be a whole number >= 2"),
        ({"runs": 0}, "runs must be"),
        ({"mcmc_steps": 1.5}, "mcmc_steps must be"),
        ({"target_ess": 1.0}, "target_ess must be between 0 and 1"),
    ]:
        with pytest.raises(bm.SpecError, match=match):
            sample_smc(bm.SEED_DATA, 2, **kwargs)
    big = np.random.default_rng(0).standard_normal((100_000, 1))
    with pytest.raises(bm.SpecError, match="GiB; use fewer particles"):
        sample_smc(big, 10, particles=100_000)


def test_ctrl_c_stops_the_runs_within_a_piece(monkeypatch, capsys, post):
    """Runs go on in pieces of tempering steps; Ctrl-C (raised here in the main thread while
    the runs compute) stops them after their current piece and is raised (a run stopped
    before beta = 1 has no posterior draws); pieces give the draws of a whole run, with a
    progress bar."""
    import _thread
    import signal
    import time

    from bayesmix.infer import smc

    kw, whole = dict(particles=1000, runs=RUNS, seed=0), post
    monkeypatch.setattr(smc, "SEGMENT_S", 0.0)  # pieces of one tempering step
    program, calls = smc._smc_piece, []

    class interrupting:  # noqa: N801 (stands for the program)
        lower = program.lower

        def __call__(self, *args, **kwargs):
            calls.append(1)
            if len(calls) == 3:  # a slow piece
                _thread.interrupt_main()
                time.sleep(0.5)
            return program(*args, **kwargs)

    pieces = sample_smc(bm.SEED_DATA, 2, **kw, progress=True)
    assert "SMC (beta)" in capsys.readouterr().err  # the progress bar
    np.testing.assert_array_equal(pieces.params.locs, whole.params.locs)
    np.testing.assert_array_equal(pieces.sampler["log_evidence"], whole.sampler["log_evidence"])
    monkeypatch.setattr(smc, "_smc_piece", interrupting())
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # (ignored in CI jobs)
    try:
        with pytest.raises(KeyboardInterrupt):
            sample_smc(bm.SEED_DATA, 2, **kw)
    finally:
        signal.signal(signal.SIGINT, previous)
    steps = int(whole.sampler["tempering_steps"].sum())
    # The runs stopped within ~0.1 s (a piece of the other run is ~10 ms), not after all steps.
    assert len(calls) < steps / 2, (len(calls), steps)
