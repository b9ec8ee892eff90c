#!/usr/bin/env bash
# Every GPU check of issue 6 in one run, for a lent GPU machine (the image has cupy, torch,
# transformers, accelerate, numba, pytest, hypothesis; trueno runs from this checkout):
#   1. the GPU test suite (tests/gpu, the runtime stand-in tests, the real-model tests when
#      the model packages are installed),
#   2. benches/gpu_ops.py --quick: op parity, CPU<->GPU crossovers (GPU_THRESHOLDS), quantized
#      matvec GB/s against the card's copy bandwidth, torch f16 matvecs,
#   3. benches/gpu_inference.py: decode tok/s of both models' shapes, trueno vs torch.
# Logs go to $OUT (the device tool's folder) or /tmp/trueno-gpu-check.
#
# gguf-py (tests and the torch baseline's GGUF loader) is not in that image: download its wheel
# here first, into .whl/ (git-ignored through .git/info/exclude), and carry .whl:
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl gguf
set -u -o pipefail
OUT=${OUT:-/tmp/trueno-gpu-check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD" PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="/tmp/site:$PWD"
fi
python3 -c "import gguf" 2>/dev/null || {
    echo "gguf-py is missing: download its wheel into .whl/ and carry .whl (see the header)" >&2
    exit 2
}
status=0
{ nvidia-smi -L; python3 -c "import cupy, torch; print('cupy', cupy.__version__, 'torch', torch.__version__)"; } \
    2>&1 | tee "$OUT/card.txt"
python3 -m pytest -q -rs -p no:cacheprovider -o addopts= tests/gpu tests/llm/test_runtime.py \
    tests/llm/test_real_models.py 2>&1 | tee "$OUT/test_gpu.log" || status=1
python3 benches/gpu_ops.py --quick 2>&1 | tee "$OUT/gpu_ops.log" || status=1
python3 benches/gpu_inference.py --tokens 64 --runs 3 --json "$OUT/gpu_inference.json" \
    --cache /tmp/trueno-standin 2>&1 | tee "$OUT/gpu_inference.log" || status=1
exit $status
