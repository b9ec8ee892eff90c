# Architectures beyond llama/qwen2/gemma3: the tiny transformers models of every family, and
# the same models written by llama.cpp's own convert_hf_to_gguf.py (slow: one converter run).
.PHONY: test-arch
test-arch: install
	$(PY) -m pytest -q -p no:cacheprovider -m "slow or not slow" tests/llm/test_architectures.py
