#!/usr/bin/env bash
# Creates .venv-eval: VQToken with lmms-eval (the `eval` extra) and the test tools, apart from .venv, because
# lmms-eval 0.7.3 needs older av and filelock than the default install. Safe to run again.
set -euo pipefail
VQTOKEN_VENV=.venv-eval VQTOKEN_EXTRAS=eval,dev exec bash "$(dirname "$0")/setup.sh"
