"""Seconds to draw and render (PNG) the figures of `bayesmix fit` that show every row: the
pairwise scatter (D = 4: 6 scatter panels, 4 histograms) and the membership uncertainty, at
growing N. The figures draw at most `bayesmix.plot.MAX_SCATTER_POINTS` rows; before that limit
their time grew with N (~0.1 ms a row).

    .venv/bin/python benchmarks/figures.py [--n 1e4,1e5,1e6]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import bayesmix as bm
from bayesmix import plot


def seconds(make) -> float:
    t = time.perf_counter()
    plot.png(make())
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="1e4,1e5,1e6")
    ap.add_argument("--d", type=int, default=4)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    seconds(lambda: plot.loss(np.arange(3.0)))  # matplotlib's first-use costs
    print("| N | D | pairwise (s) | membership uncertainty (s) |\n|---|---|---|---|")
    for n in (int(float(v)) for v in args.n.split(",")):
        x = rng.normal(size=(n, args.d)) + 4 * rng.integers(0, 3, (n, 1))
        fit = bm.fit_em(x, 3, max_iter=5)
        labels, probs = bm.predict(fit, x), bm.predict_proba(fit, x)
        pair = seconds(lambda: plot.pairwise(fit, x, labels))  # noqa: B023
        unc = seconds(lambda: plot.membership_uncertainty(x, probs))  # noqa: B023
        print(f"| {n:.0e} | {args.d} | {pair:.2f} | {unc:.2f} |")


if __name__ == "__main__":
    main()
