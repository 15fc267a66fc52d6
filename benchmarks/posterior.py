"""Posterior sampling speed: effective samples per second, bayesmix against NumPyro and Pyro.

Two problems, one run:
  seed   the tutorial's 5 points, K = 2, D = 1 (shared scale; priors Dirichlet(0.5),
         LogNormal(0, 2), Normal(0, 10))
  large  N = 10,000 points, D = 2, K = 3 (simulated, well separated; same model)
Samplers (the same model and priors, float64 everywhere):
  bayesmix  collapsed NUTS (`sample_nuts`), assignments summed out by enumeration
  numpyro   NUTS on MixtureSameFamily (the marginal likelihood, as NumPyro's docs suggest),
            chains run one after another as 1-chain runs (its fastest use on one CPU device)
  pyro      NUTS on MixtureSameFamily (run by PYRO_PYTHON in a subprocess)
Each JAX sampler runs the same run (same seed) twice in its own process: the first includes
compilation, the second reuses the compiled program (JAX's in-process cache) and repeats the
same draws, so compile time = first - second exactly. bayesmix's persistent compile cache is
pointed at a fresh temporary folder, so "first" is a cold compile. Pyro (its JIT off, the
default) has nothing to compile and runs once.

ESS: the minimum over label-invariant quantities (every parameter with components sorted by
their first loc coordinate) of ArviZ's bulk ESS, computed the same way for every sampler from
its draws. Reported: ESS per second of sampling (second run) and ESS per second including
compilation (first run). One run's min ESS varies a lot from seed to seed (the seed problem at
4 x (1000 + 1000): 70 to 424 among bayesmix's seeds, the mean ~280): with `--ess-seeds R` the
JAX samplers also run seeds 1..R-1 (compiled already) and the ESS is the mean over the R
seeds, the run time the mean of the compiled runs; Pyro runs `--pyro-seeds` seeds (default 1),
its time the mean of its runs.

Usage (from the repository root):
    .venv/bin/python benchmarks/posterior.py [--problems seed,large] [--samplers ...]
        [--chains 4] [--warmup 500] [--draws 500] [--pyro-chains 1] [--pyro-warmup 200]
        [--pyro-draws 200] [--ess-seeds 1] [--pyro-seeds 1] [--out benchmarks/_runs/posterior.json]
Pyro runs 1 chain by default (its several chains use one process each) and fewer draws: the
rate, not the number of draws, is compared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = ("seed", "large")
SAMPLERS = ("bayesmix", "numpyro", "pyro")


def make_data(problem: str) -> tuple[np.ndarray, int]:
    if problem == "seed":
        return np.array([[0.0], [1.0], [10.0], [11.0], [12.0]]), 2
    rng = np.random.default_rng(0)
    centers = np.array([[-6.0, 0.0], [0.0, 6.0], [6.0, 0.0]])
    z = rng.choice(3, 10_000, p=[0.5, 0.3, 0.2])
    return centers[z] + rng.standard_normal((10_000, 2)), 3


def min_ess(weights: np.ndarray, locs: np.ndarray, scale: np.ndarray) -> dict:
    """weights (C, S, K), locs (C, S, K, D), scale (C, S): min bulk ESS over sorted quantities."""
    import arviz as az

    order = np.argsort(locs[..., 0], axis=-1)
    w = np.take_along_axis(weights, order, -1)
    lc = np.take_along_axis(locs, order[..., None], -2)
    quantities = {"scale": scale}
    for k in range(w.shape[-1]):
        quantities[f"weights[{k}]"] = w[..., k]
        for d in range(lc.shape[-1]):
            quantities[f"locs[{k},{d}]"] = lc[..., k, d]
    ess = {name: float(az.ess(v, method="bulk")) for name, v in quantities.items()}
    worst = min(ess, key=ess.get)
    return {"min_ess": ess[worst], "min_ess_quantity": worst, "scale_mean": float(scale.mean())}


# ---------------------------------------------------------------------------- one sampler
def run_bayesmix(x, k, chains, warmup, draws, seeds):
    import jax

    jax.config.update("jax_enable_x64", True)
    import blackjax  # noqa: F401
    import numpyro.distributions  # noqa: F401

    import bayesmix as bm

    # bayesmix imports BlackJAX and NumPyro lazily, when it traces a program; they are imported
    # here, untimed, as the NumPyro and Pyro runs import theirs: the compile column is
    # compilation (about 1 s of imports on a cold run is not in it).
    times, runs = [], []
    # Seed 0 twice (the second reuses the compiled program), then the other seeds.
    for seed in (0, *range(seeds)):
        t0 = time.perf_counter()
        post = bm.sample_nuts(x, k, chains=chains, warmup=warmup, draws=draws, seed=seed)
        times.append(time.perf_counter() - t0)
        p = post.params
        runs.append(((p.weights, p.locs, p.scale), int(post.sampler["diverging"].sum())))
    return times, runs[1:]


def run_numpyro(x, k, chains, warmup, draws, seeds):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    d = x.shape[1]

    def model(x):
        w = numpyro.sample("weights", dist.Dirichlet(0.5 * jnp.ones(k)))
        scale = numpyro.sample("scale", dist.LogNormal(0.0, 2.0))
        locs = numpyro.sample("locs", dist.Normal(0.0, 10.0).expand([k, d]).to_event(2))
        comp = dist.Normal(locs, scale).to_event(1)
        numpyro.sample("x", dist.MixtureSameFamily(dist.Categorical(w), comp), obs=x)

    # One chain per run, repeated: NumPyro caches the compiled sampler of a 1-chain MCMC
    # between runs, but recompiles its multi-chain (sequential) runs every time.
    mcmc = MCMC(
        NUTS(model, target_accept_prob=0.95),
        num_warmup=warmup,
        num_samples=draws,
        num_chains=1,
        progress_bar=False,
    )
    times, runs = [], []
    for seed in (0, *range(seeds)):  # as bayesmix's: seed 0 twice, then the others
        t0 = time.perf_counter()
        chains_out, div = [], 0
        for c in range(chains):
            mcmc.run(jax.random.key(seed * chains + c), jnp.asarray(x))
            s = mcmc.get_samples()
            jax.block_until_ready(s)
            chains_out.append(s)
            div += int(np.sum(mcmc.get_extra_fields(group_by_chain=False)["diverging"]))
        times.append(time.perf_counter() - t0)
        out = tuple(
            np.stack([np.asarray(s[n]) for s in chains_out]) for n in ("weights", "locs", "scale")
        )
        runs.append((out, div))
    return times, runs[1:]


def run_pyro(x, k, chains, warmup, draws, seeds):
    import pyro
    import pyro.distributions as dist
    import torch
    from pyro.infer import MCMC, NUTS

    torch.set_default_dtype(torch.float64)
    xt = torch.as_tensor(x)
    d = x.shape[1]

    def model(x):
        w = pyro.sample("weights", dist.Dirichlet(0.5 * torch.ones(k)))
        scale = pyro.sample("scale", dist.LogNormal(0.0, 2.0))
        locs = pyro.sample("locs", dist.Normal(0.0, 10.0).expand([k, d]).to_event(2))
        comp = dist.Normal(locs, scale).to_event(1)
        pyro.sample("x", dist.MixtureSameFamily(dist.Categorical(w), comp), obs=x)

    times, runs = [], []
    for seed in range(seeds):  # no compilation to amortize: one run per seed
        pyro.set_rng_seed(seed)
        mcmc = MCMC(
            NUTS(model, target_accept_prob=0.95),
            num_samples=draws,
            warmup_steps=warmup,
            num_chains=chains,
            disable_progbar=True,
        )
        t0 = time.perf_counter()
        mcmc.run(xt)
        times.append(time.perf_counter() - t0)
        samples = mcmc.get_samples(group_by_chain=True)
        div = sum(len(v) for v in mcmc.diagnostics()["divergences"].values())
        runs.append((tuple(samples[n].detach().numpy() for n in ("weights", "locs", "scale")), div))
    return times, runs


def child(args) -> None:
    """Run one sampler on one problem and print a JSON line."""
    x, k = make_data(args.problem)
    fn = {"bayesmix": run_bayesmix, "numpyro": run_numpyro, "pyro": run_pyro}[args.sampler]
    times, runs = fn(x, k, args.chains, args.warmup, args.draws, args.ess_seeds)
    if args.sampler == "pyro":  # ArviZ lives in the main venv: hand the draws back
        runs = [{"divergences": div, "draws": [a.tolist() for a in d]} for d, div in runs]
        print(json.dumps({"times": times, "runs": runs}))
        return
    per_seed = [{**min_ess(*draws), "divergences": div} for draws, div in runs]
    print(json.dumps({"times": times, "per_seed": per_seed}))


# ---------------------------------------------------------------------------- harness
def measure(problem, sampler, chains, warmup, draws, seeds, pyro_python, timeout) -> dict:
    python = pyro_python if sampler == "pyro" else sys.executable
    cmd = [python, __file__, "--child", "--problem", problem, "--sampler", sampler]
    cmd += ["--chains", str(chains), "--warmup", str(warmup), "--draws", str(draws)]
    cmd += ["--ess-seeds", str(seeds)]
    env = {**os.environ, "BAYESMIX_CACHE_DIR": tempfile.mkdtemp(prefix="bm-cache-")}
    if sampler == "pyro":
        env["PYTHONPATH"] = ""
    load = os.getloadavg()[0]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{sampler} on {problem} failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if sampler == "pyro":  # nothing compiled: every run is a first and a second run
        out["per_seed"] = [
            {**min_ess(*(np.asarray(a) for a in r["draws"])), "divergences": r["divergences"]}
            for r in out.pop("runs")
        ]
        out["times"] = [float(np.mean(out["times"]))] * 2
    times, per_seed = out["times"], out["per_seed"]
    # The compile time is seed 0's first run less its second (the same draws, compiled).
    first, second = times[0], times[1]
    run = float(np.mean(times[1:]))
    ess = float(np.mean([r["min_ess"] for r in per_seed]))
    out.update(
        min_ess=ess,
        min_ess_quantity=per_seed[0]["min_ess_quantity"],
        divergences=float(np.mean([r["divergences"] for r in per_seed])),
        seeds=len(per_seed),
        problem=problem,
        sampler=sampler,
        chains=chains,
        warmup=warmup,
        draws=draws,
        load_before=load,
        first_s=first,
        run_s=run,
        compile_s=max(first - second, 0.0),
        ess_per_s=ess / run,
        ess_per_s_with_compile=ess / first,
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--problem", default="seed")
    ap.add_argument("--sampler", default="bayesmix")
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--samplers", default=",".join(SAMPLERS))
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--pyro-chains", type=int, default=1)
    ap.add_argument("--pyro-warmup", type=int, default=200)
    ap.add_argument("--pyro-draws", type=int, default=200)
    ap.add_argument("--ess-seeds", type=int, default=1)
    ap.add_argument("--pyro-seeds", type=int, default=1)
    ap.add_argument("--pyro-python", default=str(ROOT / ".venv-pyro" / "bin" / "python"))
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    rows = []
    meta = {
        "python": platform.python_version(),
        "machine": platform.processor(),
        "nproc": os.cpu_count(),
        "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    for problem in args.problems.split(","):
        for sampler in args.samplers.split(","):
            if sampler == "pyro" and not Path(args.pyro_python).exists():
                print(f"skipping pyro: {args.pyro_python} not found", file=sys.stderr)
                continue
            settings = (
                (args.pyro_chains, args.pyro_warmup, args.pyro_draws)
                if sampler == "pyro"
                else (args.chains, args.warmup, args.draws)
            )
            seeds = args.pyro_seeds if sampler == "pyro" else args.ess_seeds
            row = measure(problem, sampler, *settings, seeds, args.pyro_python, args.timeout)
            rows.append(row)
            print(
                f"{problem:6} {sampler:9} chains {row['chains']} x ({row['warmup']} + "
                f"{row['draws']}): first {row['first_s']:7.2f} s, run {row['run_s']:7.2f} s, "
                f"compile {row['compile_s']:6.2f} s, min ESS {row['min_ess']:7.0f} "
                f"({row['min_ess_quantity']}; mean of {row['seeds']} seeds), ESS/s "
                f"{row['ess_per_s']:9.1f}, with compile "
                f"{row['ess_per_s_with_compile']:8.1f}, divergences {row['divergences']}, "
                f"load {row['load_before']:.1f}",
                flush=True,
            )
            if args.out:  # after every row: a run stopped later keeps what it measured
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    for problem in args.problems.split(","):
        by = {r["sampler"]: r for r in rows if r["problem"] == problem}
        if "bayesmix" not in by:
            continue
        for other in ("numpyro", "pyro"):
            if other in by:
                a, b = by["bayesmix"], by[other]
                print(
                    f"{problem}: bayesmix / {other} ESS per second = "
                    f"{a['ess_per_s'] / b['ess_per_s']:.1f}x (with compile "
                    f"{a['ess_per_s_with_compile'] / b['ess_per_s_with_compile']:.1f}x)"
                )


if __name__ == "__main__":
    main()
