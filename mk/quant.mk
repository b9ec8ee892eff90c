# GGML quant kernels: tests, the portable path alone, and the bandwidth bench.
.PHONY: test-quant test-quant-portable bench-quant bench-quant-quick
test-quant: install
	$(PY) -m pytest -q -p no:cacheprovider tests/quant

test-quant-portable: install
	TRUENO_QUANT_SIMD=0 $(PY) -m pytest -q -p no:cacheprovider tests/quant

bench-quant: install
	$(PY) benches/quant_ops.py

bench-quant-quick: install
	$(PY) benches/quant_ops.py --quick
