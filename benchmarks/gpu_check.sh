#!/usr/bin/env bash
# The GPU check in one call, from the source tree: nothing installed, no network.
#
#   bash benchmarks/gpu_check.sh [OUT] [--work-dir DIR] [--budget-s S] [--smoke]
#
# OUT (default gpu-check/) gets results.md, results.json, gpu-check.log, pytest-gpu.log and
# report.tar.gz; the run stores and the report folder go to --work-dir (default OUT).
# Data: the four Fashion-MNIST .gz files in data/fashion-mnist/ (Debian's
# /usr/share/datasets/fashion-mnist/ is found too). On the device tool (a bare image, offline):
#   run(carry=["data/fashion-mnist"],
#       command="bash benchmarks/gpu_check.sh $OUT/gpu-check --work-dir /tmp/gpu-check")
# --smoke: CPU, 128 train / 64 test images, 2 epochs, no CUDA tests (CI runs it).
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# The report draws off-screen; the image has no display.
export MPLBACKEND="${MPLBACKEND:-Agg}"
exec "$PYTHON" -m benchmarks.gpu_check "$@"
