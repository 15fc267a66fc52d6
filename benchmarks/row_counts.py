"""Fits of data sets whose row counts differ a little (per-group fits, bootstraps, a service
fitting each request's rows): the seconds of each fit and of compiling, in one process with a
fresh compilation cache, against scikit-learn's GaussianMixture on the same rows.

Small data (N x D <= `estep.PAD_VALUES`) is padded to a bucket of rows (eight per doubling),
so every N of a bucket runs the programs compiled for the first; `--no-pad` turns that off to
show what each N cost before.

    .venv/bin/python benchmarks/row_counts.py --n 1000,1001,1100,1500
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("BAYESMIX_CACHE_DIR", tempfile.mkdtemp(prefix="bayesmix-rows-"))

import jax  # noqa: E402
import jax.monitoring  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", True)

import bayesmix as bm  # noqa: E402
from bayesmix.infer import estep  # noqa: E402

COMPILE = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **_: (
        COMPILE.append(seconds) if event.endswith("backend_compile_duration") else None
    )
)


def data(n: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, 2))
    x[: n // 3] += 5
    x[n // 3 : 2 * n // 3, 1] -= 5
    return x


FITS = {
    "fit_em": lambda x: bm.fit_em(x, 3, priors="auto"),
    "fit_map": lambda x: bm.fit_map(x, 3, priors="auto"),
    "sample_nuts": lambda x: bm.sample_nuts(x, 3, priors="auto", warmup=300, draws=300),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="1000,1001,1100,1500")
    parser.add_argument("--fits", default=",".join(FITS))
    parser.add_argument("--no-pad", action="store_true")
    args = parser.parse_args()
    if args.no_pad:
        estep.PAD_VALUES = 0
    from sklearn.mixture import GaussianMixture

    for name in args.fits.split(","):
        for n in [int(v) for v in args.n.split(",")]:
            x = data(n)
            COMPILE.clear()
            t = time.perf_counter()
            FITS[name](x)
            seconds = time.perf_counter() - t
            t = time.perf_counter()
            GaussianMixture(3, n_init=10, random_state=0).fit(x)
            sk = time.perf_counter() - t
            print(
                f"{name:12s} N = {n:6d}: {seconds:6.2f} s, of which compiling {sum(COMPILE):5.2f}"
                f" s ({len(COMPILE)} programs); scikit-learn (n_init=10) {sk:5.2f} s"
            )


if __name__ == "__main__":
    main()
