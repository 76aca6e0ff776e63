#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one short run on a CUDA machine that has torch,
# scikit-image and scipy but not this project's other dependencies (nor any network access).
#
# Beforehand, on a machine with pip and the Colin27 files installed (repository root):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl nibabel==5.4.2
#   mkdir -p .gpudata && cp /usr/share/mricron/templates/{ch2.nii.gz,aal.nii.gz} .gpudata/
# Then, on the GPU machine, from the repository root: OUT=bench-out/gpu bash benchmarks/gpu_session.sh
# Each part has its own time limit and writes its results as it goes, so a part cut short still reports.
set -u -o pipefail
OUT=${OUT:-bench-out/gpu}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 NAPARI_ACTION_MRICRON="$PWD/.gpudata"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch, skimage, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'skimage', skimage.__version__, 'numpy', numpy.__version__)"
    nproc
} 2>&1 | tee "$OUT/machine.txt"

# 1. Steps per second, peak memory, stage iii against supervised, both presets, AMP on and off.
(cd benchmarks && timeout 170 python3 gpu.py --steps 40 --warmup 10 --json "$OUT/gpu_speed.json") 2>&1 | tee "$OUT/gpu_speed.log"
# 2. What a user sees: the cpu preset to its end, Dice every 10 s of training, 3 seeds, ACTION and supervised.
(cd benchmarks && timeout 250 python3 gpu.py --skip-speed --timeline "$OUT/gpu_timeline.json") 2>&1 | tee "$OUT/gpu_timeline.log"
# 3. README command 1's demo on the GPU, end to end (train, predict, NIfTI export, overlay).
start=$(date +%s)
timeout 110 python3 -m napari_action.cli.main demo --device cuda --out-dir /tmp/demo 2>&1 | tail -n 15 | tee "$OUT/demo.log"
echo "demo wall: $(( $(date +%s) - start )) s" | tee -a "$OUT/demo.log"
cp /tmp/demo/overlay.png "$OUT/" 2>/dev/null || true
