#!/usr/bin/env bash
# Runs the tests of the lmms-eval plugin in .venv-eval (made by scripts/setup_eval.sh): vqtoken_hf run by lmms-eval on
# tiny offline tasks, the TokDense summary, and the video reader on the PyAV that lmms-eval pins (av<16; the four
# rotation tests are left out there: their fixture writes the rotation with PyAV 16's API).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv-eval/bin/activate
python -m pytest -q tests/test_lmms_eval.py tests/test_token_density.py "$@"
echo "--- the video reader on av $(python -c 'import av; print(av.__version__)')"
python -m pytest -q tests/test_video_io.py -k "not rotation_display_matrix" "$@"
