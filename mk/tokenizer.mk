# LLM tokenizer: llama.cpp vocab vectors, registry-model references, pre-tokenizer checks.
.PHONY: test-tokenizer
test-tokenizer: install
	$(PY) -m pytest -q -p no:cacheprovider -rs tests/llm/test_tokenizer.py tests/llm/test_pretokenize.py
