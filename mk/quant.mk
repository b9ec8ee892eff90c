# GGML quant kernels: tests, the portable path alone, and the bandwidth bench.
.PHONY: test-quant test-quant-portable bench-quant bench-quant-quick bench-quant-batched
test-quant: install
	$(PY) -m pytest -q -p no:cacheprovider tests/quant

test-quant-portable: install
	TRUENO_QUANT_ISA=portable $(PY) -m pytest -q -p no:cacheprovider tests/quant

bench-quant: install
	$(PY) benches/quant_ops.py

bench-quant-quick: install
	$(PY) benches/quant_ops.py --quick

bench-quant-batched: install
	$(PY) benches/quant_batched.py
