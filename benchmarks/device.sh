#!/usr/bin/env bash
# The GPU figures of benchmarks/scale.py and benchmarks/posterior.py, and the EM / classifier
# tests, on a machine with an accelerator whose Python already has JAX (CUDA), NumPyro, Optax,
# scikit-learn and pyarrow; BlackJAX and ArviZ travel as wheels in .whl/ where missing.
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
part scale_gpu "${SCALE_S:-220}" python3 benchmarks/scale.py --libs bayesmix --timeout 60 \
  --out "$OUT/scale_gpu.json"
part tests "${TEST_S:-100}" python3 -m pytest -x -p no:cacheprovider tests/test_em.py \
  tests/test_predict.py tests/test_enumerate.py
part scale_sklearn "${SKLEARN_S:-100}" python3 benchmarks/scale.py --libs sklearn --n 1e6 \
  --timeout 25 --out "$OUT/scale_sklearn.json"
part posterior_gpu "${POST_S:-140}" python3 benchmarks/posterior.py --problems large \
  --samplers bayesmix,numpyro --timeout 130 --out "$OUT/posterior_gpu.json"
