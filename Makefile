# Nucleon: `make run` and `make test` on a fresh Debian 12 machine.
BUILD_DIR ?= build
PRESET_TYPE ?= RelWithDebInfo
DATA ?= ./data
LISTEN ?= 127.0.0.1:8080
JOBS ?= $(shell nproc)

.PHONY: deps build run test test-release test-asan test-tsan unit e2e node-deps bench clean deb

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

# Every test three times: the release build; ASan+UBSan (build-asan, every
# unit and end-to-end test); TSan (build-tsan, the tests labelled
# `concurrency`). Stages run one after the other, each timed; the first that
# fails stops the run. Each stage also runs on its own. CTEST_ARGS is passed to
# every ctest (e.g. CTEST_ARGS="-R e2e_crash").
CTEST_ARGS ?=

test:
	@set -e; total=$$(date +%s); \
	for stage in test-release test-asan test-tsan; do \
	  start=$$(date +%s); \
	  $(MAKE) --no-print-directory $$stage; \
	  echo "== $$stage passed in $$(( $$(date +%s) - start )) s"; \
	done; \
	echo "== make test passed in $$(( $$(date +%s) - total )) s"

# Unit tests, then the end-to-end suites against the real binary.
test-release: build node-deps
	cmake -S . -B $(BUILD_DIR) >/dev/null
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j 2 --timeout 900 $(CTEST_ARGS)

# Sanitizer builds: a CMake preset each (CMakePresets.json), whose test preset
# sets the sanitizer options and selects the tests. TSan builds only what its
# tests run (the target nucleon_concurrency).
test-asan test-tsan: test-%: deps node-deps
	cmake --preset $* >/dev/null
	cmake --build --preset $* -j $(JOBS) $(if $(filter tsan,$*),--target nucleon_concurrency)
	ctest --preset $* -j 2 $(CTEST_ARGS)

unit: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j 2 -LE e2e

e2e: build node-deps
	ctest --test-dir $(BUILD_DIR) --output-on-failure -L e2e

# The Debian package, $(BUILD_DIR)/nucleon_VERSION_ARCH.deb (packaging/).
deb: build
	cd $(BUILD_DIR) && cpack -G DEB

bench: build
	bench/run_ingest.sh

clean:
	rm -rf $(BUILD_DIR)

# libFuzzer (clang-14, ASan+UBSan) in FUZZ_BUILD_DIR: each fuzz/ target runs for
# FUZZ_SECONDS with its dictionary (FUZZ_RUNS=N: N executions instead); new
# inputs go to $(FUZZ_BUILD_DIR)/fuzz-scratch, crashes to fuzz/crashes/. -Werror stays
# with the g++ build: clang warns about other things.
FUZZ_BUILD_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?=
FUZZ_TARGETS ?= batch_decoder_fuzzer http_router_fuzzer websocket_message_fuzzer api_params_fuzzer auth_fuzzer
FUZZ_SANITIZE := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

.PHONY: fuzz
fuzz: deps
	cmake -S . -B $(FUZZ_BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
	  -DCMAKE_C_FLAGS="$(FUZZ_SANITIZE)" -DCMAKE_CXX_FLAGS="$(FUZZ_SANITIZE)" \
	  -DNUCLEON_FUZZ=ON -DNUCLEON_BUILD_BENCH=OFF -DNUCLEON_WERROR=OFF -DNUCLEON_WEB=OFF
	cmake --build $(FUZZ_BUILD_DIR) -j $(JOBS) --target $(FUZZ_TARGETS)
	FUZZ_RUNS=$(FUZZ_RUNS) fuzz/run_fuzzers.sh $(FUZZ_BUILD_DIR) $(FUZZ_SECONDS) $(FUZZ_TARGETS)
