#!/usr/bin/env bash
# The GPU check: the Triton kernel's CUDA tests and every GPU benchmark in one run of under 8 minutes, for a lent CUDA
# machine without network (src/vqtoken/benchmarks/gpu_check.py says what runs).
#
#   bash scripts/gpu_check.sh --prepare          # here, with PyPI: download the carried wheels into gpu_wheels/
#   bash scripts/gpu_check.sh OUT                # on the CUDA machine (carry gpu_wheels): results in OUT
#   bash scripts/gpu_check.sh --dry-run OUT      # on a CPU: the same stages at tiny sizes, to check the script
#
# OUT receives summary.md, results.json and log.txt. PYTHON picks the interpreter (default python3: on the GPU machine,
# the one with torch). Exit status: 0 every stage passed, 1 some stage failed or ran out of time, 2 no CUDA device
# (or no wheels, or the install failed).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=gpu_wheels
WHEEL_LIST=scripts/gpu_check_wheels.txt
TOTAL_SECONDS=450      # the whole run, install included: 7.5 minutes
INSTALL_SECONDS=90
MAX_WHEELS_MIB=32      # a lent GPU machine takes at most 64 MiB of files, the checkout included

if [ "${1:-}" = "--prepare" ]; then
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  # pure-Python wheels for the GPU machine's Python 3.12, without their requirements (already there)
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 -d "$WHEELS" \
    -r "$WHEEL_LIST" || { echo "gpu_check --prepare: pip download failed" >&2; exit 2; }
  wheels_kib=$(du -sk "$WHEELS" | cut -f1)
  travelling_kib=$( (git ls-files -z --cached --others --exclude-standard; printf '%s\0' "$WHEELS") \
    | du -ck --files0-from=- 2>/dev/null | tail -1 | cut -f1)
  ls -l "$WHEELS"
  echo "gpu_check --prepare: wheels $((wheels_kib / 1024)) MiB;" \
    "checkout + wheels ~$((travelling_kib / 1024)) MiB (at most 64 may be sent to a lent machine)"
  if [ "$wheels_kib" -gt $((MAX_WHEELS_MIB * 1024)) ]; then
    echo "gpu_check --prepare: the wheels exceed ${MAX_WHEELS_MIB} MiB" >&2
    exit 2
  fi
  echo "Then copy $WHEELS/ along with the checkout and run, on the GPU machine: bash scripts/gpu_check.sh OUT"
  exit 0
fi

MODE_ARGS=()
if [ "${1:-}" = "--dry-run" ]; then
  MODE_ARGS=(--dry-run)
  shift
fi
if [ $# -ne 1 ] || [[ "$1" == -* ]]; then
  sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
OUT=$1
START=$(date +%s)
DEADLINE=$((START + TOTAL_SECONDS))

cuda=$("$PYTHON" -c 'import torch; print(torch.cuda.is_available())' 2>/dev/null)
if [ "$cuda" != True ] && [ "$cuda" != False ]; then
  echo "gpu_check: $PYTHON cannot import torch; set PYTHON to the interpreter that has it." >&2
  exit 2
fi
if [ ${#MODE_ARGS[@]} -eq 0 ] && [ "$cuda" != True ]; then
  echo "gpu_check: no CUDA device is visible to torch ($PYTHON) on $(hostname): nothing was run." \
    "This check needs a CUDA GPU; 'bash scripts/gpu_check.sh --dry-run OUT' exercises it on a CPU." >&2
  exit 2
fi
if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  echo "gpu_check: no wheels in $WHEELS/: run 'bash scripts/gpu_check.sh --prepare' where PyPI is reachable" \
    "and carry $WHEELS to this machine." >&2
  exit 2
fi

mkdir -p "$OUT"
SITE=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_site.XXXXXX")
trap 'rm -rf "$SITE"' EXIT
echo "===== install: the carried wheels and this checkout into $SITE" >>"$OUT/log.txt"
if ! timeout "$INSTALL_SECONDS" "$PYTHON" -m pip install --no-index --no-deps --no-build-isolation --no-compile \
    --no-cache-dir --disable-pip-version-check --target "$SITE" "$WHEELS"/*.whl . >>"$OUT/log.txt" 2>&1; then
  echo "gpu_check: installing the wheels and this checkout failed (see $OUT/log.txt)" >&2
  tail -20 "$OUT/log.txt" >&2
  exit 2
fi
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
echo "[gpu_check] installed in $(( $(date +%s) - START )) s"

# the stages keep to the deadline themselves; this limit only backs them up
timeout --kill-after=15 $((DEADLINE - $(date +%s) + 20)) \
  "$PYTHON" -m vqtoken.benchmarks.gpu_check --out "$OUT" --deadline "$DEADLINE" "${MODE_ARGS[@]}"
status=$?
echo "[gpu_check] finished in $(( $(date +%s) - START )) s, exit status $status"
exit $status
