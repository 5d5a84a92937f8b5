# One entry point for everything. `make run` and `make test` work on a fresh machine.
SHELL := /bin/bash
PYTHON_BIN ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)

.PHONY: run test lint fmt bench css reset migrate shell venv

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

run: venv ## Start the whole platform on embedded PostgreSQL + Redis (Ctrl-C stops it)
	$(PY) -m tools.run

test: venv ## Run the test suite (embedded PostgreSQL + Redis unless DATABASE_URL / REDIS_URL are set)
	$(PY) -m tools.testrun $(ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

fmt: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: venv ## Benchmarks; results in bench/results.json
	$(PY) -m bench.run

css: ## Rebuild static/css/app.css with the Tailwind CLI (needs Node; the output is committed)
	npm install --no-audit --no-fund
	npx tailwindcss -i assets/css/app.css -o static/css/app.css --minify

migrate: venv
	$(PY) -m tools.manage migrate

shell: venv
	$(PY) -m tools.manage shell

reset: ## Stop nothing, delete the embedded databases and media under .data/
	rm -rf .data
