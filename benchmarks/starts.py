"""Which optimum EM reaches: the starts scored as they are (`init_iters=0`, as `fit_map`
scores them) against scored after a short EM (`fit_em`'s default, emEM). Per data set and
seed: the final negative log joint per row (lower is better; the Student-t rows, with 2-5%
gross outliers, show the modes that k-means starts lead to) and the mean seconds per fit, warm.

    .venv/bin/python benchmarks/starts.py --seeds 4
"""

from __future__ import annotations

import argparse
import time
import warnings

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from sklearn.datasets import load_iris, load_wine  # noqa: E402

from bayesmix import FitWarning, Priors  # noqa: E402
from bayesmix.infer.em import fit_em  # noqa: E402


def blobs(k: int, d: int, n: int, sep: float, seed: int, outliers: float = 0.0) -> np.ndarray:
    """n rows around k centres ~ N(0, sep^2), unit noise; the first `outliers` share of the
    rows replaced by uniform ones over +-10 sep."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, sep, (k, d))
    x = centres[rng.integers(0, k, n)] + rng.normal(0, 1, (n, d))
    m = int(outliers * n)
    x[:m] = rng.uniform(-10 * sep, 10 * sep, (m, d))
    return x


def two_clusters_and_gross_outliers() -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal([-3, 0], 1, (200, 2)), rng.normal([3, 0], 1, (200, 2)),
                           rng.uniform(-60, 60, (21, 2))])  # fmt: skip


SETS = {
    "2 clusters + 5% outliers, t diag K=2": (
        two_clusters_and_gross_outliers(),
        2,
        "diag",
        "student-t",
    ),
    "4 x 3-D + 5% outliers, t diag K=4": (blobs(4, 3, 2000, 3, 5, 0.05), 4, "diag", "student-t"),
    "6 x 2-D + 2% outliers, t full K=6": (blobs(6, 2, 3000, 4, 6, 0.02), 6, "full", "student-t"),
    "8 x 5-D + 3% outliers, t diag K=8": (blobs(8, 5, 20000, 3, 7, 0.03), 8, "diag", "student-t"),
    "iris, full K=3": (load_iris().data, 3, "full", "normal"),
    "iris, full K=4": (load_iris().data, 4, "full", "normal"),
    "30 x 2-D, diag K=30": (blobs(30, 2, 6000, 8, 1), 30, "diag", "normal"),
    "8 x 5-D, full K=8": (blobs(8, 5, 20000, 3, 2), 8, "full", "normal"),
    "wine, diag K=4": (load_wine().data, 4, "diag", "normal"),
    "wine, diag K=6": (load_wine().data, 6, "diag", "normal"),
    "wine, diag K=8": (load_wine().data, 8, "diag", "normal"),
    "wine, full K=3": (load_wine().data, 3, "full", "normal"),
    "16 x 10-D, diag K=16": (blobs(16, 10, 100_000, 2, 3), 16, "diag", "normal"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--only", default="", help="run the sets whose name contains this")
    args = ap.parse_args()
    warnings.simplefilter("ignore", FitWarning)
    print(f"{'data':40s} {'scored':9s} per-row negative log joint by seed       s/fit")
    for name, (x, k, cov, family) in SETS.items():
        if args.only not in name:
            continue
        priors = Priors.from_data(x)
        for label, iters in (("as they", 0), ("after 20", 20)):
            fit_em(x, k, covariance=cov, family=family, priors=priors, init_iters=iters)  # warm
            t0, vals = time.perf_counter(), []
            for s in range(args.seeds):
                f = fit_em(x, k, covariance=cov, family=family, priors=priors, init_iters=iters,
                           seed=s)  # fmt: skip
                vals.append(f.neg_log_joint / len(x))
            per = (time.perf_counter() - t0) / args.seeds
            print(f"{name:40s} {label:9s} " + " ".join(f"{v:8.4f}" for v in vals) + f"  {per:6.2f}")


if __name__ == "__main__":
    main()
