# The README's two set-up commands are `make demo` and `make test`. Both work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= 2.13.0

.PHONY: demo test install clean

$(BIN)/dsfnet: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==$(TORCH)"  # the tested CPU build; pyproject accepts torch>=2.13,<3
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(BIN)/dsfnet

install: $(BIN)/dsfnet

# Main job: predict on the bundled sample photo, on defaults; writes out/demo/.
demo: install
	$(BIN)/dsfnet predict --sample --output out/demo --draw --save-mesh obj --overwrite

# The whole test suite (tests needing ../shared skip when it is absent).
test: install
	$(BIN)/python -m pytest -q --doctest-modules src/dsfnet/geometry src/dsfnet/crop src/dsfnet/facemodel src/dsfnet/render tests

clean:
	rm -rf $(VENV) out
