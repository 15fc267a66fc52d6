#!/usr/bin/env bash
# The GPU figures of benchmarks/estep_kernel.py, em_loop.py, scale.py, precision.py (and
# posterior.py: PARTS=posterior), and the EM / source / classifier tests, on a machine with an
# accelerator whose Python already has JAX (CUDA), NumPyro, Optax, scikit-learn and pyarrow;
# BlackJAX, ArviZ and platformdirs travel as wheels in .whl/ (`pip download --no-deps -d .whl
# blackjax arviz platformdirs`; about 7 minutes in all).
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
# PARTS picks what runs, in this order (default: all but posterior).
PARTS=${PARTS:-"kernel em_loop tests scale precision"}
has() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
if has kernel; then  # the E-step kernel: accuracy, then rows x warps against XLA's E-step
  part estep_kernel "${KERNEL_S:-150}" python3 benchmarks/estep_kernel.py --n 1e7 --d 10,1 \
    --k 2,8,16 --configs "${CONFIGS:-auto,256x4,512x4,256x8,512x8}" ${KERNEL_ARGS:-}
  part estep_kernel_many "${MANY_S:-60}" python3 benchmarks/estep_kernel.py --n 1e7 --d 10 \
    --k 32,64 --configs auto,128x4,256x4,512x8 --skip-accuracy
fi
if has em_loop; then  # whole iterations with the kernel, then without it (XLA) at 1e7 x 10
  part em_loop "${LOOP_S:-110}" python3 benchmarks/em_loop.py --n 1e6,1e7 --d 10,1 --k 2,8,16
  part em_loop_xla "${XLA_S:-60}" python3 benchmarks/em_loop.py --n 1e7 --d 10 --k 2,8,16 \
    --kernel 0
fi
# Tests on the GPU, four workers sharing the device's memory (pytest-benchmark, in that image,
# warns under xdist, and its ArviZ warns FutureWarning: the suite's filter would make both
# errors; the NUTS tests need ArviZ's own dependencies, which that image lacks).
if has tests; then
  part tests "${TEST_S:-150}" env XLA_PYTHON_CLIENT_PREALLOCATE=false python3 -m pytest -x \
    -p no:cacheprovider -p no:benchmark -W ignore::FutureWarning -n 4 \
    tests/test_estep_kernel.py tests/test_em.py tests/test_sources.py tests/test_predict.py
fi
if has scale; then
  part scale_gpu "${SCALE_S:-150}" python3 benchmarks/scale.py --libs bayesmix --n 1e6,1e7 \
    --timeout 60 --out "$OUT/scale_gpu.json"
fi
if has precision; then
  part precision "${PREC_S:-40}" env PYTHONPATH="$PWD/benchmarks:$PYTHONPATH" python3 \
    benchmarks/precision.py --n 1e7 --k 8
fi
if has posterior; then
  part posterior_gpu "${POST_S:-140}" python3 benchmarks/posterior.py --problems large \
    --samplers bayesmix,numpyro --timeout 130 --out "$OUT/posterior_gpu.json"
fi
