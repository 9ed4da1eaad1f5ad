# Nucleon: `make run` and `make test` on a fresh Debian 12 machine.
BUILD_DIR ?= build
PRESET_TYPE ?= RelWithDebInfo
DATA ?= ./data
LISTEN ?= 127.0.0.1:8080
JOBS ?= $(shell nproc)

.PHONY: deps build run test unit e2e node-deps bench clean

deps:
	@scripts/install-deps

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(PRESET_TYPE)

build: deps $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/nucleon serve --demo --data $(DATA) --listen $(LISTEN)

# npm ci whenever the lock file is newer than what is installed.
node-deps: tests/node/node_modules/.package-lock.json

tests/node/node_modules/.package-lock.json: tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error

# Unit tests, then the end-to-end suites against the real binary.
test: build node-deps
	cmake -S . -B $(BUILD_DIR) >/dev/null
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j 2 --timeout 900

unit: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j 2 -LE e2e

e2e: build node-deps
	ctest --test-dir $(BUILD_DIR) --output-on-failure -L e2e

bench: build
	bench/run_ingest.sh

clean:
	rm -rf $(BUILD_DIR)
