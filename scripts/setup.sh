#!/usr/bin/env bash
# Creates .venv and installs VQToken with its test and benchmark extras. Safe to run again.
# VQTOKEN_VENV and VQTOKEN_EXTRAS choose another environment and extras (scripts/setup_eval.sh: .venv-eval with `eval,dev`).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VQTOKEN_VENV:-.venv}
EXTRAS=${VQTOKEN_EXTRAS:-dev}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install --quiet --upgrade pip
# torch and torchvision first, pinned: the LLaVA-OneVision video processor needs torchvision,
# and an unpinned torch would pull a newer multi-GB build.
python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
python -m pip install --quiet -e ".[$EXTRAS]"
