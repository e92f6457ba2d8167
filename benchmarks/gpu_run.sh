#!/usr/bin/env bash
# All GPU checks of the project in ONE call (the GPU machine has PyTorch, torchvision, NumPy, SciPy,
# scikit-image, Pillow, but not segment-anything, torchcam or pydantic: they travel as wheels in .whl/).
#
# Prepare once on the development machine (pure-Python wheels except pydantic-core, for Python 3.12):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
#       torchcam==0.5.0 segment-anything==1.0
# Then run this script on the GPU machine from the repository root, carrying .whl; results go to $OUT
# (default ./gpu_out): throughput.json and the CUDA tests' output.
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_run.sh: installing the carried wheels failed"; exit 1; }
export PYTHONPATH=/tmp/site:src
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])" | tee -a "$OUT/gpu.txt"
# 1. the CUDA tests (skipped on machines without a GPU)
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/segmenters/test_sam_cuda.py tests/classifiers/test_classifier_train.py -k "cuda" 2>&1 | tail -n 15 | tee "$OUT/cuda_tests.txt"
# 2. throughput: SamPredictor loop vs the pipeline path, equivalence, end to end (ViT-B, ViT-L, ViT-H)
timeout 420 python3 benchmarks/throughput.py --models "${MODELS:-vit_l,vit_b,vit_h}" --out "$OUT/throughput.json" \
    2>&1 | grep -v Warning | tee "$OUT/throughput.txt"
