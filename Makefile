# Development commands. `make run` and `make test` set everything up first.
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8188
PYTEST_ARGS ?=

.PHONY: setup system run test lint screenshots comfy-suite

setup:
	bash scripts/setup.sh

system:
	bash scripts/system-packages.sh

run: setup
	$(PY) -m tenancy demo --base-dir run --url http://$(HOST):$(PORT)
	$(PY) -m tenancy serve --base-dir run --host $(HOST) --port $(PORT)

test: setup system
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .

# Runs the browser tests (real Chromium) and refreshes docs/screenshots/ from the screenshots they take.
screenshots: setup system
	TENANCY_SCREENSHOTS=.cache/screenshots $(PY) -m pytest tests/browser -p no:cacheprovider $(PYTEST_ARGS)
	mkdir -p docs/screenshots
	cp .cache/screenshots/login.png .cache/screenshots/editor.png .cache/screenshots/refusal.png \
	   .cache/screenshots/rewrite.png .cache/screenshots/admin.png docs/screenshots/

# ComfyUI's own server test suite (tests/execution of the ComfyUI in use: $$COMFYUI_DIR or the provisioned one),
# run unchanged through the guard by the plugin tests/comfy_suite/guarded_comfy_suite.py. Not part of `make test`:
# it starts a ComfyUI per test class and takes a while.
comfy-suite: setup
	cd "$$($(PY) -c 'from tenancy.installation import locate; print(locate().root)')" && \
	PYTHONPATH=$(CURDIR)/tests/comfy_suite $(abspath $(PY)) -m pytest -p guarded_comfy_suite -p no:cacheprovider \
	  tests/execution $(PYTEST_ARGS)
