# hoplab: `make up` installs what is missing and starts the lab; `make test` runs every test.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
HOPLAB := $(VENV)/bin/hoplab
TOPOLOGY ?= topology/lab.yaml
# BACKEND=netns make up: the lab on Mininet namespaces instead of Docker containers.
BACKEND ?=
T := --topology $(TOPOLOGY) $(if $(BACKEND),--backend $(BACKEND))

.PHONY: help setup host host-all up down status clean test test-unit test-e2e test-example example-image render graph bench-up bench-path bench-trace bench-impair bench-load bench-exec bench-ui bench-durability proto load ui fuzz

help:
	@echo "make up | down | status | clean | ui | test | test-unit | test-e2e | test-example | example-image | render | graph | bench-up | bench-path | bench-trace | bench-impair | bench-load | bench-exec | bench-ui | bench-durability | load | fuzz"

setup: host $(VENV)/.installed

host:
	@scripts/setup-host $(or $(BACKEND),docker)

# The end-to-end suite runs on both backends (and the example's own services on netns).
EXAMPLE := examples/own-service
host-all:
	@scripts/setup-host docker netns --services $(EXAMPLE)/services

$(VENV)/.installed: pyproject.toml scripts/setup-venv $(wildcard services/*/service.yaml)
	scripts/setup-venv $(VENV)
	touch $@

up: setup
	$(HOPLAB) up $(T)

down: $(VENV)/.installed
	$(HOPLAB) down $(T)

status: $(VENV)/.installed
	$(HOPLAB) status $(T)

# The lab in a browser, on 127.0.0.1 only (UI_PORT=8350 by default); Ctrl-C stops it.
UI_PORT ?= 8350
ui: $(VENV)/.installed
	$(HOPLAB) ui $(T) --port $(UI_PORT)

clean: $(VENV)/.installed
	$(HOPLAB) clean --all

# Unit tests first; then the end-to-end suite, both backends at once (one pytest-xdist worker
# each; the netns worker runs twins of the topologies, see tests/e2e/helpers.py). Per-test times
# and workers: build/e2e-junit.xml.
E2E := $(PY) -m pytest -q -ra --durations=12 --junitxml=build/e2e-junit.xml -p xdist -n 2 --dist loadgroup tests/e2e

# The worked example (examples/own-service): a team's scenarios through hoplab's pytest plugin
# (entry point pytest11), one backend after the other (the two labs share a name and subnets).
# `make test` runs them inside the end-to-end suite (tests/e2e/test_example.py), each backend's
# in its worker, the netns run on a twin of the topology.
EXAMPLE_TEST = $(PY) -m pytest -q -ra -p no:cacheprovider -p hoplab.pytest_plugin $(EXAMPLE)/tests --hoplab-topology $(EXAMPLE)/notes.yaml
# Its image variant (notes-image.yaml: the API as the team's own image, Docker only): the
# scenarios that cross the image node (trace into it, both replicas behind the balancer); the
# load and the Redis fault are the same on both variants and run above.
EXAMPLE_IMAGE := own-service/notes:1
EXAMPLE_IMAGE_TEST = $(PY) -m pytest -q -ra -p no:cacheprovider -p hoplab.pytest_plugin $(EXAMPLE)/tests \
	--hoplab-topology $(EXAMPLE)/notes-image.yaml --hoplab-backend docker -k "resolves or round_trips or spreads"

# The image variant's image, from the example's own Dockerfile, on the Debian image that any
# `hoplab up` on Docker makes from the host's mirror (no registry is asked; Docker caches the layers).
EXAMPLE_IMAGE_BUILD = { docker image inspect hoplab/debian:bookworm >/dev/null 2>&1 \
	  || { echo "example-image: no hoplab/debian:bookworm yet: any hoplab up on Docker makes it (make up)"; false; }; } \
	&& mkdir -p build/logs && { docker build -t $(EXAMPLE_IMAGE) -f $(EXAMPLE)/image/Dockerfile $(EXAMPLE) \
	  >build/logs/example-image.log 2>&1 || { tail -25 build/logs/example-image.log; false; }; }
example-image:
	@$(EXAMPLE_IMAGE_BUILD)

# The unit tests run beside the end-to-end suite, in one process: the e2e workers mostly wait on
# their labs, so the unit run costs little wall time there. The kernel tracer's real-kernel tests
# tests that make named namespaces (and the tracer's probes) go first and alone: the e2e's host
# checks would see them.
UNIT_ALONE := tests/unit/test_capture.py tests/unit/test_kernel_tracer.py tests/unit/test_sockets.py tests/unit/test_uplink.py tests/unit/test_impair.py
UNIT_BESIDE := $(PY) -m pytest -q -ra -p no:cacheprovider $(addprefix --ignore=,$(UNIT_ALONE)) tests/unit
test: host-all $(VENV)/.installed
	@start=$$(date +%s); mkdir -p build; \
	$(PY) -m pytest -q -ra -p no:cacheprovider $(UNIT_ALONE); first=$$?; \
	$(UNIT_BESIDE) >build/test-unit.log 2>&1 & unit=$$!; \
	$(E2E); e2e=$$?; wait $$unit; units=$$?; \
	echo "== unit tests (run beside the end-to-end suite; build/test-unit.log):"; cat build/test-unit.log; \
	echo "make test: $$(( $$(date +%s) - start )) s wall time (unit alone exit $$first, unit exit $$units, e2e exit $$e2e)"; \
	[ $$first -eq 0 ] && [ $$units -eq 0 ] && [ $$e2e -eq 0 ]

test-example: host-all $(VENV)/.installed
	@start=$$(date +%s); $(EXAMPLE_TEST) --hoplab-backend docker && $(EXAMPLE_IMAGE_BUILD) && $(EXAMPLE_IMAGE_TEST) \
	  && $(EXAMPLE_TEST) --hoplab-backend netns; \
	status=$$?; echo "make test-example: $$(( $$(date +%s) - start )) s wall time (exit $$status)"; exit $$status

test-unit: $(VENV)/.installed
	$(PY) -m pytest -q -ra -p xdist -n 2 tests/unit

test-e2e: host-all $(VENV)/.installed
	@start=$$(date +%s); $(E2E); status=$$?; \
	echo "make test-e2e: $$(( $$(date +%s) - start )) s wall time (exit $$status)"; exit $$status

render: $(VENV)/.installed
	for t in topology/*.yaml; do $(HOPLAB) render --topology $$t; done

graph: $(VENV)/.installed
	$(HOPLAB) graph $(T) -o build/topology.svg

bench-up: host-all $(VENV)/.installed
	$(PY) bench/bench_up.py --topology $(TOPOLOGY)

bench-path: setup
	$(PY) bench/bench_path.py $(T)

bench-exec: setup
	$(PY) bench/bench_exec.py --topology $(TOPOLOGY)

proto: $(VENV)/.installed
	$(PY) -m grpc_tools.protoc -Iproto --python_out=src --grpc_python_out=src --pyi_out=src proto/hoplab/v1/*.proto

bench-trace: setup
	$(PY) bench/bench_trace.py $(T)

# Link impairments: a delay's accuracy on the client's ping, and the NFQUEUE delayer's cost at load.
bench-impair: setup
	$(PY) bench/bench_impair.py $(T)

load: setup
	$(HOPLAB) load $(T) $(LOAD_ARGS)

bench-load: setup
	$(PY) bench/bench_load.py $(T)

# The web UI in headless Chromium: the lab page's first render, a visit's trace drawn (medians of 5).
bench-ui: setup
	$(PY) bench/bench_ui.py $(T)

# Orders through the shop while the db, a web replica and the mail node are each SIGKILLed once:
# every acknowledged order stored, every stored order mailed exactly once (exit 1 otherwise).
# DURABILITY_ARGS="--time 90 --users 8"; BACKEND=netns runs it on the netns backend.
bench-durability: setup
	$(PY) bench/bench_durability.py --topology $(TOPOLOGY) --backend $(or $(BACKEND),docker) $(DURABILITY_ARGS)

# Coverage-guided fuzzing (atheris): raw frames through the packet decoder and topology files
# through the loader, a million inputs between them, from seeds of tests/data/captures and the
# topology files; several minutes, so not part of `make test` (test_fuzz_seeds.py runs the seeds).
fuzz: $(VENV)/.installed
	$(PY) fuzz/run.py $(FUZZ_ARGS)
