# `make test` and `make demo` each build the virtual environments they need, then run.
PYTHON ?= python3
VENV := .venv
VENV_OPENAI2 := .venv-openai2
PY := $(VENV)/bin/python
PY2 := $(VENV_OPENAI2)/bin/python
export LITELLM_LOCAL_MODEL_COST_MAP := True
PIP_FLAGS := --disable-pip-version-check -q
EXTRAS := test,dev,openai,anthropic,bedrock,litellm,google-genai,prometheus,openai-agents,agno,cohere,groq,mistral
# The OpenHands SDK needs Python >= 3.12: its tests run in a venv of their own. pyenv keeps its
# interpreters under $(PYENV_ROOT) (default ~/.pyenv) whether or not `pyenv` is on PATH; a
# python3.12 on PATH is the fallback. Override with `make test-openhands PYTHON312=/path/to/python`.
VENV_OH := .venv-openhands
PY_OH := $(VENV_OH)/bin/python
PYENV_ROOT ?= $(HOME)/.pyenv
PYTHON312 ?= $(firstword $(wildcard $(PYENV_ROOT)/versions/3.12.*/bin/python3.12) $(shell command -v python3.12 2>/dev/null))

# The declared lower bounds, installed together (scripts/min_constraints.py pins each dependency to
# its `>=` bound) and run against the core tests.
VENV_MIN := .venv-min
PY_MIN := $(VENV_MIN)/bin/python
MIN_EXTRAS := test,openai,anthropic,bedrock
CORE_TESTS := tests/test_usage.py tests/test_pricing.py tests/test_manual.py tests/test_rollup.py \
	tests/test_runs.py tests/test_budgets.py tests/test_faults.py tests/test_semconv.py \
	tests/providers/test_openai.py tests/providers/test_anthropic.py

.PHONY: test demo lint test-openai2 test-openhands test-min-versions bench bench-instructions compare soak clean

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

$(VENV_OH)/.installed: pyproject.toml
	@test -n "$(PYTHON312)" || { echo "no Python 3.12 found: set PYTHON312=/path/to/python3.12" >&2; exit 1; }
	$(PYTHON312) -m venv $(VENV_OH)
	$(PY_OH) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PY_OH) -m pip install $(PIP_FLAGS) -e ".[test,openhands]"
	touch $@

$(VENV_MIN)/.installed: pyproject.toml scripts/min_constraints.py
	$(PYTHON) -m venv $(VENV_MIN)
	$(PY_MIN) -m pip install $(PIP_FLAGS) --upgrade pip
	$(PYTHON) scripts/min_constraints.py --extras $(MIN_EXTRAS) > $(VENV_MIN)/constraints.txt
	$(PY_MIN) -m pip install $(PIP_FLAGS) -c $(VENV_MIN)/constraints.txt -e ".[$(MIN_EXTRAS)]"
	touch $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check otel_llm_usage emulators tests benchmarks examples scripts
	$(VENV)/bin/ruff format --check otel_llm_usage emulators tests benchmarks examples scripts
	$(VENV)/bin/mypy

test: lint $(VENV)/.installed $(VENV_OPENAI2)/.installed $(VENV_OH)/.installed
	$(PY) -m pytest -q -p no:cacheprovider
	$(PY2) -m pytest -q -p no:cacheprovider tests/providers/test_openai.py tests/providers/test_stream_usage.py \
		tests/emulators/test_openai_emulator.py
	$(MAKE) --no-print-directory test-openhands
	$(MAKE) --no-print-directory test-min-versions

test-min-versions: $(VENV_MIN)/.installed
	$(PY_MIN) -m pytest -q -p no:cacheprovider $(CORE_TESTS)

# No OTLP endpoint variables: OpenHands would start Laminar tracing of its own.
test-openhands: $(VENV_OH)/.installed
	env -u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_EXPORTER_OTLP_TRACES_ENDPOINT -u OTEL_ENDPOINT \
		-u LMNR_PROJECT_API_KEY $(PY_OH) -m pytest -q -p no:cacheprovider tests/frameworks/test_openhands.py

demo: $(VENV)/.installed
	$(PY) -m examples.demo

bench: $(VENV)/.installed
	$(PY) benchmarks/overhead.py

# Instruction counts under valgrind (Debian: apt-get install -y valgrind): repeatable on a busy machine.
bench-instructions: $(VENV)/.installed
	$(PY) benchmarks/overhead.py --instructions

# 1,000,000 calls through the real SDKs in one process: an hour or more on 2 cores.
soak: $(VENV)/.installed
	$(PY) -m benchmarks.soak

# Against the peer instrumentations, each in a virtual environment of its own under .bench-venvs/.
compare:
	$(PYTHON) benchmarks/compare.py

clean:
	rm -rf $(VENV) $(VENV_OPENAI2) $(VENV_OH) $(VENV_MIN)
