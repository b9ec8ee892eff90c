# GGUF format layer: the long reader fuzz (CI runs the same test with 1000 cases).
FUZZ_CASES ?= 10000
.PHONY: fuzz
fuzz: install
	TRUENO_FUZZ_CASES=$(FUZZ_CASES) $(PY) -m pytest -q -s -p no:cacheprovider tests/gguf/test_fuzz.py
