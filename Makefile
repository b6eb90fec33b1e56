# `make demo` runs the main job; `make test` runs lint, types and tests.
# Both create .venv with the pinned CPU toolchain on first use.
PY := .venv/bin/python
# Use the shared data beside the checkout when it is there (no download needed).
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/squad/dev-v1.1.json),)
export PACKED_BERT_SQUAD ?= $(SHARED_DATA)/squad/dev-v1.1.json
export PACKED_BERT_VOCAB ?= $(SHARED_DATA)/vocab/bert-uncased-vocab.txt
endif
VENV_STAMP := .venv/.installed

$(VENV_STAMP): requirements-ci.txt pyproject.toml
	python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-ci.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(VENV_STAMP)

.PHONY: install demo test lint
install: $(VENV_STAMP)

demo: $(VENV_STAMP)
	.venv/bin/packed-bert run --sut cpu --model bert-99 --scenario offline --mode performance --execution demo

lint: $(VENV_STAMP)
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/ruff format --check src tests benchmarks
	.venv/bin/lint-imports
	.venv/bin/mypy

test: lint
	.venv/bin/pytest -q
