# Compute core (ops, dispatch, numpy + numba backends): tests, kernel warmup, benches.
.PHONY: test-core warmup bench-core bench-core-quick bench-thresholds
test-core: install
	$(PY) -m pytest -q -p no:cacheprovider tests/ops tests/backends tests/test_dispatch.py \
		tests/test_import.py tests/cli/test_info.py

# compile every numba kernel (float32 + float64) into numba's on-disk cache
warmup: install
	$(PY) -c "import trueno; trueno.warmup()"

bench-core: install
	$(PY) benches/vector_ops.py
	$(PY) benches/matrix_ops.py
	$(PY) benches/tracer_overhead.py

bench-core-quick: install
	$(PY) benches/vector_ops.py --quick
	$(PY) benches/matrix_ops.py --quick
	$(PY) benches/tracer_overhead.py

# prints the THRESHOLDS table for trueno/dispatch.py
bench-thresholds: install
	$(PY) benches/dispatch_thresholds.py
