#!/usr/bin/env bash
# The GPU figures of benchmarks/em_loop.py, scale.py, precision.py (and posterior.py with
# POSTERIOR=1), and the EM / source / classifier tests, on a machine with an accelerator whose
# Python already has JAX (CUDA), NumPyro, Optax, scikit-learn and pyarrow; BlackJAX and ArviZ
# travel as wheels in .whl/ where missing (about 7 minutes in all).
# Each part is time-bounded; JSON and logs go to $OUT (default benchmarks/_runs/device).
set -u
OUT=${OUT:-benchmarks/_runs/device}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src:${PYTHONPATH:-}" BAYESMIX_CACHE_DIR=/tmp/bm-cache PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax, numpyro, blackjax; print('jax', jax.__version__, jax.devices(), 'numpyro', numpyro.__version__, 'blackjax', blackjax.__version__)"
part() {  # part NAME SECONDS COMMAND...: run, log to $OUT/NAME.log, show the log's end
  local name=$1 limit=$2; shift 2
  echo "== $name (at most $limit s)"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; echo "== $name: exit $?"
  tail -n "${TAIL:-6}" "$OUT/$name.log" | cut -c1-300
}
# Tests on the GPU (float64), four workers sharing the device's memory (pytest-benchmark, in
# that image, warns under xdist, and its ArviZ 0.23.4 warns FutureWarning at import: the
# suite's warning filter would make both errors).
part tests "${TEST_S:-150}" env XLA_PYTHON_CLIENT_PREALLOCATE=false python3 -m pytest -x \
  -p no:cacheprovider -p no:benchmark -W ignore::FutureWarning -n 4 tests/test_em.py \
  tests/test_sources.py tests/test_predict.py tests/test_nuts.py
part em_loop "${LOOP_S:-110}" python3 benchmarks/em_loop.py --n 1e6,1e7 --d 10,1 --k 2,8,16
part scale_gpu "${SCALE_S:-150}" python3 benchmarks/scale.py --libs bayesmix --n 1e6,1e7 \
  --timeout 60 --out "$OUT/scale_gpu.json"
part precision "${PREC_S:-40}" env PYTHONPATH="$PWD/benchmarks:$PYTHONPATH" python3 \
  benchmarks/precision.py --n 1e7 --k 8
if [ -n "${POSTERIOR:-}" ]; then
  part posterior_gpu "${POST_S:-140}" python3 benchmarks/posterior.py --problems large \
    --samplers bayesmix,numpyro --timeout 130 --out "$OUT/posterior_gpu.json"
fi
