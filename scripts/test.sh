#!/usr/bin/env bash
# Checks the code with ruff (lint and format), runs the test suite on the newest supported transformers, then the
# model, processor, loading, generate, pipeline, remote-code and transformers' own common model tests again on the oldest
# supported one (installed beside the venv, not into it).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
OLDEST_TRANSFORMERS=5.18.0
python -m ruff check .
python -m ruff format --check .
python -m pytest -q "$@"
OLDEST_DIR=.venv-transformers-$OLDEST_TRANSFORMERS
if [ ! -d "$OLDEST_DIR/transformers" ]; then
  python -m pip install --quiet --no-deps --target "$OLDEST_DIR" "transformers==$OLDEST_TRANSFORMERS"
fi
echo "--- again on transformers $OLDEST_TRANSFORMERS"
PYTHONPATH="$PWD/$OLDEST_DIR" python -m pytest -q tests/test_configuration.py tests/test_modeling.py \
  tests/test_loading.py tests/test_generate.py tests/test_pipeline.py tests/test_auto_and_remote_code.py \
  tests/test_transformers_model_tests.py \
  "$@"
