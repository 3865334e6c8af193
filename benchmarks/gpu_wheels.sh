#!/usr/bin/env bash
# Fetch, on this machine, the wheels the GPU machine lacks (it has no network): optuna and its missing needs, for
# the TPE-16 baseline of the meta-learner's CUDA harness. Run once from the repository root, then name .whl in
# the device run's `carry`; benchmarks/gpu_session.sh installs them when .whl exists. Python 3.12 on that machine.
set -eu
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    optuna==5.0.0 SQLAlchemy==2.1.9 alembic==1.20.1 Mako==1.4.3 colorlog==6.12.0
ls .whl
