# Everything runs inside ./.venv so a fresh machine needs only Python 3.11 and make.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install proto proto-check serve demo test test-later test-s3 test-tools lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The OHIF viewer (npm's @ohif/app, prebuilt, sha512-checked) unpacked under .venv/ohif/:
# served at /viewer/. Idempotent; without network the server runs without a viewer.
install: $(STAMP)
	$(BIN)/python -m mutualrec.viewer_install

# Stubs are committed (so `pip install .` needs no protoc); CI regenerates them and fails on a diff.
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. \
		proto/mutualrec/v1/*.proto

proto-check: proto
	git diff --exit-code -- mutualrec/v1

serve: install
	$(BIN)/mutualrec serve

# Loads the demo into the server `make serve` runs (start that first, in another terminal).
demo: $(STAMP)
	$(BIN)/mutualrec demo

# The S3 test server (Swift with s3api, about 79 MB, in its own venv): only the tests use it,
# so `make serve` does not install it. The script is idempotent.
test-s3:
	bash tests/s3/install.sh

# dcmtk, Orthanc with DICOMweb, Chromium with ChromeDriver (Debian): the peers and clients tests drive.
test-tools:
	bash tests/tools/install.sh

# One worker per core, at most four (each starts its own servers, browsers and databases),
# a test file's tests on one worker. `pytest` alone runs in one process, as before.
PARALLEL := -n auto --maxprocesses=4 --dist loadfile

test: install test-s3 test-tools
	$(BIN)/pytest $(PARALLEL)

# test-later's clock: PyPI libfaketime's vendored source, built as its wheel's library is (clock,
# internal calls and timers faked; sleep and stat left alone) except for the pthread_cond wrappers
# (-DFAKE_PTHREAD). Those call getenv() on every timed wait of every thread, gRPC's included,
# while pytest adds and removes PYTEST_CURRENT_TEST for each test; glibc's setenv may move the
# environment array under a concurrent getenv, and two CI runs died with SIGSEGV (a script that
# sets variables beside gRPC threads crashes the stock build within 20 s, never this one). No
# timed wait here needs faking: Python's locks and gRPC's condition variables wait on
# CLOCK_MONOTONIC, which stays real. FAKETIME_CACHE_DURATION keeps the library from re-reading
# FAKETIME (another getenv) every 10 s: the offset never changes.
FAKETIME_LIB := $(VENV)/faketime/libfaketime.so.1
$(FAKETIME_LIB): $(STAMP)
	mkdir -p $(dir $@)
	src="$$($(BIN)/python -c 'import libfaketime, pathlib; print(pathlib.Path(libfaketime.__file__).parent / "vendor/libfaketime/src")')" && \
	$(CC) -std=gnu99 -O2 -fPIC -shared -Wno-nonnull-compare \
		-DFAKE_TIMERS -DFAKE_INTERNAL_CALLS \
		-DPREFIX='"/usr/local"' -DLIBDIRNAME='"/lib/faketime"' \
		-Wl,-soname,libfaketime.so.1 -Wl,--version-script="$$src/libfaketime.map" \
		-o $@ "$$src/libfaketime.c" -lpthread -ldl -lm -lrt

# The suite again with the clock of every process it starts moved LATER_DAYS ahead: proof that no
# test depends on today's date (CI runs it). Monotonic clocks stay real, so timeouts still work.
LATER_DAYS ?= 400
test-later: $(FAKETIME_LIB) test-s3 test-tools
	LD_PRELOAD="$(abspath $(FAKETIME_LIB))" \
	FAKETIME="+$(LATER_DAYS)d" FAKETIME_DONT_FAKE_MONOTONIC=1 FAKETIME_CACHE_DURATION=2000000000 \
	$(BIN)/pytest $(PARALLEL) -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/pytest tests/benchmarks --benchmark-only
	$(BIN)/python bench/ingest_bench.py --files 1800 --streams 1 4
	$(BIN)/python bench/fhir_bench.py --bundle-sizes 100 1000 --clients 4 --observations 50000 --preload 1000000
	$(BIN)/python bench/city_gen.py --database mutualrec_city --results 10000000 --patients 1000000
	$(BIN)/python bench/check_bench.py --database mutualrec_city --rates 250 500 1000 --duration 30

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
