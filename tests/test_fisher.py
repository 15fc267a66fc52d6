"""The log joint's gradient by Fisher's identity equals autodiff's (value and gradient)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesmix.enumerate import log_joint
from bayesmix.infer import fisher
from bayesmix.model import Init, Mixture, Priors


@pytest.mark.parametrize(
    ("covariance", "family", "d"),
    [
        ("shared", "normal", 1),
        ("diag", "student-t", 3),
        ("full", "normal", 2),
        ("tied", "student-t", 2),
    ],
)
def test_value_and_gradient_equal_autodiff(covariance, family, d):
    rng = np.random.default_rng(0)
    x = jnp.asarray(np.concatenate([rng.normal(m, 1.0, (60, d)) for m in (-3, 0, 4)]))
    model = Mixture(3, covariance, family)
    start = model.params_from_init(Init(jnp.array([0.2, 0.3, 0.5]), x[::60] + 0.3, jnp.ones(d)))
    u = jax.tree.map(lambda v: v + 0.1, model.to_unconstrained(start))  # off the init's symmetry
    priors = Priors.from_data(np.asarray(x))

    def by(f):
        return jax.jit(jax.value_and_grad(lambda v: f(model.from_unconstrained(v))))(u)

    value, grad = by(lambda p: fisher.log_joint(model, p, x, priors))
    ref_value, ref_grad = by(lambda p: log_joint(p, x, priors))
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(ref_grad), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)
