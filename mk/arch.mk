# Architectures beyond llama/qwen2/gemma3 (qwen3, gemma2, granite, olmo2, phi3, smollm3 and
# the MoE mixtral, qwen3moe): their tests against transformers, the server over each, and the
# same models written by llama.cpp's own convert_hf_to_gguf.py (the slow tests: one converter
# run per file). The converter comes from the llama-cpp-python 0.3.36 sdist, fetched by pip
# into the venv unless TRUENO_LLAMA_CPP names a llama.cpp source tree already.
.PHONY: test-arch
LLAMA_CPP_SDIST := llama-cpp-python==0.3.36
LLAMA_CPP_SRC := $(VENV)/llama.cpp
TRUENO_LLAMA_CPP ?= $(LLAMA_CPP_SRC)
export TRUENO_LLAMA_CPP

$(LLAMA_CPP_SRC)/convert_hf_to_gguf.py: | $(STAMP)
	rm -rf $(VENV)/sdist $(LLAMA_CPP_SRC)
	$(PIP) download -q --no-deps --no-binary :all: -d $(VENV)/sdist $(LLAMA_CPP_SDIST)
	mkdir -p $(LLAMA_CPP_SRC)
	tar -xzf $(VENV)/sdist/llama_cpp_python-*.tar.gz -C $(LLAMA_CPP_SRC) --strip-components=3 \
		--wildcards '*/vendor/llama.cpp/convert_hf_to_gguf.py' \
		'*/vendor/llama.cpp/conversion' '*/vendor/llama.cpp/gguf-py'
	rm -rf $(VENV)/sdist

# CI passes ARCH_MARK=slow: make test ran the rest
ARCH_MARK ?= slow or not slow
test-arch: install $(if $(wildcard $(TRUENO_LLAMA_CPP)/convert_hf_to_gguf.py),,$(LLAMA_CPP_SRC)/convert_hf_to_gguf.py)
	$(PY) -m pytest -q -p no:cacheprovider -m "$(ARCH_MARK)" tests/llm/test_architectures.py \
		tests/llm/test_moe.py tests/serve/test_serve_archs.py
