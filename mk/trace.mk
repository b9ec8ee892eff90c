# Tracing and profiling targets (issue 5). Included by the Makefile; uses $(PY) and `install`.
#   make golden            re-capture every example's golden trace (golden_traces/)
#   make golden-check      re-run the examples and compare with the goldens (CI)
#   make profile           the benches under the tracer, per-op summary (build/profile/)
#   make profile-flamegraph                  flame.svg of the benches' self time
#   make profile-bench BENCH=vector_ops [BENCH_ARGS=--quick]   one bench under the tracer
#   make profile-test [PROFILE_TESTS=tests/ops]  the test suite under the tracer
#   make profile-otlp-jaeger / -tempo        export to Jaeger / Tempo in docker
#   make profile-otlp-phoenix [PHOENIX_BENCHES="vector_ops"] [BENCH_ARGS=--quick]
#                          no docker: Arize Phoenix (its own venv under build/) receives the
#                          benches' traces; UI and REST API on :$(PHOENIX_PORT)
#   make test-phoenix      the slow test: spans read back from a real Phoenix (CI runs it)
#   make profile-compare BASELINE=a.json CURRENT=b.json
PY ?= .venv/bin/python
TRACE := $(PY) -m trueno trace
EXAMPLES := backend_detection matrix_operations activation_functions performance_demo \
	ml_similarity symmetric_eigen quickstart generate dask_ops
BENCH ?= vector_ops
BENCH_ARGS ?=
PROFILE_DIR ?= build/profile
PROFILE_TESTS ?= tests
OTLP_HTTP ?= http://localhost:4318
PHOENIX_VENV ?= build/phoenix-venv
PHOENIX_DIR ?= build/phoenix
PHOENIX_PORT ?= 6006
PHOENIX_URL := http://127.0.0.1:$(PHOENIX_PORT)
PHOENIX_BENCHES ?= $(filter-out _%,$(notdir $(basename $(wildcard benches/*.py))))

.PHONY: golden golden-check profile profile-flamegraph profile-bench profile-test \
	profile-otlp-jaeger profile-otlp-tempo profile-otlp-phoenix test-phoenix profile-compare

golden: install
	@for ex in $(EXAMPLES); do \
		$(TRACE) golden capture $$ex --update -- examples/$$ex.py || exit 1; \
	done

golden-check: install
	$(TRACE) golden check

profile: install
	@mkdir -p $(PROFILE_DIR)
	@set -e; for b in benches/*.py; do case $$b in */_*) continue;; esac; \
		n=$$(basename $$b .py); \
		$(TRACE) run --syscalls off -o $(PROFILE_DIR)/$$n.json -- $$b; \
		$(TRACE) summary $(PROFILE_DIR)/$$n.json --limit 25; \
	done

profile-bench: install
	@mkdir -p $(PROFILE_DIR)
	$(TRACE) run -o $(PROFILE_DIR)/$(BENCH).json -- benches/$(BENCH).py $(BENCH_ARGS)
	$(TRACE) summary $(PROFILE_DIR)/$(BENCH).json --limit 40

profile-flamegraph: install
	@mkdir -p $(PROFILE_DIR)
	$(TRACE) run --syscalls off -o $(PROFILE_DIR)/$(BENCH).json -- benches/$(BENCH).py $(BENCH_ARGS)
	$(TRACE) flamegraph $(PROFILE_DIR)/$(BENCH).json -o flame.svg
	@echo "flame.svg: open it in a browser (hover a frame for its self time)"

profile-test: install
	@mkdir -p $(PROFILE_DIR)
	-$(TRACE) run --syscalls off -o $(PROFILE_DIR)/tests.json -- $(PY) -m pytest -q -x -p no:cacheprovider $(PROFILE_TESTS)
	$(TRACE) summary $(PROFILE_DIR)/tests.json --limit 40

# Docker collectors: when docker cannot run here these targets say so and exit 1 (nothing was
# exported); point `trueno trace run --otlp-endpoint URL -- CMD` at any running collector.
define no_docker
	echo "profile-otlp: docker cannot run here ('docker info' failed: no daemon or no" \
		"permission). Without docker: 'make profile-otlp-phoenix' (Arize Phoenix, a" \
		"pip-installed OTLP receiver with a trace UI, in its own venv under build/)." >&2; \
	echo "Or start a collector elsewhere and export with:" >&2; \
	echo "  $(TRACE) run --otlp-endpoint http://HOST:4318 -- examples/quickstart.py" >&2; \
	exit 1
endef

# Phoenix: installed once into $(PHOENIX_VENV) (trueno's venv stays untouched), started in the
# background unless something already answers on $(PHOENIX_PORT); it keeps running for the UI.
$(PHOENIX_VENV)/bin/phoenix:
	$(PYTHON) -m venv $(PHOENIX_VENV)
	$(PHOENIX_VENV)/bin/python -m pip install -q arize-phoenix

# the slow test that starts Phoenix and reads the span tree back through its REST API
# (run by CI; TRUENO_PHOENIX makes a missing Phoenix a failure, not a skip)
test-phoenix: install $(PHOENIX_VENV)/bin/phoenix
	TRUENO_PHOENIX=$(abspath $(PHOENIX_VENV))/bin/phoenix \
		$(PY) -m pytest -q -p no:cacheprovider -m slow tests/trace/test_phoenix.py

profile-otlp-phoenix: install $(PHOENIX_VENV)/bin/phoenix
	@mkdir -p $(PROFILE_DIR) $(PHOENIX_DIR)
	@if ! $(PY) mk/wait_http.py $(PHOENIX_URL)/healthz 0 2>/dev/null; then \
		PHOENIX_PORT=$(PHOENIX_PORT) PHOENIX_HOST=127.0.0.1 \
		PHOENIX_WORKING_DIR=$(abspath $(PHOENIX_DIR)) \
		nohup $(PHOENIX_VENV)/bin/phoenix serve > $(PHOENIX_DIR)/phoenix.log 2>&1 & \
		echo $$! > $(PHOENIX_DIR)/phoenix.pid; \
		echo "starting Phoenix (pid $$(cat $(PHOENIX_DIR)/phoenix.pid), log $(PHOENIX_DIR)/phoenix.log)"; \
		$(PY) mk/wait_http.py $(PHOENIX_URL)/healthz 180 $(PHOENIX_DIR)/phoenix.log; \
	fi
	@set -e; for n in $(PHOENIX_BENCHES); do \
		$(TRACE) run --syscalls off --service-name trueno-benches --otlp-endpoint $(PHOENIX_URL) \
			-o $(PROFILE_DIR)/$$n.json -- benches/$$n.py $(BENCH_ARGS); \
	done
	@echo "Phoenix UI: $(PHOENIX_URL)  (project 'default')"
	@echo "query: curl '$(PHOENIX_URL)/v1/projects/default/spans?limit=20'"
	@echo "stop:  kill \$$(cat $(PHOENIX_DIR)/phoenix.pid)"

profile-otlp-jaeger: install
	@if ! docker info >/dev/null 2>&1; then $(no_docker); fi
	@docker rm -f trueno-jaeger >/dev/null 2>&1 || true
	docker run -d --name trueno-jaeger -e COLLECTOR_OTLP_ENABLED=true \
		-p 16686:16686 -p 4317:4317 -p 4318:4318 jaegertracing/all-in-one:latest
	@sleep 3
	$(TRACE) run --service-name trueno-examples --otlp-endpoint $(OTLP_HTTP) \
		-o $(PROFILE_DIR)/otlp.json -- examples/matrix_operations.py
	@echo "Jaeger UI: http://localhost:16686  (service trueno-examples)"
	@echo "query: curl 'http://localhost:16686/api/traces?service=trueno-examples&limit=5'"

profile-otlp-tempo: install
	@if ! docker info >/dev/null 2>&1; then $(no_docker); fi
	@mkdir -p $(PROFILE_DIR)
	@printf 'server:\n  http_listen_port: 3200\ndistributor:\n  receivers:\n    otlp:\n      protocols:\n        http:\n          endpoint: 0.0.0.0:4318\n        grpc:\n          endpoint: 0.0.0.0:4317\nstorage:\n  trace:\n    backend: local\n    local:\n      path: /tmp/tempo/blocks\n    wal:\n      path: /tmp/tempo/wal\n' > $(PROFILE_DIR)/tempo.yaml
	@docker rm -f trueno-tempo >/dev/null 2>&1 || true
	docker run -d --name trueno-tempo -v $(abspath $(PROFILE_DIR))/tempo.yaml:/etc/tempo.yaml \
		-p 3200:3200 -p 4317:4317 -p 4318:4318 grafana/tempo:latest -config.file=/etc/tempo.yaml
	@sleep 5
	$(TRACE) run --service-name trueno-examples --otlp-endpoint $(OTLP_HTTP) \
		-o $(PROFILE_DIR)/otlp.json -- examples/matrix_operations.py
	@echo "Tempo API: http://localhost:3200  (add it as a Tempo data source in Grafana)"
	@echo "query: curl -G http://localhost:3200/api/search --data-urlencode 'tags=service.name=trueno-examples'"

profile-compare: install
	@test -n "$(BASELINE)" -a -n "$(CURRENT)" || { \
		echo "usage: make profile-compare BASELINE=base.json CURRENT=cur.json" \
		"(traces from 'trueno trace run --repeat 5 ...')" >&2; exit 2; }
	$(TRACE) compare $(BASELINE) $(CURRENT)
