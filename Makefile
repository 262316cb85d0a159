# `make test` and `make demo` each build the virtual environments they need, then run.
PYTHON ?= python3
VENV := .venv
VENV_OPENAI2 := .venv-openai2
PY := $(VENV)/bin/python
PY2 := $(VENV_OPENAI2)/bin/python
export LITELLM_LOCAL_MODEL_COST_MAP := True
PIP_FLAGS := --disable-pip-version-check -q
EXTRAS := test,dev,openai,anthropic,bedrock,litellm,google,prometheus,openai-agents,agno

.PHONY: test demo lint test-openai2 bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -e ".[$(EXTRAS)]"
	touch $@

# openai 2.x sends through httpx, 3.x through httpx2: the openai tests run against both.
$(VENV_OPENAI2)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_OPENAI2)
	$(PY2) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY2) -m pip install $(PIP_FLAGS) -e ".[test]" "openai>=2,<3"
	touch $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check otel_llm_usage tests benchmarks examples scripts
	$(VENV)/bin/ruff format --check otel_llm_usage tests benchmarks examples scripts
	$(VENV)/bin/mypy

test: lint $(VENV)/.installed $(VENV_OPENAI2)/.installed
	$(PY) -m pytest -q -p no:cacheprovider
	$(PY2) -m pytest -q -p no:cacheprovider tests/providers/test_openai.py tests/emulator/test_openai_emulator.py

demo: $(VENV)/.installed
	$(PY) -m examples.demo

bench: $(VENV)/.installed
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) $(VENV_OPENAI2)
