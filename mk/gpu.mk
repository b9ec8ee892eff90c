# GPU backend (cupy + CUDA C): tests, nvcc compile check, benchmark.
# Without a GPU, test-gpu still runs the nvcc compile checks, the CPU emulation of the quant
# kernels and the cupy-absent paths; the @pytest.mark.gpu tests skip with the reason.
.PHONY: test-gpu check-cuda bench-gpu bench-gpu-quick
test-gpu: install
	$(PY) -m pytest -q -p no:cacheprovider -rs tests/gpu

check-cuda: install
	$(PY) -m trueno.backends.cuda.nvcc sm_80 sm_90

bench-gpu: install
	$(PY) benches/gpu_ops.py

bench-gpu-quick: install
	$(PY) benches/gpu_ops.py --quick

# all of the above plus GPU inference against torch, on a machine with a GPU (logs in $OUT)
.PHONY: gpu-device-check bench-gpu-inference
gpu-device-check:
	bash benches/gpu_device_check.sh

bench-gpu-inference: install
	$(PY) benches/gpu_inference.py
