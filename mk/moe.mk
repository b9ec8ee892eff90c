# Mixture of experts (mixtral, qwen3moe): tests against transformers, the MoE-vs-dense bench.
.PHONY: test-moe bench-moe

test-moe: install
	$(PY) -m pytest -q -p no:cacheprovider tests/llm/test_moe.py

bench-moe: install
	$(PY) benches/moe.py
