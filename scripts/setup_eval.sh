#!/usr/bin/env bash
# Creates .venv-eval: VQToken with lmms-eval (the `eval` extra) and the test tools, apart from .venv, because
# lmms-eval 0.7.3 needs older av and filelock than the default install. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv-eval/bin/python ] || "$PYTHON" -m venv .venv-eval
. .venv-eval/bin/activate
python -m pip install --quiet --upgrade pip
# the same pinned torch and torchvision as scripts/setup.sh (pip takes them from the local wheels when it has them)
python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
python -m pip install --quiet -e ".[eval,dev]"
