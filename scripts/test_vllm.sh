#!/usr/bin/env bash
# Runs the vLLM plugin tests (tests/test_vllm_*.py) in .venv-vllm (build it with scripts/setup_vllm.sh).
# vLLM's CPU build wants Intel's OpenMP preloaded; the tests run the engine in-process with a 1 GiB KV cache.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-vllm
if [ ! -x "$VENV/bin/python" ]; then
  echo "No $VENV: run scripts/setup_vllm.sh first." >&2
  exit 1
fi
export LD_PRELOAD="$PWD/$VENV/lib/libiomp5.so${LD_PRELOAD:+:$LD_PRELOAD}"
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
export VLLM_ENABLE_V1_MULTIPROCESSING=${VLLM_ENABLE_V1_MULTIPROCESSING:-0}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_vllm_*.py "$@"
