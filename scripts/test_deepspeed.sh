#!/usr/bin/env bash
# Runs the multi-process training tests with DeepSpeed ZeRO-2 on 2 CPU processes. DeepSpeed goes into
# .venv-deepspeed, which sees .venv's packages (run scripts/setup.sh first) and leaves .venv untouched. The first run
# also compiles DeepSpeed's CPU communication op (a few minutes, cached in ~/.cache/torch_extensions).
set -euo pipefail
cd "$(dirname "$0")/.."
DEEPSPEED_VERSION=0.19.8
if [ ! -x .venv-deepspeed/bin/python ]; then
  .venv/bin/python -m venv .venv-deepspeed
  # every package folder .venv sees, including those its own .pth files add
  .venv/bin/python -c "import sys; print('\n'.join(p for p in sys.path if p.endswith('-packages')))" \
    > "$(.venv-deepspeed/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/zz_venv.pth"
fi
if ! .venv-deepspeed/bin/python -c "import torch, accelerate, transformers" 2>/dev/null; then
  echo ".venv-deepspeed does not see torch, accelerate and transformers from .venv: run scripts/setup.sh first." >&2
  exit 1
fi
.venv-deepspeed/bin/python -m pip install --quiet "deepspeed==$DEEPSPEED_VERSION"
.venv-deepspeed/bin/python -m pip install --quiet --no-deps -e .
DS_ACCELERATOR=cpu .venv-deepspeed/bin/python -m pytest -q tests/test_distributed_training.py -k deepspeed "$@"
