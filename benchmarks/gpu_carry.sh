#!/usr/bin/env bash
# What benchmarks/gpu_check.py needs on a GPU machine that reaches no package registry
# and has none of the development machine's files: Snakemake and the packages it needs
# that such a machine lacks, as wheels for its Python, and MNIST compressed.
#
#   bash benchmarks/gpu_carry.sh [DATA_DIR] [PYTHON_VERSION]
#
# writes .gpu_carry/wheels/*.whl and .gpu_carry/data/MNIST/raw/*.gz (git-ignored; about
# 45 MB). On the GPU machine, from the checkout:
#
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu_carry/wheels/*.whl
#   PYTHONPATH=/tmp/site python3 benchmarks/gpu_check.py --data-dir .gpu_carry/data
#
# The versions are this checkout's pins (pyproject.toml) and what Snakemake 9.27.1 needs;
# torch, numpy, pandas, seaborn, pyyaml and the rest come from the GPU machine's own
# Python (gpu_check.py needs no particular torch).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR="${1:-../shared/data}"
PY="${2:-3.12}"
OUT=.gpu_carry
mkdir -p "$OUT/wheels" "$OUT/data/MNIST/raw"

# Snakemake 9.27.1 and what it needs beyond a typical CUDA image with PyTorch, pandas,
# seaborn, PyYAML, requests, psutil, jinja2 (the image the device README describes).
WHEELS=(
    snakemake==9.27.1 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
    referencing==0.37.0 rpds-py==2026.9.1 annotated-types==0.8.0
    argparse-dataclass==2.0.0 conda-inject==1.3.2 configargparse==1.9.0
    connection-pool==0.0.3 docutils==0.22.4 dpath==2.2.0 fastjsonschema==2.22.3
    gitdb==4.0.12 gitpython==3.2.1 greenlet==3.5.6 humanfriendly==10.0 immutables==0.21
    jupyter-core==5.9.1 nbformat==5.11.1 platformdirs==4.14.9 pulp==3.3.2
    pydantic==2.14.4 pydantic-core==2.50.5 smart-open==7.7.1 smmap==5.0.3
    snakemake-interface-common==1.23.0 snakemake-interface-executor-plugins==9.4.0
    snakemake-interface-logger-plugins==2.1.0 snakemake-interface-report-plugins==1.3.0
    snakemake-interface-scheduler-plugins==2.0.2 snakemake-interface-storage-plugins==4.4.1
    sqlalchemy==2.0.58 sqlmodel==0.0.37 tenacity==9.2.1 throttler==1.2.3 traitlets==5.16.1
    typing-inspection==0.4.5 yte==1.9.4
)
for wheel in "${WHEELS[@]}"; do
    if ! python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PY" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
        --platform manylinux_2_24_x86_64 --platform manylinux_2_5_x86_64 --platform any \
        -d "$OUT/wheels" "$wheel" 2>/dev/null; then
        # published as source only (pure Python, e.g. connection-pool): build its wheel here
        python3 -m pip wheel --quiet --no-deps -w "$OUT/wheels" "$wheel"
    fi
done

# MNIST, compressed (gpu_check.py decompresses it into its own data folder).
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    gzip -n -c "$DATA_DIR/MNIST/raw/$f" > "$OUT/data/MNIST/raw/$f.gz"
done
du -sh "$OUT"
