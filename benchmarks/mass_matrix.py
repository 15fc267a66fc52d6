"""Collapsed NUTS with a diagonal against a dense mass matrix (`sample_nuts(dense_mass=...)`):
seconds of a warm run (4 chains x (1000 + 1000), after a first run with another seed that
compiles), mean leapfrog steps per draw, the smallest bulk/tail ESS over the summary's
quantities, ESS per second and R-hat, on data where the globals are and are not correlated.

    .venv/bin/python benchmarks/mass_matrix.py [--problems iris_full,ovl2d_20k] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.datasets import load_iris

import bayesmix as bm


def blobs(rng, n: int, locs, sd) -> np.ndarray:
    locs = np.asarray(locs, float)
    return locs[rng.integers(0, len(locs), n)] + rng.normal(size=(n, locs.shape[1])) * sd


def problems() -> dict:
    """name -> (x, K, covariance), each drawn from its own seed."""
    iris = load_iris().data
    g = np.random.default_rng
    return {
        "iris_shared": (iris, 3, "shared"),
        "iris_diag": (iris, 3, "diag"),
        "iris_full": (iris, 3, "full"),
        # three clusters overlapping along the second column (sd 2 against a distance of 4)
        "ovl2d_20k": (blobs(g(1), 20_000, [[0, 0], [4, 0], [0, 4]], [1, 2]), 3, "diag"),
        "sep2d_10k": (blobs(g(2), 10_000, [[0, 0], [8, 0], [0, 8]], 1), 3, "diag"),
        # K above the data's three clusters: an extra component the data hardly determine
        "overfit2d_2k": (blobs(g(1), 2_000, [[0, 0], [5, 0], [0, 5]], 1), 4, "diag"),
        "ovl1d_1k": (blobs(g(1), 1_000, [[0], [2], [5]], 1), 3, "diag"),
        "k8d4_3k": (blobs(g(3), 3_000, g(4).normal(size=(8, 4)) * 4, 1), 8, "full"),
        "k4d5_2k": (blobs(g(5), 2_000, g(6).normal(size=(4, 5)) * 3, 1), 4, "full"),
    }


def run(x, k, covariance, dense, seed) -> dict:
    opts = dict(covariance=covariance, priors="auto", dense_mass=dense, progress=False)
    bm.sample_nuts(x, k, **opts, seed=seed + 100)  # compiles
    t = time.perf_counter()
    post = bm.sample_nuts(x, k, **opts, seed=seed)
    seconds = time.perf_counter() - t
    table = post.diagnostics["summary"].values()
    ess = min(min(v["ess_bulk"], v["ess_tail"]) for v in table)
    return dict(
        seconds=seconds,
        steps=float(np.mean(post.sampler["num_steps"])),
        ess=ess,
        rhat=max(v["r_hat"] for v in table),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    every = problems()
    ap.add_argument("--problems", default=",".join(every))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("| problem | K | covariance | mass | run (s) | steps / draw | min ESS | ESS/s | R-hat |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.problems.split(","):
        x, k, covariance = every[name]
        for dense in (False, True):
            r = run(x, k, covariance, dense, args.seed)
            print(
                f"| {name} ({len(x)} x {x.shape[1]}) | {k} | {covariance} | "
                f"{'dense' if dense else 'diagonal'} | {r['seconds']:.2f} | {r['steps']:.1f} | "
                f"{r['ess']:.0f} | {r['ess'] / r['seconds']:.1f} | {r['rhat']:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
