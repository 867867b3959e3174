# Everything runs inside ./.venv so a fresh machine needs only Python 3.11 and make.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Debian tools the tests drive (root on the development and CI machines, so apt-get works):
# faketime moves the clock of the whole test run, subprocesses included (.ci/run's shifted pass).
TEST_DEBS := faketime

.PHONY: install proto proto-check serve demo test test-tools test-s3 lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Stubs are committed (so `pip install .` needs no protoc); CI regenerates them and fails on a diff.
proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. \
		proto/mutualrec/v1/*.proto

proto-check: proto
	git diff --exit-code -- mutualrec/v1

serve: $(STAMP)
	$(BIN)/mutualrec serve

# Loads the demo into the server `make serve` runs (start that first, in another terminal).
demo: $(STAMP)
	$(BIN)/mutualrec demo

test-tools:
	@missing=$$(for p in $(TEST_DEBS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

# The S3 test server (Swift with s3api, about 79 MB, in its own venv): only the tests use it,
# so `make serve` does not install it. The script is idempotent.
test-s3:
	bash tests/s3/install.sh

test: $(STAMP) test-tools test-s3
	$(BIN)/pytest

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
