"""The GPU E-step kernel against XLA's E-step (`estep.stats` in float64): run by the Pallas
interpreter on a CPU, compiled on a GPU."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesmix.infer import estep_kernel
from bayesmix.infer.em import fit_em
from bayesmix.infer.estep import stats
from bayesmix.model import Params

INTERPRET = jax.default_backend() != "gpu"


def _kernel(*args, **kwargs):
    return estep_kernel.diag_stats(*args, interpret=INTERPRET, **kwargs)


def _problem(n, k, d, scale_shape, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(n, d)) * 3 + 100, jnp.float32)  # far from zero
    locs = jnp.asarray(100 + 3 * rng.normal(size=(k, d)))
    scale = jnp.asarray(rng.uniform(0.5, 3, scale_shape(k, d)))
    params = Params(jnp.asarray(rng.dirichlet(np.ones(k))), locs, scale)
    return x, params, jnp.asarray(100 + rng.normal(size=d))


SCALES = {"diag": lambda k, d: (k, d), "spherical": lambda k, d: (k,), "shared": lambda k, d: ()}


@pytest.mark.parametrize("scale", sorted(SCALES))
@pytest.mark.parametrize(("k", "d"), [(1, 1), (3, 5), (16, 2)])
@pytest.mark.parametrize(("first", "n_valid"), [(0, 1000), (137, 911)])
def test_kernel_statistics_are_the_e_steps(scale, k, d, first, n_valid):
    # 1000 rows: not a multiple of the 256-row programs, so the last one runs past the array.
    x, params, c = _problem(1000, k, d, SCALES[scale])
    ref = stats(params, x.astype(jnp.float64), n_valid, c, first, moment="diag", block=128)
    got = _kernel(params, x, n_valid, c, first, rows=256)
    assert float(got.rows) == n_valid - first
    for field in ("loglik", "n", "w", "s", "q", "t"):
        a, b = np.asarray(getattr(ref, field)), np.asarray(getattr(got, field))
        assert b.shape == a.shape, field
        # float32 rows summed over <= 256 rows, then in float64: ~1e-7 relative per block.
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-5 * np.max(np.abs(a)), err_msg=field)


def test_kernel_maps_over_parameters():
    # EM's initialization scores its starts under vmap.
    x, params, c = _problem(600, 4, 3, SCALES["diag"])
    many = jax.tree.map(lambda v: jnp.stack([v, v * 1.01]), params)
    got = jax.vmap(lambda p: _kernel(p, x, 600, c, rows=256))(many)
    for i in range(2):
        one = jax.tree.map(lambda v, i=i: v[i], many)
        ref = stats(one, x.astype(jnp.float64), 600, c, moment="diag", block=128)
        np.testing.assert_allclose(got.q[i], ref.q, rtol=2e-5)
        np.testing.assert_allclose(got.loglik[i], ref.loglik, rtol=1e-6)


def test_kernel_covers_float32_normal_diagonal_e_steps_on_a_gpu_only():
    x, params, _ = _problem(10, 2, 2, SCALES["diag"])
    on_gpu = jax.default_backend() == "gpu" and estep_kernel._triton_backend()
    assert estep_kernel.covers(params, x, "diag") == on_gpu
    assert not estep_kernel.covers(params._replace(locs=jnp.zeros((33, 2))), x, "diag")
    assert not estep_kernel.covers(params, x, "full")
    assert not estep_kernel.covers(params, x.astype(jnp.float64), "diag")
    assert not estep_kernel.covers(params._replace(df=jnp.asarray(4.0)), x, "diag")


@pytest.fixture
def kernel_everywhere(monkeypatch):
    """`estep.stats` takes the kernel (interpreted on a CPU) wherever it covers but the device;
    the programs traced with it are dropped afterwards."""

    def covers(params, x, moment):
        return estep_kernel.KERNEL and (
            moment == "diag"
            and params.df is None
            and params.corr_chol is None
            and x.dtype == jnp.float32
        )

    monkeypatch.setattr(estep_kernel, "covers", covers)
    monkeypatch.setattr(estep_kernel, "diag_stats", partial(estep_kernel.diag_stats,
                                                             interpret=INTERPRET))  # fmt: skip
    monkeypatch.setattr("bayesmix._jit._EXPORT_DIR", None)
    jax.clear_caches()
    yield
    jax.clear_caches()


def _two_clusters(n=1500, seed=3):
    rng = np.random.default_rng(seed)
    z = rng.random(n) < 0.3
    x = np.where(z[:, None], rng.normal(5, 1, (n, 2)), rng.normal([0, 1], [1, 2], (n, 2)))
    return x.astype(np.float32)


def test_em_with_the_kernel_is_em_without(kernel_everywhere):
    x = _two_clusters()
    with_kernel = fit_em(x, 2, covariance="diag", n_init=3, seed=0, dtype="float32")
    estep_kernel.KERNEL = False
    jax.clear_caches()
    try:
        without = fit_em(x, 2, covariance="diag", n_init=3, seed=0, dtype="float32")
    finally:
        estep_kernel.KERNEL = True
    order = np.argsort(np.asarray(with_kernel.params.locs)[:, 0])
    order_ref = np.argsort(np.asarray(without.params.locs)[:, 0])
    for a, b in zip(with_kernel.params[:3], without.params[:3], strict=True):
        np.testing.assert_allclose(np.asarray(a)[order], np.asarray(b)[order_ref], rtol=1e-4)
    np.testing.assert_allclose(with_kernel.losses[-1], without.losses[-1], rtol=1e-6)
