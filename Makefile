# tuneforge: `make demo` sets everything up and runs the demo; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-slow fuzz bench clean

setup: $(STAMP)

# torch comes from constraints.txt (the CPU wheel); never a loose spec that pulls CUDA builds.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
	touch $(STAMP)

demo: setup
	$(BIN)/python -m tuneforge.apps.demo

test: setup
	$(BIN)/python -m pytest -q

# schemathesis over the bundle server's and the finance monitor's OpenAPI, many more examples than the suite
fuzz: setup
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} $(BIN)/python -m pytest -q tests/test_fuzz.py

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf runs exports/*/ .pytest_cache
