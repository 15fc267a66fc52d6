"""The classifier: MAP membership (temperature 0) and posterior draws (temperature 1)."""

from __future__ import annotations

import importlib

import jax.numpy as jnp
import numpy as np
import pytest

import bayesmix as bm


def _exact_probs(fit, x):
    """Responsibilities by hand: w_k N(x; loc_k, scale) normalised over k."""
    p = fit.params
    dens = p.weights * np.exp(-0.5 * ((x[:, None] - p.locs[:, 0]) / p.scale) ** 2)
    return dens / dens.sum(1, keepdims=True)


def test_classifies_the_seed_points(seed_fit, pyro_ref):
    labels = bm.predict(seed_fit, bm.SEED_DATA)
    assert labels[0] == labels[1] != labels[2] == labels[3] == labels[4]
    # The same partition as Pyro's classifier (labels may be permuted).
    ref = np.asarray(pyro_ref["map_assignment_data"])
    assert np.array_equal(labels, ref) or np.array_equal(labels, 1 - ref)


def test_map_boundary_on_the_tutorial_grid(seed_fit, pyro_ref):
    grid = np.arange(-3, 15, 0.1)
    labels = bm.predict(seed_fit, grid)
    change = np.nonzero(np.diff(labels))[0]
    assert len(change) == 1
    assert 5.7 - 1e-9 <= grid[change[0]] and grid[change[0] + 1] <= 5.8 + 1e-9
    ref = np.asarray(pyro_ref["map_assignment_grid"]["z"])
    assert np.array_equal(labels, ref) or np.array_equal(labels, 1 - ref)


def test_temperature_one_frequencies_match_exact_responsibilities(seed_fit):
    zoom = np.arange(5.5, 6.0, 0.005)
    reps = 400
    draws = bm.predict(seed_fit, np.repeat(zoom, reps), temperature=1, seed=0).reshape(-1, reps)
    freq = draws.mean(1)  # frequency of component 1
    p1 = _exact_probs(seed_fit, zoom)[:, 1]
    se = np.sqrt(p1 * (1 - p1) / reps)
    # Each point within 4.5 binomial standard errors (100 points: a false alarm has p < 1e-3).
    np.testing.assert_array_less(np.abs(freq - p1), 4.5 * se + 1e-9)
    # And all together: the chi-square statistic is compatible with its 100 degrees of freedom.
    assert np.sum(((freq - p1) / np.maximum(se, 1e-9)) ** 2) < 150


def test_probabilities_sum_to_one_for_rows_far_away(seed_fit):
    """At 1e100 the components' log densities (~ -1e200) differ by less than their rounding:
    both probabilities were 1."""
    far = [1e6, -1e6, 1e100, -1e140]
    probs = bm.predict_proba(seed_fit, far)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-15)
    assert np.isfinite(bm.log_density(seed_fit, far)).all()
    # The responsibilities that the local guide, relabeling and posterior membership use.
    from bayesmix.enumerate import log_responsibilities

    lr = log_responsibilities(seed_fit.params, jnp.asarray(far)[:, None])
    np.testing.assert_allclose(np.exp(lr).sum(1), 1.0, rtol=1e-15)


def test_draws_are_reproducible_for_a_seed(seed_fit):
    x = np.linspace(5.5, 6.0, 50)
    a = bm.predict(seed_fit, x, temperature=1, seed=7)
    assert np.array_equal(a, bm.predict(seed_fit, x, temperature=1, seed=7))
    assert not np.array_equal(a, bm.predict(seed_fit, x, temperature=1, seed=8))
    # A row's draw does not depend on the rows after it (nor on the batch's padding).
    assert np.array_equal(a[:9], bm.predict(seed_fit, x[:9], temperature=1, seed=7))


def test_no_rows_ask_for_one(seed_fit):
    with pytest.raises(bm.DataError, match="empty; give at least one row of numbers"):
        bm.predict(seed_fit, [])


@pytest.mark.parametrize("n", [1, 7, 8, 9, 1000])
def test_any_batch_size(seed_fit, n):
    x = np.linspace(-3, 15, n)
    probs = bm.predict_proba(seed_fit, x)
    assert probs.shape == (n, 2)
    np.testing.assert_allclose(probs, _exact_probs(seed_fit, x), rtol=1e-9, atol=1e-300)
    np.testing.assert_array_equal(bm.predict(seed_fit, x), probs.argmax(1))


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        ([1.0], {"temperature": -1}, "temperature"),
        ([1.0], {"temperature": "hot"}, "temperature"),
        ([[1.0, 2.0]], {}, "columns"),
        ([np.nan], {}, "non-finite"),
        ([], {}, "empty"),
        ([1.0], {"seed": -1}, "seed must be a whole number from 0 to 2\\*\\*32 - 1"),
        ([1.0], {"seed": 2**32}, "seed"),
    ],
)
def test_bad_prediction_input(seed_fit, data, kwargs, message):
    with pytest.raises(bm.BayesmixError, match=message):
        bm.predict(seed_fit, data, **kwargs)


def test_a_fit_reads_data_frames_by_the_names_it_was_fitted_on(tmp_path):
    """A fit (or posterior) keeps the column names of the data frame (or files) it was fitted
    on: predict and the other functions of a fit read a data frame's columns by name (its
    columns reordered gave other labels, silently), arrays by position; save keeps the names;
    a missing name is refused by name."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    a = np.r_[rng.normal(0, 1, 50), rng.normal(5, 1, 50)]
    frame = pd.DataFrame({"a": a, "b": rng.normal(0, 0.5, 100)})
    fit = bm.fit_em(frame, 2)
    assert fit.columns == ("a", "b") and bm.fit_em(frame.to_numpy(), 2).columns is None
    assert bm.fit_map(frame, 2, n_init=2, steps=5).columns == ("a", "b")
    labels = bm.predict(fit, frame)
    np.testing.assert_array_equal(bm.predict(fit, frame[["b", "a"]]), labels)
    np.testing.assert_array_equal(bm.predict(fit, frame.to_numpy()), labels)
    assert not np.array_equal(bm.predict(fit, frame[["b", "a"]].to_numpy()), labels)
    np.testing.assert_array_equal(
        bm.log_density(fit, frame[["b", "a"]]), bm.log_density(fit, frame)
    )
    with pytest.raises(bm.DataError, match=r"no column\(s\) \['a'\] of \['a', 'b'\]; its"):
        bm.predict(fit, frame.rename(columns={"a": "A"}))
    assert bm.load(bm.save(tmp_path / "m.bmx", fit)).columns == ["a", "b"]
    post = bm.sample_nuts(frame, 2, chains=1, warmup=20, draws=10)  # and posteriors alike
    assert post.columns == ("a", "b") and bm.relabel(post, frame).columns == ("a", "b")
    np.testing.assert_array_equal(
        bm.membership(post, frame[["b", "a"]]).mean, bm.membership(post, frame).mean
    )


def test_large_batches_are_padded_by_at_most_an_eighth(seed_fit, monkeypatch):
    """Powers of two up to POW2_ROWS, then eight sizes per doubling: a power of two padded
    1e7 rows to 1.68e7. The padded batches give every row its exact probabilities."""
    pred = importlib.import_module("bayesmix.predict")  # the module (bm.predict is a function)

    assert [pred.batch_rows(n) for n in (1, 8, 9, 1000, 1 << 20)] == [8, 8, 16, 1024, 1 << 20]
    assert pred.batch_rows((1 << 20) + 1) == (1 << 20) + (1 << 17)
    assert pred.batch_rows(10_000_000) == 10 * (1 << 20)
    for n in range((1 << 20) + 1, 1 << 24, 99_991):
        assert n <= pred.batch_rows(n) < n * 1.125 and pred.batch_rows(n) % (1 << 17) == 0
    monkeypatch.setattr(pred, "POW2_ROWS", 16)
    assert pred.batch_rows(17) == 18 and pred.batch_rows(100) == 104
    x = np.linspace(-3, 15, 100)
    np.testing.assert_allclose(
        bm.predict_proba(seed_fit, x), _exact_probs(seed_fit, x), rtol=1e-9, atol=1e-300
    )
