#!/usr/bin/env bash
# The prepared run for a GPU machine, in order of what matters most should time run short: install, every
# kernel configuration checked and timed alone, the GPU check (1000 digits steps first, through fit() with the
# fastest multi-step configuration just measured), then the CUDA tests.
# then the pytest-benchmark suites, and last the meta-learner's harness on CUDA (issue 5's 20x target; its TPE-16
# baseline needs optuna, carried as wheels in .whl: see benchmarks/gpu_wheels.sh).
# About 10 minutes on an H100/H200 (stage limits: KC_S, GC_S, TEST_S, BENCH_S, META_S seconds):
#     OUT=/some/dir bash benchmarks/gpu_session.sh
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-build-isolation -e . >/tmp/install.log 2>&1 || { tail -20 /tmp/install.log; exit 1; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv,noheader
timeout ${KC_S:-200} python3 -m benchmarks.kernel_configs --focus --out "$OUT" >"$OUT/kernel_configs.log" 2>&1
grep -A12 "^Multi-step kernel" "$OUT/kernel_configs.log"
BEST=$(python3 - "$OUT" <<'PY'
import json, sys
from metahp_fast.kernels.fused_mlp_multistep import CONFIGS
from benchmarks.kernel_configs import multistep_name
try:
    rows = [r for r in json.load(open(sys.argv[1] + "/kernel_configs.json"))["multistep_rows"]
            if r.get("ok") and r["case"].endswith("sgd-K4096")]
    best = min(rows, key=lambda r: r["run_s"])["config"]
    print(next(i for i, c in enumerate(CONFIGS) if multistep_name(c) == best))
except Exception:
    print(0)
PY
)
echo "multi-step configuration for fit(): $BEST"
timeout ${GC_S:-150} python3 -m benchmarks.gpu_check --sections thousand,device,timing,check --budget-s $(( ${GC_S:-150} - 25 )) \
    --multistep-config "$BEST" --out "$OUT" >"$OUT/gpu_check.log" 2>&1
grep -A10 "^## Digits, 1000" "$OUT/gpu_check.log"
grep -A6 "^## Issue 3 targets" "$OUT/gpu_check.log" | head -6
# the multi-step tests first (the newest code), then the others
{ timeout ${TEST_S:-100} python3 -m pytest -q -p no:cacheprovider tests/test_triton_cuda.py -k multistep
  timeout ${TEST_S:-100} python3 -m pytest -q -p no:cacheprovider tests/test_triton_cuda.py -k "not multistep"
} >"$OUT/cuda_tests.txt" 2>&1
grep -E "passed|failed|error|Error|assert" "$OUT/cuda_tests.txt" | tail -15
# last: the pytest-benchmark suites themselves (torch.compile left out: it recompiles every shape), if the
# machine has pytest-benchmark
if python3 -c "import pytest_benchmark" 2>/dev/null; then
  METAHP_BENCH_SECONDS=${BENCH_SECONDS:-0.5} timeout ${BENCH_S:-90} python3 -m pytest -q -p no:cacheprovider \
      --benchmark-only benchmarks/ -k "not compile" --benchmark-json "$OUT/pytest_benchmark.json" \
      >"$OUT/pytest_benchmark.txt" 2>&1
  grep -A40 "candidate-steps per second (median round)" "$OUT/pytest_benchmark.txt" | head -40
else
  echo "pytest-benchmark is not installed here: suites not run" | tee "$OUT/pytest_benchmark.txt"
fi
# last: the meta-learner on the held-out datasets, trained on the GPU (TPE-16 only where optuna could be installed)
(
  if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
  fi
  # one kernel configuration: the harness times whole tuning runs, and autotuning each new shape inside them
  # would time compilation and benchmarking instead of tuning
  METAHP_TRITON_AUTOTUNE=0 timeout ${META_S:-90} python3 benchmarks/quality.py --meta --device cuda --threads 4 \
      --out "$OUT/meta" >"$OUT/meta_quality.log" 2>&1
  grep -A9 "^| method" "$OUT/meta/meta_quality.md" 2>/dev/null || tail -5 "$OUT/meta_quality.log"
)
