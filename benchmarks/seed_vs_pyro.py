"""Speed of the seed tutorial's workflow: bayesmix (cold and warm compile cache) against Pyro.

Every measurement is a FRESH process, timed end to end by this harness (process start to exit).
Per repeat (bayesmix first, so that a failing CLI is reported at once):
  cold  bayesmix demo --out DIR --no-figures, BAYESMIX_CACHE_DIR = a new, empty directory
  warm  the same command again with the same BAYESMIX_CACHE_DIR (compile cache populated)
  pyro  PYRO_PYTHON benchmarks/seed_pyro.py                 (prints its stage timings as JSON)
Once at the end: warm with figures (no --no-figures), reported separately.
bayesmix's stage timings are read from DIR/summary.json ("timings_s"). Medians over repeats are
reported, with the targets: cold wall <= 0.5x Pyro, warm wall <= 0.1x Pyro.

Run with the project's own venv (stdlib only), from the repository root:
    .venv/bin/python benchmarks/seed_vs_pyro.py                   # 3 repeats
    .venv/bin/python benchmarks/seed_vs_pyro.py --repeats 1 --out benchmarks/_runs/seed.json
    .venv/bin/python benchmarks/seed_vs_pyro.py --skip-bayesmix   # Pyro side only
Options:
  --pyro-python PATH   default .venv-pyro/bin/python at the repo root; Pyro is skipped if absent
  --bayesmix-cmd CMD   default: the bayesmix console script next to this python (shell-split)
  --demo-args "..."    extra demo options; "--chains 1 --warmup 50 --draws 250" gives the
                       tutorial's NUTS workload (the demo's defaults run more NUTS than Pyro)
  --pyro-threads N     OMP_NUM_THREADS for Pyro only (default: torch's own choice)
  --skip-pyro, --skip-bayesmix, --timeout SECONDS (per process)
Measure on a quiet machine: the harness warns when the load average says others compete.
Set up the Pyro venv with:
    python3 -m venv .venv-pyro && .venv-pyro/bin/pip install torch==2.13.0 pyro-ppl
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["import", "initializations", "map", "classify", "local_guide", "nuts", "total"]
TARGETS = {"cold": 0.5, "warm": 0.1}
Run = dict[str, Any]


class BenchError(RuntimeError):
    """A benchmarked process failed; the message says which and why."""


def run_timed(
    cmd: list[str], env: dict[str, str] | None, timeout: float
) -> tuple[float, str, float]:
    """Run ``cmd`` in a fresh process.

    Returns (wall seconds, stdout, 1-min load average just before). Raises BenchError on failure.
    """
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"{shlex.join(cmd)}\n  could not run: {exc}") from exc
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise BenchError(
            f"{shlex.join(cmd)}\n  exited with status {proc.returncode}; stderr:\n{proc.stderr}"
        )
    return wall, proc.stdout, load


def run_pyro(pyro_python: str, threads: int | None, timeout: float) -> Run:
    env = None if threads is None else {**os.environ, "OMP_NUM_THREADS": str(threads)}
    wall, stdout, load = run_timed([pyro_python, "benchmarks/seed_pyro.py"], env, timeout)
    try:
        report = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as exc:
        raise BenchError(f"seed_pyro.py printed no JSON on its last line:\n{stdout}") from exc
    timings = dict(report["timings_s"])
    timings["total"] = timings.pop("total_in_process")
    return {
        "wall_s": wall,
        "timings_s": timings,
        "version": report["version"],
        "torch_threads": report.get("torch_threads"),
        "load_before": load,
    }


def run_bayesmix(
    cmd: list[str], extra: list[str], cache_dir: Path, figures: bool, timeout: float
) -> Run:
    out_dir = Path(tempfile.mkdtemp(prefix="bayesmix-bench-out-")) / "demo"
    try:
        argv = [*cmd, "demo", "--out", str(out_dir), *extra]
        argv += [] if figures else ["--no-figures"]
        env = {**os.environ, "BAYESMIX_CACHE_DIR": str(cache_dir)}
        wall, _, load = run_timed(argv, env, timeout)
        summary_path = out_dir / "summary.json"
        try:
            raw = json.loads(summary_path.read_text())["timings_s"]
            timings = {str(k): float(v) for k, v in raw.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BenchError(
                f"{shlex.join(argv)}\n  missing or bad timings_s in {summary_path}: {exc}"
            ) from exc
        return {
            "wall_s": wall,
            "timings_s": timings,
            "load_before": load,
        }
    finally:
        shutil.rmtree(out_dir.parent, ignore_errors=True)


def medians(runs: list[Run]) -> dict[str, float]:
    """Median of the wall time and of every stage over the runs that report it."""
    keys = {k for r in runs for k in r["timings_s"]}
    med = {
        k: statistics.median(r["timings_s"][k] for r in runs if k in r["timings_s"]) for k in keys
    }
    med["wall"] = statistics.median(r["wall_s"] for r in runs)
    return med


def fmt(x: float | None, ratio: bool = False) -> str:
    if x is None:
        return "–"
    if ratio:
        return f"{x:.3f}x"
    return f"{x:.3f} s" if x >= 0.1 else f"{x * 1e3:.1f} ms"


def table(cols: dict[str, dict[str, float]], figures: Run | None) -> str:
    """Stage rows (known stages first, then any others), then the harness-measured wall time."""
    pyro = cols.get("pyro", {})
    extra = sorted({k for c in cols.values() for k in c} - set(STAGES) - {"wall"})
    head = ["stage", "pyro", "bayesmix cold", "bayesmix warm", "cold/pyro", "warm/pyro"]
    rows = [head]
    for stage in [*STAGES, *extra, "wall"]:
        vals = [cols.get(c, {}).get(stage) for c in ("pyro", "cold", "warm")]
        if all(v is None for v in vals):
            continue
        ratios = [v / pyro[stage] if v is not None and pyro.get(stage) else None for v in vals[1:]]
        name = "end-to-end wall (process)" if stage == "wall" else stage
        name = "total (in process)" if stage == "total" else name
        rows.append([name, *(fmt(v) for v in vals), *(fmt(r, True) for r in ratios)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    if figures is not None:
        stages = ", ".join(f"{k} {fmt(v)}" for k, v in figures["timings_s"].items())
        lines.append(
            f"\nbayesmix warm WITH figures (1 run): wall {fmt(figures['wall_s'])}; {stages}"
        )
    return "\n".join(lines)


def headline(cols: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for mode, target in TARGETS.items():
        if "pyro" in cols and mode in cols:
            ratio = cols[mode]["wall"] / cols["pyro"]["wall"]
            out[mode] = {"ratio": ratio, "target": target, "pass": ratio <= target}
    return out


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    default_pyro = ROOT / ".venv-pyro" / "bin" / "python"
    ap.add_argument("--pyro-python", default=str(default_pyro) if default_pyro.exists() else None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, help="write all raw numbers as JSON here")
    ap.add_argument(
        "--bayesmix-cmd",
        default=str(Path(sys.executable).parent / "bayesmix"),
        help="command that runs bayesmix's CLI (split like a shell would)",
    )
    ap.add_argument(
        "--demo-args",
        default="",
        help='extra `bayesmix demo` options, e.g. "--chains 1 --warmup 50 --draws 250"',
    )
    ap.add_argument("--skip-bayesmix", action="store_true", help="measure Pyro only")
    ap.add_argument(
        "--pyro-threads", type=int, help="OMP_NUM_THREADS for Pyro (default: torch's own)"
    )
    ap.add_argument("--skip-pyro", action="store_true", help="measure bayesmix only")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per process")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    bm_cmd = None if args.skip_bayesmix else shlex.split(args.bayesmix_cmd)
    demo_args = shlex.split(args.demo_args)
    if bm_cmd and shutil.which(bm_cmd[0]) is None:
        print(
            f"error: bayesmix command not found: {bm_cmd[0]} (install the project into this "
            "venv, pass --bayesmix-cmd, or --skip-bayesmix)",
            file=sys.stderr,
        )
        return 2
    if args.skip_pyro:
        args.pyro_python = None
    elif args.pyro_python is None:
        print("note: no .venv-pyro/bin/python at the repo root and no --pyro-python: skipping Pyro")
    if bm_cmd is None and args.pyro_python is None:
        print("error: nothing to measure", file=sys.stderr)
        return 2

    runs: dict[str, list[Run]] = {"pyro": [], "cold": [], "warm": []}
    figures: Run | None = None
    cache_root = Path(tempfile.mkdtemp(prefix="bayesmix-bench-cache-"))
    try:
        for i in range(args.repeats):
            if bm_cmd:
                cache = cache_root / f"repeat{i}"
                cache.mkdir()
                runs["cold"].append(run_bayesmix(bm_cmd, demo_args, cache, False, args.timeout))
                runs["warm"].append(run_bayesmix(bm_cmd, demo_args, cache, False, args.timeout))
            if args.pyro_python:
                runs["pyro"].append(run_pyro(args.pyro_python, args.pyro_threads, args.timeout))
            walls = ", ".join(f"{k} {r[-1]['wall_s']:.2f} s" for k, r in runs.items() if r)
            print(f"repeat {i + 1}/{args.repeats}: {walls}", flush=True)
        if bm_cmd:
            figures = run_bayesmix(
                bm_cmd, demo_args, cache_root / f"repeat{args.repeats - 1}", True, args.timeout
            )
    except BenchError as exc:
        print(f"error: benchmark process failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(cache_root, ignore_errors=True)

    cols = {k: medians(r) for k, r in runs.items() if r}
    if bm_cmd:
        print(f"\nbayesmix: {shlex.join([*bm_cmd, 'demo', '--out', 'DIR', *demo_args])}")
    heads = headline(cols)
    loads = [r["load_before"] for rs in runs.values() for r in rs]
    machine = {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    print(
        f"\nmedians of {args.repeats} repeat(s); pyro {runs['pyro'][0]['version']}"
        if runs["pyro"]
        else f"\nmedians of {args.repeats} repeat(s)"
    )
    print(table(cols, figures))
    print()
    for mode, h in heads.items():
        verdict = "PASS" if h["pass"] else "MISS"
        print(f"{mode} wall / pyro wall = {h['ratio']:.3f}x (target <= {h['target']}x): {verdict}")
    if max(loads) > 0.5 * (os.cpu_count() or 1):
        print(
            f"warning: 1-min load average before runs was up to {max(loads):.2f} on "
            f"{os.cpu_count()} CPUs; other processes were competing, timings are inflated"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        raw = {
            "machine": machine,
            "repeats": args.repeats,
            "bayesmix_cmd": bm_cmd,
            "demo_args": demo_args,
            "runs": runs,
            "figures_warm": figures,
            "medians": cols,
            "headline": heads,
        }
        args.out.write_text(json.dumps(raw, indent=1))
        print(f"raw numbers written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
