"""Scale benchmark: bayesmix MAP-EM vs scikit-learn's GaussianMixture (and Pyro's SVI where it
finishes in minutes) on N = 1e4 ... 1e7 rows, D = 1 and 10, K = 2, 8, 16, side by side.

Every measurement runs in its own subprocess (so peak memory is its own): the data are
generated in the child (float32 for bayesmix, whose large-data default it is; float64 for
scikit-learn, which computes in float64), then the peak resident set is reset
(/proc/self/clear_refs) and the fit runs. Reported per library and configuration:

- time per EM iteration (median over iterations, timed by a callback, which makes each
  iteration return to Python: on an accelerator that round trip is most of it, and
  `em_loop.py` gives the figure of in-memory fits, many iterations per program; scikit-learn:
  median of 3 calls of its own E-step + M-step; Pyro: one SVI step on the full data,
  enumerating the assignments);
- time to convergence (tolerance 1e-3 on the change of the mean log joint per row, scikit-
  learn's default; bayesmix: initialization + iterations of a second (warm) fit, the first
  fit's time with compilation also recorded; scikit-learn: k-means++ seeding + iterations),
  with the iteration count;
- peak memory above the data already in memory, and as a multiple of the data's size
  (bayesmix: the warm fit; the cold fit's peak, compilation included, is also recorded);
- the machine's floor: a compiled, vectorized exp over N x K float32 elements, and bayesmix's
  throughput (K x N per second) as a fraction of it.

Usage (a full run takes a long time on 2 cores; --max-n bounds it):
    .venv/bin/python benchmarks/scale.py --max-n 1e6 --out benchmarks/_runs/scale.json
    .venv/bin/python benchmarks/scale.py --report benchmarks/_runs/scale.json   # markdown
The load average is recorded with every measurement: compare ratios from one quiet run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYRO_PYTHON = ROOT / ".venv-pyro" / "bin" / "python"
TOL = 1e-3


def _rss(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> int:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _rss("VmRSS:")


def _data(n: int, d: int, k: int, dtype: str):
    """K well-separated Gaussian clusters with unequal spreads, shuffled."""
    import numpy as np

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 6, (k, d))
    z = rng.integers(0, k, n)
    spread = 0.5 + rng.random(k)
    x = np.empty((n, d), dtype)
    step = 1 << 20
    for i in range(0, n, step):  # in pieces: no float64 temporaries of the whole array
        zz = z[i : i + step]
        x[i : i + step] = centres[zz] + spread[zz, None] * rng.standard_normal((len(zz), d))
    return x


def child_bayesmix(n: int, d: int, k: int, cov: str) -> dict:
    import numpy as np

    x = _data(n, d, k, "float32")
    import jax
    import jax.numpy as jnp

    from bayesmix.infer.em import fit_em

    # Floor: a vectorized exp over N x K float32 elements (compiled, median of 5).
    z = jnp.asarray(np.random.default_rng(1).standard_normal((n, k), np.float32))
    ex = jax.jit(jnp.exp)
    ex(z).block_until_ready()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        ex(z).block_until_ready()
        times.append(time.perf_counter() - t)
    floor = float(np.median(times))
    del z
    kw = dict(covariance=cov, priors="auto", n_init=1, init="kmeans++", tol=TOL, max_iter=300,
              progress=False)  # fmt: skip
    runs = []
    for _ in range(2):  # cold (compiles), then warm
        stamps: list[float] = []
        base = _reset_peak()
        t0 = time.perf_counter()
        fit = fit_em(x, k, callback=lambda *a, s=stamps: s.append(time.perf_counter()), **kw)
        runs.append((time.perf_counter() - t0, _rss("VmHWM:") - base, stamps))
    (cold, cold_peak, _), (warm, peak, stamps) = runs
    per_iter = float(np.median(np.diff(stamps))) if len(stamps) > 2 else float("nan")
    return {
        "per_iter_s": per_iter,
        "converge_s": warm,
        "converge_cold_s": cold,
        "iterations": len(fit.losses),
        "converged": fit.converged,
        "peak_bytes": peak,
        "peak_cold_bytes": cold_peak,
        "data_bytes": x.nbytes,
        "exp_floor_s": floor,
        "loglik_per_row": fit.log_likelihood / n,
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        # On an accelerator: the peak of its own memory over both fits (data included).
        "device_peak_bytes": (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use"),
    }


def child_sklearn(n: int, d: int, k: int, cov: str) -> dict:
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    x = _data(n, d, k, "float64")
    warnings.simplefilter("ignore", ConvergenceWarning)
    kw = dict(covariance_type="spherical" if cov == "shared" else cov, init_params="k-means++")

    base = _reset_peak()
    gm = GaussianMixture(k, max_iter=1, random_state=0, **kw).fit(x)  # k-means++ + 1 iteration
    # One EM iteration, exactly: scikit-learn's own E-step and M-step (private methods).
    times = []
    for _ in range(3):
        t = time.perf_counter()
        _, log_resp = gm._e_step(x)
        gm._m_step(x, log_resp)
        times.append(time.perf_counter() - t)
    del log_resp
    part = {"per_iter_s": float(np.median(times)), "data_bytes": x.nbytes, "converge_s": None}
    part["peak_bytes"] = _rss("VmHWM:") - base
    print(json.dumps(part), flush=True)  # kept if the convergence run below times out
    t = time.perf_counter()
    gm = GaussianMixture(k, max_iter=300, tol=TOL, random_state=0, **kw).fit(x)
    part["converge_s"] = time.perf_counter() - t
    return {
        **part,
        "peak_bytes": _rss("VmHWM:") - base,
        "iterations": int(gm.n_iter_),
        "converged": bool(gm.converged_),
        "loglik_per_row": float(gm.score(x)),
    }


def child_pyro(n: int, d: int, k: int, cov: str, steps: int = 5) -> dict:
    """One SVI step (TraceEnum_ELBO, the assignments enumerated, AutoDelta) on all rows."""
    import numpy as np
    import pyro
    import pyro.distributions as pdist
    import torch
    from pyro.infer import SVI, TraceEnum_ELBO, config_enumerate
    from pyro.infer.autoguide import AutoDelta
    from pyro.optim import Adam

    x = torch.from_numpy(_data(n, d, k, "float32"))

    @config_enumerate
    def model(data):
        weights = pyro.sample("weights", pdist.Dirichlet(0.5 * torch.ones(k)))
        with pyro.plate("components", k):
            scale = pyro.sample("scale", pdist.LogNormal(torch.zeros(d), 2.0).to_event(1))
            locs = pyro.sample("locs", pdist.Normal(torch.zeros(d), 10.0).to_event(1))
        with pyro.plate("data", len(data)):
            z = pyro.sample("z", pdist.Categorical(weights))
            pyro.sample("obs", pdist.Normal(locs[z], scale[z]).to_event(1), obs=data)

    guide = AutoDelta(pyro.poutine.block(model, hide=["z"]))
    svi = SVI(model, guide, Adam({"lr": 0.1}), TraceEnum_ELBO(max_plate_nesting=1))
    base = _reset_peak()
    svi.step(x)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        svi.step(x)
        times.append(time.perf_counter() - t)
    return {
        "per_iter_s": float(np.median(times)),
        "converge_s": None,
        "iterations": None,
        "peak_bytes": _rss("VmHWM:") - base,
        "data_bytes": x.numpy().nbytes,
    }


CHILDREN = {"bayesmix": child_bayesmix, "sklearn": child_sklearn, "pyro": child_pyro}


def measure(lib: str, n: int, d: int, k: int, cov: str, timeout: float) -> dict:
    python = str(PYRO_PYTHON) if lib == "pyro" else sys.executable
    spec = json.dumps({"lib": lib, "n": n, "d": d, "k": k, "cov": cov})
    load = os.getloadavg()[0]
    try:
        out = subprocess.run(
            [python, __file__, "--child", spec], capture_output=True, text=True,
            timeout=timeout, check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])},
        )  # fmt: skip
        result = json.loads(out.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired as exc:
        lines = (exc.stdout or b"").decode().strip().splitlines()
        result = json.loads(lines[-1]) if lines else {"skipped": f"over {timeout:.0f} s"}
        result["note"] = f"stopped after {timeout:.0f} s"
    except subprocess.CalledProcessError as exc:
        result = {"error": exc.stderr.strip().splitlines()[-1] if exc.stderr else "failed"}
    return {"lib": lib, "n": n, "d": d, "k": k, "cov": cov, "load_before": load, **result}


def _skip(lib: str, n: int, d: int, k: int, max_pyro_n: float, max_sklearn_bytes: float) -> str:
    if lib == "pyro" and (n > max_pyro_n or not PYRO_PYTHON.exists()):
        return "too slow (per-step time grows past minutes)" if n > max_pyro_n else "no Pyro"
    if lib == "sklearn" and n * k * 8 * 6 > max_sklearn_bytes:
        return "needs more memory than this shared machine has free (~6 (N, K) float64 arrays)"
    return ""


def report(rows: list[dict]) -> str:
    def fmt(v, unit=""):
        if v is None or (isinstance(v, float) and v != v):
            return "–"
        return f"{v:.3g}{unit}"

    lines = [
        "| N | D | K | library | s / iteration | vs sklearn | to convergence (iters) | "
        "peak memory above data (x data) | throughput / exp floor | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_key = {(r["n"], r["d"], r["k"], r["lib"]): r for r in rows}
    for r in rows:
        note = r.get("skipped") or r.get("error")
        if note:
            lines.append(
                f"| {r['n']:.0e} | {r['d']} | {r['k']} | {r['lib']} | {note} | | | | | "
                f"{r['load_before']:.1f} |"
            )
            continue
        sk = by_key.get((r["n"], r["d"], r["k"], "sklearn"), {})
        ratio = (
            r["per_iter_s"] / sk["per_iter_s"]
            if r["lib"] != "sklearn" and sk.get("per_iter_s")
            else None
        )
        conv = (
            f"{fmt(r['converge_s'], ' s')} ({r['iterations']})"
            if r.get("converge_s")
            else r.get("note", "–")
        )
        mem = f"{r['peak_bytes'] / 2**20:.0f} MiB ({r['peak_bytes'] / r['data_bytes']:.2f}x)"
        floor = fmt(r["exp_floor_s"] / r["per_iter_s"]) if r.get("exp_floor_s") else "–"
        lines.append(
            f"| {r['n']:.0e} | {r['d']} | {r['k']} | {r['lib']} | {fmt(r['per_iter_s'])} | "
            f"{fmt(ratio, 'x')} | {conv} | {mem} | {floor} | {r['load_before']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--n", default="1e4,1e5,1e6,1e7")
    ap.add_argument("--d", default="1,10")
    ap.add_argument("--k", default="2,8,16")
    ap.add_argument("--libs", default="bayesmix,sklearn,pyro")
    ap.add_argument("--covariance", default="diag")
    ap.add_argument("--max-n", type=float, default=1e7)
    ap.add_argument("--max-pyro-n", type=float, default=1e5)
    ap.add_argument("--max-sklearn-gb", type=float, default=6.0)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "_runs" / "scale.json"))
    ap.add_argument("--report", help="print the markdown table of a results file and exit")
    args = ap.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(CHILDREN[spec.pop("lib")](**spec)))
        return
    if args.report:
        print(report(json.loads(Path(args.report).read_text())["rows"]))
        return
    rows: list[dict] = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"nproc": os.cpu_count(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for n in [int(float(v)) for v in args.n.split(",") if float(v) <= args.max_n]:
        for d in [int(v) for v in args.d.split(",")]:
            for k in [int(v) for v in args.k.split(",")]:
                for lib in args.libs.split(","):
                    why = _skip(lib, n, d, k, args.max_pyro_n, args.max_sklearn_gb * 2**30)
                    row = (
                        {"lib": lib, "n": n, "d": d, "k": k, "cov": args.covariance,
                         "load_before": os.getloadavg()[0], "skipped": why}
                        if why
                        else measure(lib, n, d, k, args.covariance, args.timeout)
                    )  # fmt: skip
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(report(rows))


if __name__ == "__main__":
    main()
