"""Load test of the HTTP service on loopback: bayesmix against scikit-learn's GaussianMixture.

Both services answer POST /predict {"rows": [[...], ...]} with each row's component and
membership probabilities, for the same mixture (sklearn's spherical GaussianMixture is given
bayesmix's MAP weights, locs and shared scale, so both compute the same numbers):
  bayesmix  `bayesmix serve MODEL` (one uvicorn worker, warm-up compilation at startup);
  sklearn   a minimal FastAPI app (pydantic request model, dict response), one uvicorn worker.
A third series, bayesmix-npy, sends the same rows to the same bayesmix server as an NPY body
(Content-Type: application/x-npy, the bytes of np.save) for the batches of 100 and 10,000 rows;
its answers are checked to be the JSON bodies' byte for byte. The sklearn baseline takes JSON
only.
Each runs in its own process on 127.0.0.1; one client (this process, keep-alive connection)
sends request bodies encoded in advance, one at a time. Per batch size (1, 100, 10,000 rows):
warm-up requests, then a fixed number of requests per series or until the time limit, the
series interleaved request by request (so a burst of load from elsewhere hits all of them alike).
Reported: latency p50 / p99 (ms, request sent to response read) and rows per second (rows x
requests / the series' summed latency). Everything stops by itself.

Run from the repository root (needs the `serve` extra and scikit-learn):
    .venv/bin/python benchmarks/serve.py
    .venv/bin/python benchmarks/serve.py --requests 2000,1000,200 --time-limit 30 \\
        --out benchmarks/_runs/serve.json
Targets: bayesmix p99 <= sklearn's at every batch size; >= 1e6 rows/s at 10,000 rows (JSON;
NPY reported as its own target).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIZES = (1, 100, 10_000)
NPY_SIZES = (100, 10_000)  # batch sizes also sent as NPY bodies
JSON, NPY = "application/json", "application/x-npy"


def baseline_server(params: Path, port: int) -> None:
    """The sklearn service: a minimal FastAPI app around GaussianMixture.predict_proba."""
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel
    from sklearn.mixture import GaussianMixture

    p = np.load(params)
    gm = GaussianMixture(n_components=len(p["weights"]), covariance_type="spherical")
    gm.weights_, gm.means_ = p["weights"], p["means"]
    gm.covariances_ = np.full(len(p["weights"]), float(p["scale"]) ** 2)
    gm.precisions_cholesky_ = 1.0 / np.sqrt(gm.covariances_)
    app = FastAPI()

    class Rows(BaseModel):
        rows: list[list[float]]

    def predict(request) -> dict:
        probs = gm.predict_proba(np.asarray(request.rows))
        return {"labels": probs.argmax(1).tolist(), "probabilities": probs.tolist()}

    predict.__annotations__["request"] = Rows  # a local class: not a string annotation
    app.post("/predict")(predict)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with code {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server on port {port} did not start within {timeout:.0f} s")


def _post(conn: http.client.HTTPConnection, body: bytes, content_type: str = JSON) -> bytes:
    conn.request("POST", "/predict", body, {"Content-Type": content_type})
    response = conn.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {data[:300]!r}")
    return data


def measure(
    series: list[tuple[str, int, bytes, str]], rows: int, n: int, warmup: int, limit: float
) -> dict:
    """Latencies of up to n requests per series (name, port, body, content type), sent in
    rounds that take one request from every series in turn (the order rotating), so that all
    series see the same machine load; stops after `limit` s per series. rows/s: rows x
    requests / the series' summed latency (its requests are sequential)."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=120) for _, port, *_ in series]
    for conn, (_, _, body, content_type) in zip(conns, series, strict=True):
        for _ in range(warmup):
            _post(conn, body, content_type)
    latencies: list[list[float]] = [[] for _ in series]
    start = time.perf_counter()
    rounds = 0
    while rounds < n and time.perf_counter() - start < limit * len(series):
        for j in range(len(series)):
            i = (j + rounds) % len(series)
            _, _, body, content_type = series[i]
            t = time.perf_counter()
            _post(conns[i], body, content_type)
            latencies[i].append(time.perf_counter() - t)
        rounds += 1
    for conn in conns:
        conn.close()
    out = {}
    for (name, *_), lat in zip(series, latencies, strict=True):
        ms = np.asarray(lat) * 1e3
        out[name] = {
            "rows": rows,
            "requests": len(lat),
            "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)),
            "rows_per_s": rows * len(lat) / float(np.sum(lat)),
            "busy_s": float(np.sum(lat)),
            "stopped_by_time_limit": len(lat) < n,
        }
    return out


def npy_bytes(x: np.ndarray) -> bytes:
    """What np.save writes for x."""
    buf = io.BytesIO()
    np.save(buf, x)
    return buf.getvalue()


def machine() -> dict:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", default="2000,1000,200", help="per batch size 1,100,10000")
    ap.add_argument("--warmup", type=int, default=20, help="warm-up requests per batch size")
    ap.add_argument("--time-limit", type=float, default=30.0, help="seconds per batch size")
    ap.add_argument("--k", type=int, default=3, help="components")
    ap.add_argument("--d", type=int, default=2, help="columns")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    ap.add_argument("--serve-baseline", nargs=2, metavar=("PARAMS", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_baseline:
        return baseline_server(Path(args.serve_baseline[0]), int(args.serve_baseline[1]))

    import jax

    jax.config.update("jax_enable_x64", True)
    import bayesmix as bm
    from bayesmix.serve.batch import classify

    counts = dict(zip(SIZES, (int(c) for c in args.requests.split(",")), strict=True))
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 5, (args.k, args.d))
    x = np.concatenate([c + rng.normal(0, 1, (500, args.d)) for c in centers])
    fit = bm.fit_map(x, args.k, n_init=20)
    tmp = Path(tempfile.mkdtemp(prefix="bayesmix-serve-bench-"))
    model = bm.save(tmp / "model.bmx", fit, columns=[f"c{j}" for j in range(args.d)])
    p = fit.params
    np.savez(tmp / "gm.npz", weights=p.weights, means=p.locs, scale=np.asarray(p.scale))

    bodies = {}
    for n in SIZES:
        batch = x[rng.integers(0, len(x), n)] + rng.normal(0, 0.1, (n, args.d))
        bodies[n] = (batch, json.dumps({"rows": batch.tolist()}).encode(), npy_bytes(batch))
    core = {}  # the numeric core alone, in this process: classify (labels and probabilities)
    for n, (batch, *_) in bodies.items():
        classify(fit, batch)
        t = time.perf_counter()
        reps = max(20, 2000 // n)
        for _ in range(reps):
            classify(fit, batch)
        core[n] = (time.perf_counter() - t) / reps * 1e3

    ports = {"bayesmix": _free_port(), "sklearn": _free_port()}
    bayesmix_cmd = [sys.executable, "-m", "bayesmix.cli", "serve", str(model), "--no-access-log"]
    commands = {
        "bayesmix": [*bayesmix_cmd, "--port", str(ports["bayesmix"])],
        "sklearn": [sys.executable, __file__, "--serve-baseline", str(tmp / "gm.npz"),
                    str(ports["sklearn"])],
    }  # fmt: skip
    procs = {}
    load_before = os.getloadavg()
    results: dict[str, list[dict]] = {"bayesmix": [], "bayesmix-npy": [], "sklearn": []}
    try:
        for name, cmd in commands.items():
            procs[name] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for name in commands:
            _wait(ports[name], procs[name], timeout=300)
        agree, npy_same = {}, {}
        for n in SIZES:
            batch, body, npy = bodies[n]
            answers = {
                name: json.loads(_post(http.client.HTTPConnection("127.0.0.1", port), body))
                for name, port in ports.items()
            }
            agree[n] = float(
                np.mean(np.equal(answers["bayesmix"]["labels"], answers["sklearn"]["labels"]))
            )
            series = [
                ("bayesmix", ports["bayesmix"], body, JSON),
                ("sklearn", ports["sklearn"], body, JSON),
            ]
            if n in NPY_SIZES:
                conn = http.client.HTTPConnection("127.0.0.1", ports["bayesmix"])
                npy_same[n] = _post(conn, npy, NPY) == _post(conn, body)
                series.insert(1, ("bayesmix-npy", ports["bayesmix"], npy, NPY))
            measured = measure(series, n, counts[n], args.warmup, args.time_limit)
            for name, r in measured.items():
                results[name].append(r)
                print(
                    f"{name:>12} {n:>6} rows: {r['requests']:>5} requests, "
                    f"p50 {r['p50_ms']:8.2f} ms, p99 {r['p99_ms']:8.2f} ms, "
                    f"{r['rows_per_s']:12,.0f} rows/s",
                    flush=True,
                )
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(timeout=30)
    load_after = os.getloadavg()

    print("\n| rows per request | bayesmix p50 / p99 (ms) | bayesmix NPY p50 / p99 (ms) | "
          "sklearn p50 / p99 (ms) | bayesmix rows/s | bayesmix NPY rows/s | sklearn rows/s | "
          "classify alone (ms) |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    npy_by_rows = {r["rows"]: r for r in results["bayesmix-npy"]}
    for b, s in zip(results["bayesmix"], results["sklearn"], strict=True):
        m = npy_by_rows.get(b["rows"])
        m_ms = f"{m['p50_ms']:.2f} / {m['p99_ms']:.2f}" if m else "-"
        m_rate = f"{m['rows_per_s']:,.0f}" if m else "-"
        print(
            f"| {b['rows']:,} | {b['p50_ms']:.2f} / {b['p99_ms']:.2f} | {m_ms} | "
            f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f} | {b['rows_per_s']:,.0f} | {m_rate} | "
            f"{s['rows_per_s']:,.0f} | {core[b['rows']]:.2f} |"
        )
    print("(bayesmix NPY: the same rows as an application/x-npy body; sklearn takes JSON only)")
    info = machine() | {"load_avg_before": load_before, "load_avg_after": load_after}
    print(f"\nlabels agree (bayesmix vs sklearn): {agree}")
    print(f"NPY answers equal the JSON answers byte for byte: {npy_same}")
    print(f"machine: {info}")
    targets = {
        "p99_le_sklearn": all(
            b["p99_ms"] <= s["p99_ms"]
            for b, s in zip(results["bayesmix"], results["sklearn"], strict=True)
        ),
        "rows_per_s_10000_ge_1e6": results["bayesmix"][-1]["rows_per_s"] >= 1e6,
        "npy_rows_per_s_10000_ge_1e6": results["bayesmix-npy"][-1]["rows_per_s"] >= 1e6,
    }
    print(f"targets: {targets}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "machine": info,
            "k": args.k,
            "d": args.d,
            "results": results,
            "classify_ms": core,
            "labels_agree": agree,
            "npy_equals_json": npy_same,
            "targets": targets,
        }
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
