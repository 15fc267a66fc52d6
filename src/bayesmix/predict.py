"""Serving a fitted mixture as a classifier (the tutorial's `infer_discrete`).

Each function takes a MAP fit (`fit_em`, `fit_map`), a model read by `bm.load` or a fitted
`BayesianMixture` (`bayesmix.result.as_fit`).
Batches are padded to the next power of two (`batch_rows`; above `POW2_ROWS` rows, to one of
eight sizes per doubling), so any number of rows reuses a handful of compiled programs instead
of compiling once per batch size.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ._jit import sized_jit
from .data import model_data
from .enumerate import assign_from_logits, log_weighted, row_number
from .errors import SpecError
from .infer.problem import check_seed
from .result import MAPResult, as_fit

__all__ = ["batch_rows", "classify", "log_density", "predict", "predict_proba"]

#: Batches of up to this many rows are padded to a power of two; larger ones to a multiple of
#: an eighth of their power of two (a power of two padded 1e7 rows to 1.68e7: 68% more work
#: and memory, against at most 12.5%).
POW2_ROWS = 1 << 20


def membership(params, x, seed, temperature, first_row):
    """(labels (N,) int32, membership probabilities (N, K), log p(x_n) (N,)) of rows x (N, D),
    the labels at `temperature` (`assign_from_logits`; seed: uint32, first_row: the number of
    x's first row in its table, `row_number`'s pair)."""
    key = jax.random.key(seed)  # made here, not on the host: a third of a 1-row call's cost
    lw = log_weighted(params, x)
    top = jnp.max(lw, axis=-1, keepdims=True)
    p = jnp.exp(lw - top)
    total = jnp.sum(p, axis=-1, keepdims=True)
    # Divided by their sum, the probabilities sum to one even where log p(x_n) is so large
    # (a row ~1e100 away) that exp(lw - logsumexp(lw)) gave 1 for every component.
    labels = assign_from_logits(key, lw, temperature, first_row)  # normalized there
    return labels, p / total, (top + jnp.log(total))[:, 0]


# A classifier is compiled once and called many times: the optimized build pays off from
# ~1,000 rows (measured: 10,000 rows 8.5 -> 2.8 ms per call).
_classify = partial(sized_jit, small_work=4096)(membership)


def check_draw(temperature: object, seed: object) -> tuple[float, np.uint32]:
    """(temperature, seed) checked: a finite number >= 0 and a whole number in [0, 2**32)."""
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise SpecError(f"temperature must be a number >= 0, got {temperature!r}") from None
    if not t >= 0 or not np.isfinite(t):
        raise SpecError(f"temperature must be a finite number >= 0, got {temperature!r}")
    return t, np.uint32(check_seed(seed))


def batch_rows(n: int) -> int:
    """The rows a batch of n rows is padded to: the next power of two (at least 8) up to
    `POW2_ROWS`, then the next multiple of 1/8 of the power of two below."""
    if n <= POW2_ROWS:
        return max(8, 1 << (n - 1).bit_length())
    step = 1 << ((n - 1).bit_length() - 4)
    return -(-n // step) * step


def classify(
    fit: MAPResult, data: object, temperature: object = 0.0, seed: object = 0, first_row: int = 0
):
    """(labels (N,), membership probabilities (N, K), log densities (N,)) of the rows of `data`,
    in one pass: what `predict`, `predict_proba` and `log_density` each return one of;
    `first_row`: the number of its first row in a larger table (the temperature-1 draws depend
    on it)."""
    fit = as_fit(fit)
    temperature, seed = check_draw(temperature, seed)
    x = model_data(data, fit.columns, fit.params.locs.shape[-1])
    n = x.shape[0]
    padded = batch_rows(n)
    xp = x if padded == n else np.concatenate([x, np.repeat(x[:1], padded - n, axis=0)])
    params = jax.tree.map(np.asarray, fit.params)
    args = (params, xp, seed, temperature, row_number(first_row))
    out = _classify(*args, work=padded * fit.k)
    return tuple(np.asarray(v)[:n] for v in jax.device_get(out))


def predict(fit: MAPResult, data: object, *, temperature: float = 0.0, seed: int = 0) -> np.ndarray:
    """Component of each row of `data` (N, D) -> (N,) int.

    temperature 0: the MAP component (argmax of the responsibilities); temperature 1: a draw
    from p(z_n | x_n, globals), reproducible for a given `seed` (row n's draw depends on the
    seed, n and the row alone, not on the other rows); other temperatures > 0 sharpen (< 1) or
    flatten (> 1) that distribution.
    """
    return classify(fit, data, temperature, seed)[0]


def predict_proba(fit: MAPResult, data: object) -> np.ndarray:
    """Membership probabilities p(z_n = k | x_n, globals) (N, K); rows sum to one."""
    return classify(fit, data)[1]


def log_density(fit: MAPResult, data: object) -> np.ndarray:
    """log p(x_n | globals) = log sum_k w_k p(x_n | k) of each row (N,)."""
    return classify(fit, data)[2]
