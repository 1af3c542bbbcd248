# gaudi-aot: the two commands a newcomer needs are `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
PYTHON  := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
# torch is pinned here, not in pyproject.toml: on CPU machines 2.13.0 is a local wheel, while any
# looser spec can pull a multi-GB CUDA build. pyproject.toml keeps a range Gaudi's torch also meets.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup test test-all demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade pip
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install -q "$(TORCH_SPEC)"
	$(PYTHON) -m pip install -q -e ".[dev,onnx]"
	@touch $(STAMP)

test: setup
	$(PYTHON) -m pytest -q

test-all: setup
	$(PYTHON) -m pytest -q -m ""

demo: setup
	bash cli/demo.sh

bench: setup
	$(PYTHON) -m pip install -q -e ".[bench]"
	$(PYTHON) -m benchmarks.run_all $(BENCH_ARGS)

clean:
	rm -rf $(VENV) artifacts/* .pytest_cache
