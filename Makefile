# tuneforge: `make demo` sets everything up and runs the demo; `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test test-slow fuzz bench bench-peers bench-few-shot pg clean

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

# tuneforge's runtime beside Optimum, sentence-transformers (torch/ONNX/OpenVINO), OpenVINO and PyTorch
# eager, one run (bench/peers.py). The peers get their own venv: they need transformers<4.58 and the
# plain onnxruntime package, which must not sit beside this venv's onnxruntime-gpu.
PEERS_VENV ?= .venv-peers
PEERS_RUN     ?= $(firstword $(wildcard runs/support-intents-top-k-* runs/support-intents-full-*))
PEERS_BUNDLE  ?= $(lastword $(sort $(wildcard exports/support-intents/v*)))
PEERS_STATIC  ?= $(lastword $(sort $(wildcard exports/support-intents-static/v*)))
PEERS_STUDENT ?= $(lastword $(sort $(wildcard exports/support-intents-student/v*)))
PEERS_ENCODER ?= $(lastword $(sort $(wildcard exports/support-encoder/v*)))
PEERS_ARGS    ?=
$(PEERS_VENV)/.installed-stamp: bench/peers-requirements.txt constraints.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
		-r bench/peers-requirements.txt
	touch $@

bench-peers: setup $(PEERS_VENV)/.installed-stamp
	@test -n "$(PEERS_RUN)" -a -n "$(PEERS_BUNDLE)" || { echo "bench-peers needs a BANKING77 run and its export: make demo (or set PEERS_RUN=runs/... PEERS_BUNDLE=exports/...)"; exit 2; }
	$(BIN)/python bench/peers.py --run $(PEERS_RUN) --bundle $(PEERS_BUNDLE) \
		$(if $(PEERS_STATIC),--bundle-static $(PEERS_STATIC)) \
		$(if $(PEERS_STUDENT),--student-bundle $(PEERS_STUDENT)) \
		$(if $(PEERS_ENCODER),--encoder-bundle $(PEERS_ENCODER)) \
		--peers-python $(PEERS_VENV)/bin/python $(PEERS_ARGS)

# few-shot / zero-shot on BANKING77 beside frozen-encoder + logistic regression and the setfit library
# (bench/few_shot.py); setfit gets its own venv: it needs transformers 4.x
SETFIT_VENV ?= .venv-setfit
$(SETFIT_VENV)/.installed-stamp: bench/setfit-requirements.txt constraints.txt
	test -x $(SETFIT_VENV)/bin/python || $(PYTHON) -m venv $(SETFIT_VENV)
	$(SETFIT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt \
		-r bench/setfit-requirements.txt
	touch $@

bench-few-shot: setup $(SETFIT_VENV)/.installed-stamp
	$(BIN)/python bench/few_shot.py --setfit-python $(SETFIT_VENV)/bin/python $(FEWSHOT_ARGS)

# a throw-away PostgreSQL server for the PostgreSQL tests (the one .ci/run starts):
#   eval "$$(make -s pg)"; make test; .ci/pg stop "$$TUNEFORGE_PG_DIR"
pg:
	@.ci/pg start

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf runs exports/*/ .pytest_cache
