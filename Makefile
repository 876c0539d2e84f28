# Thin driver over CMake: `make` builds build/bin/{sluice,sluice-ingest,sluice-scheduler};
# `make asan` builds the same with ASan+UBSan into build-asan/.
JOBS ?= 2
CMAKE ?= cmake

.PHONY: all build asan test test-asan clean

all: build

build:
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	$(CMAKE) --build build -j $(JOBS) -- --no-print-directory

asan:
	$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=ON >/dev/null
	$(CMAKE) --build build-asan -j $(JOBS) -- --no-print-directory

test: build
	cd build && ctest --output-on-failure

test-asan: asan
	cd build-asan && ctest --output-on-failure

clean:
	rm -rf build build-asan
