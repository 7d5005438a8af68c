#!/usr/bin/env bash
# Training steps of every method on one GPU, in under two minutes: examples/s per method and
# stage, and the achieved FLOP/s as a fraction of the GPU's measured matmul rate.
#
#   benchmarks/gpu.sh [--size=full|default|tiny] [other flags of benchmarks.training]
#
# --size=full (the default) is the paper's AlexNet at 227x227 with 205 categories. The same
# command runs on a CPU, just slower: use --size=tiny there (a few seconds per method).
# Python: $PYTHON, else the checkout's .venv, else python3. Results:
# benchmarks/results/gpu_<size>.json unless --out is given.
set -euo pipefail
cd "$(dirname "$0")/.."

size=full
for arg in "$@"; do
  case "$arg" in
    --size=*) size="${arg#--size=}" ;;
  esac
done
if [[ -n "${PYTHON:-}" ]]; then
  python="$PYTHON"
elif [[ -x .venv/bin/python ]]; then
  python=.venv/bin/python
else
  python=python3
fi

# One GPU: the first, unless CUDA_VISIBLE_DEVICES already chooses.
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"

# Building and tracing the seven distinct stage steps takes most of the time: the budget
# stops building new ones at 80% of it and ends the timed rounds at 95 s, so the whole
# command (with TensorFlow's start) stays under two minutes; anything skipped is listed.
exec "$python" -m benchmarks.training --size="$size" --steps=5 --rounds=3 \
  --time_budget_s=95 --out="benchmarks/results/gpu_${size}.json" "$@"
